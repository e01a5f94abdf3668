"""The staff compose page: a new message to one guardian, a student's guardians, a section, all staff
or all guardians, previewed before it is sent.

Plain form posts, so it works without JavaScript:

1. `GET /compose` shows the form for the staff member's school (`?school=<id>` picks another school
   where they are staff; the query may also prefill the other fields, e.g. `?to=guardian&guardian=g-ana`).
2. `POST /compose` with `action=preview` (the form's only button, so also what Enter does) checks the
   form. A problem shows the same form again (422), the typed values kept and the problems listed at
   the top, linked to their fields. Otherwise the preview page shows the message, who receives it on
   which channel and who will not and why: gateway.threads.compose.plan_recipients, the plan
   sending itself uses, so the preview cannot differ from what is sent. It writes nothing. The page carries every
   field as hidden inputs, with two buttons:
3. `action=edit` shows the filled form again; `action=send` checks everything again (hidden inputs
   are user input too), calls send_communication (one transaction: all or nothing), wakes the outbox
   and the open pages, then redirects (303) to the new conversation, or to the list when `private`
   made several.

Only names are ever shown, never a phone number or an e-mail address.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from aiohttp import web

from gateway.directory.models import (
    Membership,
    Relationship,
    Role,
    School,
    Section,
    User,
)
from gateway.errors import GatewayError, InvalidInput, NotFound
from gateway.i18n import _
from gateway.threads.compose import (
    BATCH,
    ComposeResult,
    RecipientSpec,
    plan_recipients,
    send_communication,
)
from gateway.threads.models import ConversationKind, Origin
from gateway.threads.quiet_hours import quiet_until
from gateway.web import keys, labels
from gateway.web.page_kit import (
    Forbidden,
    SignedIn,
    after_commit,
    form_int,
    once,
    redirect,
    render,
    signed_in_staff,
    submission_key,
)
from gateway.web.thread_view import clock

TARGETS = ("guardian", "student_guardians", "section", "staff", "guardians")
KINDS = tuple(kind.value for kind in ConversationKind)
SUBJECT_MAX = 200
PREVIEW_ROWS = 200  # rows shown per table of the preview; the counts are always exact


@dataclass
class Draft:
    """The form as typed (trimmed), valid or not."""

    to: str = "guardian"
    guardian: str = ""
    student: str = ""
    section: str = ""
    kind: str = ConversationKind.CONVERSATION.value
    subject: str = ""
    body: str = ""
    urgent: bool = False
    private: bool = False

    def fields(self) -> list[tuple[str, str]]:
        """The draft as form fields (the preview's hidden inputs)."""
        pairs = [("to", self.to), ("guardian", self.guardian), ("student", self.student), ("section", self.section),
                 ("kind", self.kind), ("subject", self.subject), ("body", self.body)]
        pairs += [(name, "1") for name, on in (("urgent", self.urgent), ("private", self.private)) if on]
        return pairs


@dataclass(frozen=True)
class Person:
    external_id: str
    label: str


@dataclass
class Choices:
    """What the form offers from the school's directory: names only."""

    guardians: list[Person]
    students: list[Person]
    sections: list[str]


@dataclass(frozen=True)
class Audience:
    spec: RecipientSpec
    description: str  # "Section 3A", "The guardians of Tom"...


@dataclass
class Row:
    name: str
    role: str
    routes: list[tuple[str, bool]] = field(default_factory=list)  # (label, is a fallback)
    reason: str = ""


@dataclass
class Preview:
    receiving: list[Row]
    not_receiving: list[Row]
    receiving_count: int
    not_receiving_count: int
    by_channel: list[tuple[str, int]]  # (channel label, people)
    sms_wait_until: datetime | None    # quiet hours hold the text messages until then

    @property
    def more_receiving(self) -> int:
        return self.receiving_count - len(self.receiving)

    @property
    def more_not_receiving(self) -> int:
        return self.not_receiving_count - len(self.not_receiving)


class Problem(Exception):
    """Form fields that are not right (field id → message): shown next to each field and at the top."""

    def __init__(self, field_id: str = "", message: str = "", *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else {field_id: message}


# -- handlers --------------------------------------------------------------------------------------


async def compose_page(request: web.Request) -> web.Response:
    viewer = await signed_in_staff(request)
    staff = pick_school(viewer, request.query.get("school"))
    return await show_form(request, viewer, staff, read_draft(request.query))


async def compose(request: web.Request) -> web.Response:
    viewer = await signed_in_staff(request)
    form = await request.post()
    staff = pick_school(viewer, form.get("school"))
    draft = read_draft(form)
    action = str(form.get("action", "preview"))
    if action == "edit":
        return await show_form(request, viewer, staff, draft)
    try:
        audience = await check_draft(staff, draft, body_limit(request))
        if action == "send":
            return await send(request, staff, draft, audience, submission_key(viewer.user.id, form))
        preview = await preview_recipients(staff.school, staff.user_id, draft, audience.spec)
    except Problem as problem:
        return await show_form(request, viewer, staff, draft, problem.errors, status=422)
    return render(request, "compose_preview.html", {
        "school": staff.school, "several_schools": len(viewer.staff) > 1, "draft": draft, "audience": audience,
        "preview": preview, "labels": labels, "hidden": draft.fields(),
        "wait_until": clock(viewer.lang, staff.school.timezone)(preview.sms_wait_until) if preview.sms_wait_until else "",
    })


# -- reading and checking the form -----------------------------------------------------------------


def pick_school(viewer: SignedIn, raw: Any) -> Membership:
    """The viewer's staff membership of the chosen school (default: their first); never another school."""
    if raw in (None, ""):
        return viewer.staff[0]
    school_id = form_int(raw)
    staff = viewer.staff_in(school_id) if school_id else None
    if staff is None:
        raise Forbidden("you are not staff of this school")
    return staff


def read_draft(data: Mapping[str, Any]) -> Draft:
    def text(name: str) -> str:
        value = data.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    return Draft(
        to=text("to") or "guardian", guardian=text("guardian"), student=text("student"), section=text("section"),
        kind=text("kind") or ConversationKind.CONVERSATION.value, subject=" ".join(text("subject").split()),  # one line
        body=text("body").replace("\r\n", "\n"),  # browsers post line breaks as CRLF
        urgent=bool(text("urgent")), private=bool(text("private")),
    )


def body_limit(request: web.Request) -> int:
    return request.config_dict[keys.SETTINGS].max_body_chars


SCHOOL_WIDE = ("staff", "guardians")  # whole-school audiences: admins only (a teacher writes to their classes)


async def check_draft(staff: Membership, draft: Draft, limit: int) -> Audience:
    """The recipients the draft names, or a Problem listing everything to fix, in the form's order."""
    errors: dict[str, str] = {}
    try:
        if draft.to in SCHOOL_WIDE and not staff.is_admin:
            raise Problem("to", _("Only school administrators write to all staff or all guardians."))
        audience = await find_audience(staff.school, draft)
    except Problem as problem:
        errors.update(problem.errors)
    errors.update(message_errors(draft, limit))
    if errors:
        raise Problem(errors=errors)
    return audience


def message_errors(draft: Draft, limit: int) -> dict[str, str]:
    errors = {}
    if draft.kind not in KINDS:
        errors["kind"] = _("Choose what kind of message this is.")
    if len(draft.subject) > SUBJECT_MAX:
        errors["subject"] = _("The subject is too long: %(num)s characters at most.") % {"num": SUBJECT_MAX}
    if not draft.body:
        errors["body"] = _("Write a message first.")
    elif len(draft.body) > limit:
        errors["body"] = _("The message is too long: %(num)s characters at most.") % {"num": limit}
    return errors


async def find_audience(school: School, draft: Draft) -> Audience:
    if draft.to == "guardian":
        return await one_guardian(school, draft.guardian)
    if draft.to == "student_guardians":
        return await guardians_of_student(school, draft.student)
    if draft.to == "section":
        return await one_section(school, draft.section)
    if draft.to == "staff":
        return Audience(RecipientSpec(roles=[Role.STAFF]), _("All staff"))
    if draft.to == "guardians":
        return Audience(RecipientSpec(roles=[Role.GUARDIAN]), _("All guardians"))
    raise Problem("to", _("Choose who receives the message."))


async def one_guardian(school: School, external_id: str) -> Audience:
    if not external_id:
        raise Problem("guardian", _("Choose a guardian."))
    guardian = await Membership.get_or_none(school=school, external_id=external_id, role=Role.GUARDIAN).select_related("user")
    if guardian is None:
        raise Problem("guardian", _("That guardian is not in this school's directory."))
    return Audience(RecipientSpec(users=[external_id]), guardian.user.name)


async def guardians_of_student(school: School, external_id: str) -> Audience:
    if not external_id:
        raise Problem("student", _("Choose a student."))
    student = await Membership.get_or_none(school=school, external_id=external_id, role=Role.STUDENT).select_related("user")
    if student is None:
        raise Problem("student", _("That student is not in this school's directory."))
    guardian_ids = await Relationship.filter(school=school, student_id=student.user_id).values_list("guardian_id", flat=True)
    external_ids = await Membership.filter(school=school, role=Role.GUARDIAN, user_id__in=list(guardian_ids)).values_list(
        "external_id", flat=True)
    if not external_ids:
        raise Problem("student", _("%(name)s has no guardian in the directory.") % {"name": student.user.name})
    return Audience(RecipientSpec(users=sorted(external_ids)), _("The guardians of %(name)s") % {"name": student.user.name})


async def one_section(school: School, name: str) -> Audience:
    if not name:
        raise Problem("section", _("Choose a section."))
    if not await Section.exists(school=school, name=name):
        raise Problem("section", _("There is no section %(name)s in this school.") % {"name": name})
    return Audience(RecipientSpec(sections=[name]), _("Section %(name)s") % {"name": name})


# -- the form --------------------------------------------------------------------------------------


async def show_form(request: web.Request, viewer: SignedIn, staff: Membership, draft: Draft,
                    errors: dict[str, str] | None = None, *, status: int = 200) -> web.Response:
    return render(request, "compose.html", {
        "school": staff.school, "schools": viewer.staff if len(viewer.staff) > 1 else [],
        "choices": await directory_choices(staff.school), "draft": draft, "errors": errors or {},
        "kinds": KINDS, "labels": labels, "subject_max": SUBJECT_MAX, "limit": body_limit(request),
        "school_wide": staff.is_admin,
    }, status=status)


async def directory_choices(school: School) -> Choices:
    people = await Membership.filter(school=school, role__in=[Role.GUARDIAN, Role.STUDENT]).values_list(
        "external_id", "role", "user_id", "user__name")
    names = {user_id: name for _ext, _role, user_id, name in people}
    wards: dict[int, list[str]] = {}
    for guardian_id, student_id in await Relationship.filter(school=school).values_list("guardian_id", "student_id"):
        if student_id in names:
            wards.setdefault(guardian_id, []).append(names[student_id])
    guardians, students = [], []
    for external_id, role, user_id, name in people:
        if Role(role) is Role.STUDENT:
            students.append(Person(external_id, name))
        else:
            guardians.append(Person(external_id, guardian_label(name, wards.get(user_id, []))))
    sections = await Section.filter(school=school).order_by("name").values_list("name", flat=True)
    return Choices(sorted(guardians, key=by_label), sorted(students, key=by_label), list(sections))


def guardian_label(name: str, students: list[str]) -> str:
    """ "Ana García (Lucía)": the children tell apart two guardians of the same name."""
    if not students:
        return name
    return _("%(name)s (%(students)s)") % {"name": name, "students": ", ".join(sorted(students, key=str.casefold))}


def by_label(person: Person) -> tuple[str, str]:
    return person.label.casefold(), person.external_id


# -- the preview -----------------------------------------------------------------------------------


async def preview_recipients(school: School, sender_id: int, draft: Draft, spec: RecipientSpec) -> Preview:
    """Who gets it by which channel, and who does not and why: the plan sending uses. Writes nothing."""
    try:
        planned = await plan_recipients(school, spec, ConversationKind(draft.kind), sender_user_id=sender_id)
    except (InvalidInput, NotFound) as exc:
        raise problem_of(exc) from None
    names = await names_of([person.user_id for person, _routes in planned])
    planned.sort(key=lambda plan: (names.get(plan[0].user_id, "").casefold(), plan[0].user_id))
    receiving: list[Row] = []
    not_receiving: list[Row] = []
    channels: Counter[str] = Counter()
    for person, routes in planned:
        row = Row(names.get(person.user_id, ""), person.role)
        if routes[0].suppressed:  # choose_routes: either usable routes, or one suppressed route saying why
            row.reason = labels.reason_name(routes[0].suppressed_reason)
            not_receiving.append(row)
            continue
        row.routes = [(labels.route_name(r.channel, fallback=r.fallback, short_link=r.short_link), r.fallback)
                      for r in routes]
        channels.update(r.channel for r in routes)
        receiving.append(row)
    return Preview(
        receiving=receiving[:PREVIEW_ROWS], not_receiving=not_receiving[:PREVIEW_ROWS],
        receiving_count=len(receiving), not_receiving_count=len(not_receiving),
        by_channel=[(labels.channel_name(c), channels[c]) for c in ("sms", "email") if channels[c]],
        sms_wait_until=sms_wait(school, draft) if channels["sms"] else None,
    )


async def names_of(user_ids: list[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for start in range(0, len(user_ids), BATCH):
        names.update(await User.filter(id__in=user_ids[start:start + BATCH]).values_list("id", "name"))
    return names


def sms_wait(school: School, draft: Draft) -> datetime | None:
    if draft.urgent:
        return None
    return quiet_until(datetime.now(timezone.utc), school.timezone, school.quiet_hours_start, school.quiet_hours_end)


# -- sending ---------------------------------------------------------------------------------------


async def send(request: web.Request, staff: Membership, draft: Draft, audience: Audience,
               key: str | None) -> web.Response:
    async def write() -> ComposeResult:
        return await send_communication(
            staff.school, sender_external_id=staff.external_id, kind=ConversationKind(draft.kind),
            recipients=audience.spec, subject=draft.subject, body=draft.body, urgent=draft.urgent,
            private=draft.private, origin=Origin.WEB, secret_key=request.config_dict[keys.SETTINGS].secret_key,
            submission_key=key,
        )

    try:
        result, earlier = await once(key, write)
    except (InvalidInput, NotFound) as exc:
        raise problem_of(exc) from None
    if result is None:  # Send pressed twice: the first press sent it
        assert earlier is not None
        return redirect(f"/conversations/{earlier.conversation_id}?sent=1")
    await after_commit(request, *result.conversation_ids)
    if len(result.conversation_ids) == 1:
        return redirect(f"/conversations/{result.conversation_ids[0]}?sent=1")
    return redirect(f"/conversations?sent={len(result.conversation_ids)}")


def problem_of(exc: GatewayError) -> Problem:
    """An error of gateway.threads.compose (the directory changed under the form), in words for staff."""
    if exc.code == "unknown_section":
        return Problem("section", _("That section is no longer in the directory."))
    if exc.code == "unknown_recipient":
        return Problem("to", _("Someone you chose is no longer in the directory."))
    if exc.code == "no_recipients":
        return Problem("to", _("Nobody would receive this message (you are never one of the recipients)."))
    return Problem("to", _("The message could not be sent. Check the form and try again."))
