"""SMS keywords: our own opt-out ledger (DESIGN section 4, step 1).

A keyword is the whole message, give or take case, spaces and closing punctuation: "STOP", "stop.",
" Stop! ". A sentence that merely contains one ("please stop texting me at work") is for a
person, not for the ledger, and goes to the conversation like any other reply.

The English words are the CTIA / Twilio standard set; the Spanish ones are what Spanish-speaking
families type, and Twilio's Advanced Opt-Out accepts them too. The ledger is ours because the
carrier's or Twilio's block is not enough: the outbox must know, to fall back to e-mail and to show
the sender why a text was not sent.
"""
from __future__ import annotations

import enum
import re
import time
from datetime import datetime, timezone

from tortoise import connections

from gateway.directory.models import ContactKind, ContactPoint, School, User
from gateway.i18n import translations_for


class Keyword(str, enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


WORDS = {
    Keyword.OPT_OUT: {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
                      "PARAR", "ALTO", "DETENER", "CANCELAR", "BAJA"},
    Keyword.OPT_IN: {"START", "UNSTOP", "YES", "INICIAR", "SI", "SÍ"},
    Keyword.HELP: {"HELP", "INFO", "AYUDA"},
}
_BY_WORD = {word: keyword for keyword, words in WORDS.items() for word in words}
_TRIM = re.compile(r"^[\s\"'«“]+|[\s.!?¡¿\"'»”]+$")


def keyword_of(text: str | None) -> Keyword | None:
    """The keyword this whole message is, or None."""
    if not text:
        return None
    word = _TRIM.sub("", text).upper().replace("-", "").replace(" ", "")
    if len(word) > 12:
        return None
    return _BY_WORD.get(word)


async def keyword_for(text: str | None, phone: str, school: School | None) -> Keyword | None:
    """The keyword to act on. "Yes" is also how a parent answers "can you come on Friday?", so the
    opt-in words only count for a phone that is opted out; otherwise the text goes to a person."""
    keyword = keyword_of(text)
    if keyword is Keyword.OPT_IN and not await _points(phone, school).filter(opted_out_at__isnull=False).exists():
        return None
    return keyword


def _points(phone: str, school: School | None):  # type: ignore[no-untyped-def]
    points = ContactPoint.filter(kind=ContactKind.PHONE, address=phone)
    if school is not None:
        points = points.filter(user__memberships__school=school)
    return points


_NUMBERS: dict[str, School] = {}
_NUMBERS_READ: tuple[int, float] = (0, 0.0)  # (which database client, when)
NUMBERS_TTL = 5.0  # seconds a change of a school's numbers takes to reach the webhooks


async def school_for_number(number: str) -> School | None:
    """The school that owns our number (a number belongs to one school; PATCH /school checks).

    Every inbound text asks this, so the number → school map is kept for a few seconds instead of
    reading every school per request. The School rows it returns are only read, never saved.
    """
    global _NUMBERS_READ
    database = id(connections.get("default"))
    if _NUMBERS_READ[0] != database or time.monotonic() - _NUMBERS_READ[1] > NUMBERS_TTL:
        schools = await School.all()
        _NUMBERS.clear()
        _NUMBERS.update({n: school for school in schools for n in school.sms_numbers or []})
        _NUMBERS_READ = (database, time.monotonic())
    return _NUMBERS.get(number)


async def apply_keyword(keyword: Keyword, phone: str, school: School | None) -> tuple[str, int]:
    """Update the ledger for `phone` and return (the reply in the sender's language, users affected)."""
    points = await _points(phone, school).distinct()
    now = datetime.now(timezone.utc)
    ids = [p.id for p in points]
    if keyword is Keyword.OPT_OUT and ids:
        await ContactPoint.filter(id__in=ids, opted_out_at=None).update(opted_out_at=now)
    elif keyword is Keyword.OPT_IN and ids:
        await ContactPoint.filter(id__in=ids).update(opted_out_at=None)
    locale = None
    if points:
        locale = (await User.get(id=points[0].user_id)).locale
    if locale is None and school is not None:
        locale = school.default_locale
    return keyword_reply(keyword, school.name if school else "", locale), len({p.user_id for p in points})


def keyword_reply(keyword: Keyword, school_name: str, locale: str | None) -> str:
    _t = translations_for(locale).gettext  # named _t so that pybabel extract finds the strings
    name = school_name or _t("School messages")
    if keyword is Keyword.OPT_OUT:
        return _t("%(school)s: you will not get more texts from this number. Text START to get them again.") % {"school": name}
    if keyword is Keyword.OPT_IN:
        return _t("%(school)s: you will get texts from this number again. Text STOP to stop them.") % {"school": name}
    return _t("%(school)s: reply to a message to answer the teacher who sent it. Text STOP to stop texts.") % {"school": name}
