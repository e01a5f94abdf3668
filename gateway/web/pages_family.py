"""Pages for signed-in people about themselves (issue 5, item 2): `/preferences` and `/conversations/new`.

- `/preferences` (anyone signed in, staff too): how the school reaches them (text message, e-mail or
  both), the page and message language, newsletters on or off; and the state of each of their own
  phone numbers and e-mail addresses with how to fix it. A phone that replied STOP is told to text
  START to the school's number: carriers (Twilio's Advanced Opt-Out) only lift an opt-out on a
  keyword from the phone itself, so the page never offers a button for that. A bouncing e-mail
  address gets "Try this address again" (`POST /preferences/contacts/<id>/retry`).
  A channel nobody can reach them on is refused when it is being chosen; a preference that was
  already saved is kept as it is, so somebody whose phone stopped working can still change their
  language (the outbox falls back to the other channel by itself).
- `/conversations/new` (guardians and students): write to one of their children's (or their own)
  teachers; the conversation is private between them and that teacher.

Both are plain forms (post/redirect/get) and work without JavaScript.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from tortoise.transactions import in_transaction

from gateway.clock import utcnow
from gateway.directory.models import (
    AuditLog,
    ChannelPreference,
    ContactKind,
    ContactPoint,
    Role,
    User,
)
from gateway.errors import NotFound
from gateway.i18n import _, available_locales, best_locale
from gateway.threads.models import Conversation, SmsRoute
from gateway.threads.web_actions import start_family_conversation, teachers_for
from gateway.web import keys, throttle
from gateway.web.page_kit import (
    SignedIn,
    after_commit,
    form_int,
    once,
    redirect,
    render,
    signed_in,
    signed_in_family,
    submission_key,
)
from gateway.web.pages_auth import locale_choices, too_many

MAX_SUBJECT = 200
NEWSLETTERS = ("receive", "unsubscribed")



def _schools_of(viewer: SignedIn) -> list[int]:
    return list(dict.fromkeys(m.school_id for m in viewer.memberships))


async def _audit(viewer: SignedIn, action: str, target: str, details: dict[str, Any]) -> None:
    """One row per school of the person: each school's audit trail shows what its people changed."""
    actor = f"user:{viewer.user.id}"
    await AuditLog.bulk_create([AuditLog(school_id=school_id, actor=actor, action=action, target=target,
                                         details=details) for school_id in _schools_of(viewer)])


# -- /preferences ----------------------------------------------------------------------------------


def channel_choices() -> list[tuple[str, str]]:
    return [(ChannelPreference.SMS.value, _("Text message")), (ChannelPreference.EMAIL.value, _("E-mail")),
            (ChannelPreference.BOTH.value, _("Both"))]


@dataclass
class ContactState:
    id: int
    kind: str            # phone | email
    address: str
    problem: str | None  # opted_out | bouncing | unreachable, or None when it works
    status: str          # a short word for the tag
    tone: str            # the tag's colour class
    advice: str          # what it means and how to fix it
    start_number: str | None = None  # for an opted-out phone: the number to text START to

    @property
    def can_retry(self) -> bool:
        return self.problem == "bouncing"


async def _start_number(viewer: SignedIn, phone: str) -> str | None:
    """Which of our numbers an opted-out phone should text START to: the one that last texted it,
    else its school's first number. START is read per school (gateway.threads.keywords)."""
    numbers = {m.school_id: list(m.school.sms_numbers or []) for m in viewer.memberships}
    routes = await SmsRoute.filter(phone=phone, school_id__in=list(numbers)).order_by("-last_used_at", "-id").values(
        "school_id", "our_number")
    for route in routes:
        if route["our_number"] in numbers.get(route["school_id"], []):
            return route["our_number"]
    return next((pool[0] for pool in numbers.values() if pool), None)


async def _contact_states(viewer: SignedIn) -> list[ContactState]:
    points = await ContactPoint.filter(user_id=viewer.user.id)
    states = []
    for point in sorted(points, key=lambda p: (p.kind is not ContactKind.PHONE, p.id)):
        phone = point.kind is ContactKind.PHONE
        problem = point.problem
        start_number = None
        if problem == "opted_out":
            start_number = await _start_number(viewer, point.address)
            status, tone = _("Texts stopped"), "warn"
            # TRANSLATORS: STOP and START are keywords texted to the school; keep them in English.
            advice = (_("You replied STOP, so the school does not text this number. To get texts again, "
                        "send the word START from this phone to:") if start_number else
                      _("You replied STOP, so the school does not text this number. To get texts again, "
                        "send the word START from this phone to the school's number."))
        elif problem == "bouncing":
            status, tone = _("Mail bounced"), "bad"
            advice = _("Mail to this address came back undelivered, so the school stopped e-mailing it. If the "
                       "mailbox works again (for example, it was full), you can ask us to try it again.")
        elif problem == "unreachable":
            status, tone = _("Cannot be reached"), "bad"
            advice = (_("This number cannot be reached. Ask the school to update it.") if phone else
                      _("This address cannot be reached. Ask the school to update it."))
        else:
            status, tone, advice = _("Working"), "good", ""
        states.append(ContactState(point.id, point.kind.value, point.address, problem, status, tone, advice,
                                   start_number))
    return states


def _current_locale(viewer: SignedIn) -> str:
    """The language shown as selected: the saved one, else the one this page is in."""
    return best_locale(viewer.user.locale) if viewer.user.locale else viewer.lang


def _current_values(viewer: SignedIn) -> dict[str, str]:
    user = viewer.user
    return {"channel": user.channel_preference.value, "locale": _current_locale(viewer),
            "newsletters": "unsubscribed" if user.newsletters_unsubscribed_at else "receive"}


async def _render_preferences(request: web.Request, viewer: SignedIn, values: dict[str, str], *,
                              errors: dict[str, str] | None = None, notice: str | None = None,
                              status: int = 200) -> web.Response:
    return render(request, "preferences.html", {
        "values": values, "errors": errors or {}, "notice": notice, "channels": channel_choices(),
        "locales": locale_choices(values["locale"]), "contacts": await _contact_states(viewer),
    }, status=status)


async def preferences(request: web.Request) -> web.Response:
    """GET/POST /preferences."""
    viewer = await signed_in(request)
    if request.method != "POST":
        notice = None
        if request.query.get("saved"):
            notice = _("Your preferences have been saved.")
        elif request.query.get("retried"):
            notice = _("We will try this address again. If mail to it bounces again, it will show here.")
        return await _render_preferences(request, viewer, _current_values(viewer), notice=notice)
    form = await request.post()
    current = _current_values(viewer)
    wanted = {name: str(form.get(name, "")).strip()[:32] for name in current}
    errors = await _preference_errors(viewer, current, wanted)
    if errors:
        known = {"channel": {value for value, _name in channel_choices()}, "locale": set(available_locales()),
                 "newsletters": set(NEWSLETTERS)}
        shown = {name: wanted[name] if wanted[name] in known[name] else current[name] for name in current}
        return await _render_preferences(request, viewer, shown, errors=errors, status=422)
    changed = {name: {"from": current[name], "to": wanted[name]} for name in current if wanted[name] != current[name]}
    if changed:
        await _save_preferences(viewer, wanted, changed)
    return redirect("/preferences?saved=1")


async def _preference_errors(viewer: SignedIn, current: dict[str, str], wanted: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if wanted["channel"] not in {value for value, _name in channel_choices()}:
        errors["channel"] = _("Choose how the school should reach you.")
    if wanted["locale"] not in available_locales():
        errors["locale"] = _("Choose one of the languages in the list.")
    if wanted["newsletters"] not in NEWSLETTERS:
        errors["newsletters"] = _("Choose whether you want to receive newsletters.")
    if "channel" in errors or wanted["channel"] == current["channel"]:
        return errors
    points = await ContactPoint.filter(user_id=viewer.user.id)
    usable = {p.kind for p in points if p.problem is None}
    needs_phone = wanted["channel"] in (ChannelPreference.SMS.value, ChannelPreference.BOTH.value)
    needs_email = wanted["channel"] in (ChannelPreference.EMAIL.value, ChannelPreference.BOTH.value)
    if needs_phone and ContactKind.PHONE not in usable:
        if any(p.kind is ContactKind.PHONE and p.problem == "opted_out" for p in points):
            # TRANSLATORS: STOP and START are keywords texted to the school; keep them in English.
            errors["channel"] = _("You replied STOP to our texts, so we cannot text you. Text START to the "
                                  "school's number from your phone first (see below), then choose text messages.")
        else:
            errors["channel"] = _("We have no phone number that can receive texts for you. Ask the school to "
                                  "add or update your phone number, or choose e-mail.")
    elif needs_phone and not any(m.school.sms_numbers for m in viewer.memberships):
        errors["channel"] = _("Your school does not send text messages. Please choose e-mail.")
    elif needs_email and ContactKind.EMAIL not in usable:
        errors["channel"] = _("We have no e-mail address that works for you. Ask the school to add or update "
                              "your e-mail address, or choose text messages.")
    return errors


async def _save_preferences(viewer: SignedIn, wanted: dict[str, str], changed: dict[str, dict[str, str]]) -> None:
    async with in_transaction():
        user = await User.get(id=viewer.user.id)
        fields = ["updated_at"]
        if "channel" in changed:
            user.channel_preference = ChannelPreference(wanted["channel"])
            fields.append("channel_preference")
        if "locale" in changed:
            user.locale = wanted["locale"]
            fields.append("locale")
        if "newsletters" in changed:
            user.newsletters_unsubscribed_at = utcnow() if wanted["newsletters"] == "unsubscribed" else None
            fields.append("newsletters_unsubscribed_at")
        await user.save(update_fields=fields)
        await _audit(viewer, "preferences.changed", f"user:{user.id}", changed)


async def retry_contact(request: web.Request) -> web.Response:
    """POST /preferences/contacts/<id>/retry: a bouncing e-mail address of one's own is tried again."""
    viewer = await signed_in(request)
    point_id = form_int(request.match_info["id"])
    point = await ContactPoint.get_or_none(id=point_id, user_id=viewer.user.id) if point_id else None
    if point is None:
        raise NotFound("no such contact point")
    async with in_transaction():
        cleared = await ContactPoint.filter(id=point.id, bouncing_at__isnull=False).update(bouncing_at=None)
        if cleared:
            await _audit(viewer, "contact.retry", f"contact:{point.id}", {"kind": point.kind.value})
    return redirect("/preferences?retried=1#contacts" if cleared else "/preferences#contacts")


# -- /conversations/new ----------------------------------------------------------------------------


@dataclass
class TeacherChoice:
    value: str   # "<school_id>:<teacher user id>"
    label: str   # "Ms. Rivera (Lucía)"


async def _teacher_choices(viewer: SignedIn) -> list[tuple[str, list[TeacherChoice]]]:
    """(school name, that school's teachers of this family), for each family school with any."""
    groups = []
    seen: set[int] = set()
    for membership in viewer.memberships:
        if membership.role is Role.STAFF or membership.school_id in seen:
            continue
        seen.add(membership.school_id)
        choices = []
        for staff, children in await teachers_for(viewer.user.id, membership.school_id):
            names = [name for name in children if name != viewer.user.name]  # a student writes for themself
            label = f"{staff.user.name} ({', '.join(names)})" if names else staff.user.name
            choices.append(TeacherChoice(f"{membership.school_id}:{staff.user_id}", label))
        if choices:
            groups.append((membership.school.name, choices))
    return groups


async def _render_new(request: web.Request, viewer: SignedIn, values: dict[str, str], *,
                      errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    groups = await _teacher_choices(viewer)
    if not values.get("teacher") and len(groups) == 1 and len(groups[0][1]) == 1:
        values = {**values, "teacher": groups[0][1][0].value}
    return render(request, "new_conversation.html", {
        "groups": groups, "many_schools": len(groups) > 1, "values": values, "errors": errors or {},
        "max_subject": MAX_SUBJECT, "limit": request.config_dict[keys.SETTINGS].max_body_chars,
    }, status=status)


async def new_conversation_page(request: web.Request) -> web.Response:
    """GET /conversations/new: the form to write to a teacher."""
    viewer = await signed_in_family(request)
    return await _render_new(request, viewer, {"teacher": "", "subject": "", "body": ""})


def _teacher_of(value: str) -> tuple[int, int]:
    """(school id, teacher user id) from the form; anything else is not a teacher of this family."""
    school_part, _sep, teacher_part = value.partition(":")
    school_id, teacher_id = form_int(school_part), form_int(teacher_part)
    if school_id is None or teacher_id is None:
        raise NotFound("that teacher is not one of your children's teachers")
    return school_id, teacher_id


async def new_conversation(request: web.Request) -> web.Response:
    """POST /conversations/new: start the conversation, tell the teacher, go to it."""
    viewer = await signed_in_family(request)
    form = await request.post()
    values = {"teacher": str(form.get("teacher", "")).strip()[:64],
              "subject": " ".join(str(form.get("subject", "")).split()),
              "body": str(form.get("body", "")).strip()}
    limit = request.config_dict[keys.SETTINGS].max_body_chars
    errors: dict[str, str] = {}
    if not values["teacher"]:
        errors["teacher"] = _("Choose the teacher you want to write to.")
    if not values["subject"]:
        errors["subject"] = _("Write a subject.")
    elif len(values["subject"]) > MAX_SUBJECT:
        errors["subject"] = _("The subject is too long.")
    if not values["body"]:
        errors["body"] = _("Write a message first.")
    elif len(values["body"]) > limit:
        errors["body"] = _("Your message is too long.")
    if errors:
        return await _render_new(request, viewer, values, errors=errors, status=422)
    school_id, teacher_id = _teacher_of(values["teacher"])
    wait = throttle.check(request, (throttle.limits(request).family_writes, f"user:{viewer.user.id}"))
    if wait:
        return too_many(request, wait, viewer.lang)
    settings = request.config_dict[keys.SETTINGS]
    key = submission_key(viewer.user.id, form)

    async def write() -> Conversation:
        return await start_family_conversation(viewer.user.id, school_id, teacher_id, values["subject"],
                                               values["body"], secret_key=settings.secret_key, submission_key=key)

    conversation, earlier = await once(key, write)
    if conversation is None:  # the same form posted twice: the first one started it
        assert earlier is not None
        return redirect(f"/conversations/{earlier.conversation_id}?sent=1")
    await after_commit(request, conversation.id)
    return redirect(f"/conversations/{conversation.id}?sent=1")
