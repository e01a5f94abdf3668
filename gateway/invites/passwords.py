"""Passwords: the policy a new one must meet, and argon2id hashing (issue 4).

Policy (in the spirit of NIST SP 800-63B: length and a blocklist, no composition rules):

- at least 10 characters (Unicode code points, after NFKC), at most 1024;
- not a common password: the bundled `common_passwords.txt` (about 4,000 entries, English and
  Spanish), compared case-insensitively, also after removing a short tail of digits and symbols
  ("Password2024!" → "password") and undoing the usual letter-for-symbol swaps ("p@ssw0rd");
  fewer than 4 different characters ("aaaaaaaaaa", "abababab12"...) counts as common too;
- not the user's own e-mail (or its local part), phone number or name, with the same tail rule.

Passwords are NFKC-normalised before hashing and verifying, so one typed on another keyboard or
operating system (composed vs decomposed accents) still matches.

Hashing cost: `PasswordCost`. `cost_for(settings)` takes `settings.password_cost` when the
settings carry one (the field for the lead to wire, e.g. from GATEWAY_ARGON2_TIME_COST /
_MEMORY_KIB / _PARALLELISM); otherwise argon2-cffi's default (RFC 9106 "second recommended":
t=3, 64 MiB, p=4; ~114 ms here), and the cheap TEST_COST (~8 ms) when GATEWAY_ENV=test.
Hashing and verifying run in a thread, so a sign-in never blocks the event loop.

Verification is constant-time (argon2's own comparison), and an unknown address is verified
against a dummy hash of the same cost, so a wrong address takes as long as a wrong password.
"""
from __future__ import annotations

import asyncio
import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024
MIN_DISTINCT = 4
# A tail of at most this many digits or symbols is ignored when looking a password up.
MAX_STRIPPED_TAIL = 6
COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


@dataclass(frozen=True)
class PasswordCost:
    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4


DEFAULT_COST = PasswordCost()
TEST_COST = PasswordCost(time_cost=1, memory_cost=8192, parallelism=1)


def cost_for(settings: Any) -> PasswordCost:
    """The argon2 cost for these settings (see the module docstring)."""
    explicit = getattr(settings, "password_cost", None)
    if isinstance(explicit, PasswordCost):
        return explicit
    return TEST_COST if getattr(settings, "environment", "") == "test" else DEFAULT_COST


@lru_cache(maxsize=8)
def hasher(cost: PasswordCost) -> PasswordHasher:
    """One PasswordHasher per cost (argon2id)."""
    return PasswordHasher(time_cost=cost.time_cost, memory_cost=cost.memory_cost, parallelism=cost.parallelism)


def normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


async def hash_password(password: str, cost: PasswordCost) -> str:
    return await asyncio.to_thread(hasher(cost).hash, normalize(password))


@lru_cache(maxsize=8)
def _dummy_hash(cost: PasswordCost) -> str:
    return hasher(cost).hash("not a password anyone has: the unknown-address stand-in")


def _verify(stored: str | None, password: str, cost: PasswordCost) -> bool:
    if not stored:
        # Same work as a real check, same answer as a wrong password.
        try:
            hasher(cost).verify(_dummy_hash(cost), normalize(password))
        except VerificationError:
            pass
        return False
    try:
        return hasher(cost).verify(stored, normalize(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str, cost: PasswordCost) -> bool:
    """Does `password` match `stored`? With `stored` None, burn the same time and say no."""
    return await asyncio.to_thread(_verify, stored, password, cost)


def needs_rehash(stored: str, cost: PasswordCost) -> bool:
    try:
        return hasher(cost).check_needs_rehash(stored)
    except InvalidHashError:
        return True


# -- policy ----------------------------------------------------------------------------------------


class PasswordProblem(str, enum.Enum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    COMMON = "common"
    PERSONAL = "personal"
    MISMATCH = "mismatch"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    words = set()
    for line in COMMON_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") or not line.strip():
            continue
        words.add(normalize(line.strip()).casefold())
    return frozenset(words)


_TAIL = re.compile(r"[\W\d_]+$")
_LEET = str.maketrans({"@": "a", "4": "a", "$": "s", "5": "s", "0": "o", "1": "i", "!": "i", "3": "e",
                       "7": "t", "+": "t", "8": "b", "9": "g"})


def _fold(text: str) -> str:
    """Lower case, accents and everything but letters and digits removed: "García-2" → "garcia2"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum())


def _without_tail(text: str) -> str:
    match = _TAIL.search(text)
    if match and 0 < len(match.group(0)) <= MAX_STRIPPED_TAIL and match.start() > 0:
        return text[: match.start()]
    return text


def _variants(password: str) -> set[str]:
    lowered = normalize(password).casefold()
    core = _without_tail(lowered)
    out = {lowered, lowered.replace(" ", ""), core, core.translate(_LEET), lowered.translate(_LEET)}
    return {v for v in out if v}


def is_common(password: str) -> bool:
    if len(set(normalize(password).casefold())) < MIN_DISTINCT:
        return True
    common = common_passwords()
    return any(v in common for v in _variants(password))


def personal_words(*, emails: Iterable[str] = (), phones: Iterable[str] = (), names: Iterable[str] = ()) -> dict[str, set[str]]:
    """What a user's password may not be: their addresses and names, folded for comparison."""
    whole: set[str] = set()      # the password may not be this (tail ignored)
    inside: set[str] = set()     # nor contain this
    for address in emails:
        if not address:
            continue
        local = address.split("@", 1)[0]
        inside.add(_fold(address))
        if len(_fold(local)) >= 3:
            whole.add(_fold(local))
    for phone in phones:
        digits = "".join(ch for ch in phone or "" if ch.isdigit())
        if len(digits) >= 7:
            inside.add(digits)
            inside.add(digits[-10:] if len(digits) > 10 else digits)  # national number, usually
            whole.add(digits[-7:])
    for name in names:
        if not name:
            continue
        folded = _fold(name)
        if len(folded) >= 3:
            whole.add(folded)
        for part in re.split(r"[\s\-.,']+", name):
            if len(_fold(part)) >= 3:
                whole.add(_fold(part))
    return {"whole": whole, "inside": inside}


def is_personal(password: str, words: dict[str, set[str]]) -> bool:
    folded = _fold(password)
    core = _fold(_without_tail(normalize(password).casefold()))
    letters_only = re.sub(r"\d+$", "", folded)
    if any(candidate in words["whole"] for candidate in {folded, core, letters_only} if candidate):
        return True
    return any(part and part in folded for part in words["inside"])


def check_new_password(password: str, confirmation: str, *, personal: dict[str, set[str]] | None = None) -> PasswordProblem | None:
    """The first problem with a new password, or None when it is acceptable."""
    password = normalize(password or "")
    length = len(password)
    if length < MIN_LENGTH:
        return PasswordProblem.TOO_SHORT
    if length > MAX_LENGTH:
        return PasswordProblem.TOO_LONG
    if is_common(password):
        return PasswordProblem.COMMON
    if personal and is_personal(password, personal):
        return PasswordProblem.PERSONAL
    if password != normalize(confirmation or ""):
        return PasswordProblem.MISMATCH
    return None


async def personal_words_of(user_id: int) -> dict[str, set[str]]:
    """The user's e-mails, phones and name, ready for `check_new_password`."""
    from gateway.directory.models import ContactKind, ContactPoint, User

    user = await User.get(id=user_id)
    points = await ContactPoint.filter(user_id=user_id).values_list("kind", "address")
    return personal_words(
        emails=[address for kind, address in points if kind == ContactKind.EMAIL],
        phones=[address for kind, address in points if kind == ContactKind.PHONE],
        names=[user.name],
    )


async def store_password(user_id: int, password_hash: str, *, now: datetime | None = None, **also: Any) -> None:
    """Save a new password hash (and any other user fields given) and revoke outstanding login links.

    Call it inside the caller's transaction when other writes must go with it.
    """
    from gateway.directory.models import User
    from gateway.invites.tokens import revoke_login_links

    now = now or datetime.now(timezone.utc)
    await User.filter(id=user_id).update(password_hash=password_hash, updated_at=now, **also)
    await revoke_login_links(user_id, now=now)
