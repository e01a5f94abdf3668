"""Reading roster files into UserIn rows: OneRoster 1.1 users.csv, or a plain CSV.

OneRoster 1.1 (IMS Global, "OneRoster v1.1 CSV Tables", users.csv): sourcedId, status, enabledUser,
role, givenName, familyName, email, sms, phone, agentSourcedIds, ... Roles map as
teacher/aide/proctor → staff, administrator → staff admin, parent/guardian/relative → guardian,
student → student. agentSourcedIds links students and their guardians (in either direction).

Plain CSV: a header with our field names (external_id, role, name, email, phone, locale,
channel_preference, login_enabled, is_admin, guardian_of, sections); lists separated by ";".
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterator

from pydantic import ValidationError

from gateway.directory.users import UserIn
from gateway.errors import validation_message

ONEROSTER_ROLES = {
    "teacher": ("staff", False), "aide": ("staff", False), "proctor": ("staff", False),
    "administrator": ("staff", True),
    "parent": ("guardian", False), "guardian": ("guardian", False), "relative": ("guardian", False),
    "student": ("student", False),
}
PLAIN_FIELDS = {"external_id", "role", "name", "email", "phone", "locale", "channel_preference",
                "login_enabled", "is_admin", "guardian_of", "sections"}
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n", ""}


@dataclass
class RosterError(ValueError):
    """Line `line` of the file (1 is the header) is wrong."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM); spreadsheet exports in Windows-1252 are accepted too."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_roster(data: bytes) -> list[UserIn]:
    """The people in a roster file, in file order; raise RosterError naming the line."""
    return [user for _, user in read_roster(data)]


def read_roster(data: bytes) -> list[tuple[int, UserIn]]:
    """Like parse_roster, with each person's line number in the file (the header is line 1).

    Skipped rows (OneRoster `tobedeleted`) and blank lines mean a person's position in the list is
    not its line: report problems found later (by upsert_users) with these numbers.
    """
    text = decode(data)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise RosterError(1, f"not a CSV file: {exc}") from None
    header = [h.strip() for h in fieldnames]
    named = [h for h in header if h]  # spreadsheets often add unnamed empty columns: ignored
    if len(set(named)) != len(named):
        repeated = sorted({h for h in named if named.count(h) > 1})[0]
        raise RosterError(1, f"column {repeated!r} appears twice")
    reader.fieldnames = header
    columns = set(named)
    if "sourcedId" in columns:
        return _oneroster(reader)
    if {"external_id", "role", "name"} <= columns:
        unknown = columns - PLAIN_FIELDS
        if unknown:
            raise RosterError(1, f"unknown column {sorted(unknown)[0]!r}")
        return _plain(reader)
    raise RosterError(1, "not a OneRoster users.csv (no sourcedId column) nor a plain roster "
                         "(needs external_id, role and name columns)")


def _rows(reader: csv.DictReader) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for every record; the number is the line where the record starts.

    reader.line_num counts physical lines read so far, including blank lines that DictReader skips
    and the newlines inside quoted values, so the start is worked back from the record's end.
    """
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RosterError(reader.line_num, f"not valid CSV: {exc}") from None
        number = reader.line_num - _record_lines(row) + 1
        if None in row:
            raise RosterError(number, "more values than columns")
        yield number, {k: (v or "").strip() for k, v in row.items() if k}


def _record_lines(row: dict[str | None, object]) -> int:
    """How many physical lines a parsed record spans (quoted values may hold newlines)."""
    return 1 + sum(str(v).count("\n") for v in row.values() if isinstance(v, str))


def _bool(value: str, line: int, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise RosterError(line, f"{column}: expected true or false, got {value!r}")


def _validated(raw: dict[str, object], line: int) -> UserIn:
    try:
        return UserIn.model_validate(raw)
    except ValidationError as exc:
        raise RosterError(line, validation_message(exc)) from None


def _plain(reader: csv.DictReader) -> list[tuple[int, UserIn]]:
    users: list[tuple[int, UserIn]] = []
    for number, row in _rows(reader):
        raw: dict[str, object] = {}
        for key, value in row.items():
            if not value:
                continue
            if key in ("guardian_of", "sections"):
                raw[key] = [v.strip() for v in value.split(";") if v.strip()]
            elif key in ("login_enabled", "is_admin"):
                raw[key] = _bool(value, number, key)
            else:
                raw[key] = value
        users.append((number, _validated(raw, number)))
    return users


def _oneroster(reader: csv.DictReader) -> list[tuple[int, UserIn]]:
    rows: list[tuple[int, dict[str, str]]] = []
    for number, row in _rows(reader):
        if row.get("status", "").lower() == "tobedeleted":
            continue
        rows.append((number, row))
    roles: dict[str, str] = {}
    for number, row in rows:
        mapped = ONEROSTER_ROLES.get(row.get("role", "").lower())
        if mapped is None:
            raise RosterError(number, f"role: unknown OneRoster role {row.get('role')!r}")
        if not row.get("sourcedId"):
            raise RosterError(number, "sourcedId: missing")
        roles[row["sourcedId"]] = mapped[0]
    wards: dict[str, set[str]] = {}
    for _, row in rows:
        agents = [a.strip() for a in row.get("agentSourcedIds", "").split(",") if a.strip()]
        me = row["sourcedId"]
        for agent in agents:
            if roles.get(me) == "student" and roles.get(agent) == "guardian":
                wards.setdefault(agent, set()).add(me)
            elif roles.get(me) == "guardian" and roles.get(agent) == "student":
                wards.setdefault(me, set()).add(agent)
    users: list[tuple[int, UserIn]] = []
    for number, row in rows:
        role, admin = ONEROSTER_ROLES[row["role"].lower()]
        name = " ".join(p for p in (row.get("givenName", ""), row.get("familyName", "")) if p) or row.get("username", "")
        raw: dict[str, object] = {"external_id": row["sourcedId"], "role": role, "name": name}
        if row.get("email"):
            raw["email"] = row["email"]
        phone = row.get("sms") or row.get("phone")
        if phone:
            raw["phone"] = phone
        if admin:
            raw["is_admin"] = True
        if role == "student":
            raw["login_enabled"] = _bool(row.get("enabledUser", "false"), number, "enabledUser")
        if role == "guardian":
            # The file is the whole roster: a guardian listed with no students has none now.
            raw["guardian_of"] = sorted(wards.get(row["sourcedId"], ()))
        users.append((number, _validated(raw, number)))
    return users
