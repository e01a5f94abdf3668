"""Bulk upsert of a school's people, keyed by the school's own external ids.

The whole batch is validated before anything is written, and written in one transaction: a bad row
rejects the request with its index and field, and nothing changes (DESIGN section 8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Iterable, Sequence

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gateway.directory.contacts import InvalidAddress, normalize_email, normalize_phone
from gateway.directory.models import (
    ChannelPreference,
    ContactKind,
    ContactPoint,
    Membership,
    Relationship,
    Role,
    School,
    Section,
    SectionMember,
    User,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class UserIn(BaseModel):
    """One person as an API client or a roster file describes them."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId
    role: Role
    name: Name
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    locale: Annotated[str, StringConstraints(max_length=16)] | None = None
    channel_preference: ChannelPreference | None = None
    login_enabled: bool | None = None
    is_admin: bool | None = None
    guardian_of: list[ExternalId] | None = Field(default=None, max_length=50)
    sections: list[Name] | None = Field(default=None, max_length=100)


@dataclass
class RowError(Exception):
    """Row `index` of the batch is wrong in `field`."""

    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"users[{self.index}].{self.field}: {self.message}"


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int


@dataclass
class _Row:
    index: int
    data: UserIn
    email: str | None
    phone: str | None
    locale: str | None


def normalize_locale(raw: str) -> str:
    """'es-MX' → 'es_MX'; raise ValueError for something that is not a locale.

    Babel quietly drops what it does not know ('en-nonsense' parses as 'en', 'en-ZZ' as 'en_US'), so
    a territory, script or variant that was asked for must survive the parse.
    """
    text = raw.strip().replace("-", "_")
    try:
        language, territory, script, variant = parse_locale(text)[:4]
        locale = Locale.parse(text)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {raw!r}") from exc
    if (territory and locale.territory != territory) or (script and locale.script != script) or (
        variant and locale.variant != variant
    ):
        raise ValueError(f"unknown locale {raw!r}")
    return str(locale)


def prepare_user(school: School, index: int, data: UserIn) -> _Row:
    """One person's own checks, with their addresses and locale normalised; raises RowError.

    The checks that need no other row and no database: e-mail, phone (read in the school's region),
    locale, guardian_of only for guardians, is_admin only for staff. upsert_users makes them for
    every row, and the roster preview for each row on its own (to list every bad row).
    """
    try:
        email = normalize_email(data.email) if data.email else None
    except InvalidAddress as exc:
        raise RowError(index, "email", str(exc)) from None
    try:
        phone = normalize_phone(data.phone, school.default_region) if data.phone else None
    except InvalidAddress as exc:
        raise RowError(index, "phone", str(exc)) from None
    try:
        locale = normalize_locale(data.locale) if data.locale else None
    except ValueError as exc:
        raise RowError(index, "locale", str(exc)) from None
    if data.guardian_of and data.role is not Role.GUARDIAN:
        raise RowError(index, "guardian_of", "only guardians have guardian_of")
    if data.is_admin and data.role is not Role.STAFF:
        raise RowError(index, "is_admin", "only staff can be admins")
    return _Row(index, data, email, phone, locale)


def link_problem(data: UserIn, current_role: Role | None, is_student: Callable[[str], bool]) -> tuple[str, str] | None:
    """(field, message) when the school as it is stops this person being written, else None.

    `current_role` is the role the person has in the school already (None: new); `is_student`
    says whether an external id is a student of the school or of the batch being written.
    """
    for ext in data.guardian_of or []:
        if not is_student(ext):
            return "guardian_of", f"no student with external_id {ext!r} in this school"
    if current_role is not None and current_role is not data.role:
        return "role", f"is {current_role.value} already; a role cannot change"
    return None


def _prepare(school: School, users: Sequence[UserIn]) -> list[_Row]:
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for index, data in enumerate(users):
        if data.external_id in seen:
            raise RowError(index, "external_id", f"repeats row {seen[data.external_id]}")
        seen[data.external_id] = index
        rows.append(prepare_user(school, index, data))
    return rows


UPSERT_ATTEMPTS = 3


async def upsert_users(school: School, users: Sequence[UserIn]) -> UpsertResult:
    """Create or update `users` in `school`; all or nothing. Raises RowError.

    Two batches naming the same new people at once (a re-sent request, two roster imports) both see
    them missing, and the second to commit breaks a unique constraint. Its transaction rolls back
    entirely, so it is simply run again: the people now exist and are updated.
    """
    rows = _prepare(school, users)
    for attempt in range(1, UPSERT_ATTEMPTS + 1):
        try:
            return await _upsert(school, rows)
        except IntegrityError:
            if attempt == UPSERT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _upsert(school: School, rows: list[_Row]) -> UpsertResult:
    ext_ids = [r.data.external_id for r in rows]
    referenced = {ext for r in rows for ext in (r.data.guardian_of or [])}

    async with in_transaction():
        existing = {
            m.external_id: m
            for m in await Membership.filter(school=school, external_id__in=ext_ids).select_related("user")
        }
        students = {
            m.external_id: m.user_id
            for m in await Membership.filter(school=school, external_id__in=list(referenced), role=Role.STUDENT)
        }
        batch_roles = {r.data.external_id: r.data.role for r in rows}
        def is_student(ext: str) -> bool:
            return ext in students or batch_roles.get(ext) is Role.STUDENT

        for r in rows:
            old = existing.get(r.data.external_id)
            problem = link_problem(r.data, old.role if old is not None else None, is_student)
            if problem is not None:
                raise RowError(r.index, *problem)

        created = updated = 0
        user_ids: dict[str, int] = {}
        for r in rows:
            membership = existing.get(r.data.external_id)
            if membership is None:
                user = await User.create(**_user_fields(r, school, new=True))
                await Membership.create(
                    school=school, user=user, external_id=r.data.external_id, role=r.data.role,
                    is_admin=bool(r.data.is_admin),
                )
                created += 1
            else:
                user = membership.user
                changes = _user_fields(r, school, new=False)
                if changes:
                    await User.filter(id=user.id).update(**changes)
                if r.data.is_admin is not None and membership.is_admin != r.data.is_admin:
                    await Membership.filter(id=membership.id).update(is_admin=r.data.is_admin)
                updated += 1
            user_ids[r.data.external_id] = user.id
            await _set_contact(user.id, ContactKind.EMAIL, r.email, given="email" in r.data.model_fields_set)
            await _set_contact(user.id, ContactKind.PHONE, r.phone, given="phone" in r.data.model_fields_set)

        students.update({ext: uid for ext, uid in user_ids.items() if batch_roles[ext] is Role.STUDENT})
        for r in rows:
            uid = user_ids[r.data.external_id]
            if r.data.guardian_of is not None:
                await _set_wards(school, uid, {students[ext] for ext in r.data.guardian_of})
            if r.data.sections is not None:
                await _set_sections(school, uid, r.data.sections)
    return UpsertResult(created=created, updated=updated)


def _user_fields(r: _Row, school: School, *, new: bool) -> dict[str, object]:
    given = r.data.model_fields_set
    fields: dict[str, object] = {}
    if new or "name" in given:
        fields["name"] = r.data.name
    if new or "locale" in given:
        fields["locale"] = r.locale
    if new or "channel_preference" in given:
        fields["channel_preference"] = r.data.channel_preference or _default_preference(r)
    if new or "login_enabled" in given:
        # Staff and guardians may always log in; students only when the school enables it.
        fields["login_enabled"] = r.data.role is not Role.STUDENT or bool(r.data.login_enabled)
    return fields


def _default_preference(r: _Row) -> ChannelPreference:
    if r.email:
        return ChannelPreference.EMAIL
    return ChannelPreference.SMS if r.phone else ChannelPreference.EMAIL


async def _set_contact(user_id: int, kind: ContactKind, address: str | None, *, given: bool) -> None:
    """Make `address` the user's one contact point of `kind`, keeping its state if it is unchanged."""
    if not given:
        return
    current = await ContactPoint.filter(user_id=user_id, kind=kind)
    if any(c.address == address for c in current) and len(current) == 1:
        return
    stale = [c.id for c in current if c.address != address]
    if stale:
        await ContactPoint.filter(id__in=stale).delete()
    if address and not any(c.address == address for c in current):
        await ContactPoint.create(user_id=user_id, kind=kind, address=address)


async def _set_wards(school: School, guardian_id: int, student_ids: Iterable[int]) -> None:
    wanted = set(student_ids)
    current = {r.student_id: r.id for r in await Relationship.filter(school=school, guardian_id=guardian_id)}
    gone = [rid for sid, rid in current.items() if sid not in wanted]
    if gone:
        await Relationship.filter(id__in=gone).delete()
    for sid in wanted - current.keys():
        await Relationship.create(school=school, guardian_id=guardian_id, student_id=sid)


async def _set_sections(school: School, user_id: int, names: Iterable[str]) -> None:
    wanted = set(names)
    sections = {s.name: s for s in await Section.filter(school=school, name__in=list(wanted))}
    for name in wanted - sections.keys():
        sections[name] = await Section.create(school=school, name=name)
    wanted_ids = {sections[n].id for n in wanted}
    current = {
        m.section_id: m.id for m in await SectionMember.filter(user_id=user_id, section__school=school)
    }
    gone = [mid for sid, mid in current.items() if sid not in wanted_ids]
    if gone:
        await SectionMember.filter(id__in=gone).delete()
    for sid in wanted_ids - current.keys():
        await SectionMember.create(section_id=sid, user_id=user_id)
