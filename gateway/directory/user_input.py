"""A person as an API client or a roster file describes them, and the checks each one must pass.

Shared by the bulk upsert (gateway.directory.users), which stops at the first bad row, and the
roster preview (gateway.directory.roster_preview), which lists every bad row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Sequence

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.directory.contacts import InvalidAddress, normalize_email, normalize_phone
from gateway.directory.models import ChannelPreference, Role, School

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


@dataclass
class PreparedUser:
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


def prepare_user(school: School, index: int, data: UserIn) -> PreparedUser:
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
    return PreparedUser(index, data, email, phone, locale)


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


def prepare_batch(school: School, users: Sequence[UserIn]) -> list[PreparedUser]:
    """Every row's own checks, and no external_id twice; raises RowError for the first bad row."""
    rows: list[PreparedUser] = []
    seen: dict[str, int] = {}
    for index, data in enumerate(users):
        if data.external_id in seen:
            raise RowError(index, "external_id", f"repeats row {seen[data.external_id]}")
        seen[data.external_id] = index
        rows.append(prepare_user(school, index, data))
    return rows
