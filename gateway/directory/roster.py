"""Reading roster files into UserIn rows: OneRoster 1.1 users.csv, or a plain CSV.

OneRoster 1.1 (IMS Global, "OneRoster v1.1 CSV Tables", users.csv): sourcedId, status, enabledUser,
role, givenName, familyName, email, sms, phone, agentSourcedIds, ... Roles map as
teacher/aide/proctor → staff, administrator → staff admin, parent/guardian/relative → guardian,
student → student. agentSourcedIds links students and their guardians (in either direction).

Plain CSV: a header with our field names (external_id, role, name, email, phone, locale,
channel_preference, login_enabled, is_admin, guardian_of, sections); lists separated by ";".

Files come from spreadsheets: UTF-8 (with or without BOM), UTF-16 with a BOM (Excel's "Unicode
text") or Windows-1252, separated by commas, tabs (Unicode text again) or semicolons (Excel where
the decimal mark is a comma). One parser serves everyone: `read_roster_rows` reads every row and
gives each either its UserIn or the reason it is wrong (the web preview lists them all);
`read_roster` (the CLI) stops at the first wrong row. A file that is no roster at all (empty,
binary, no header we know, broken CSV) raises RosterError either way.

Cells that look like spreadsheet formulas (a name, id, e-mail, section or guardian_of id starting
with = + - or @) are rejected: OWASP "CSV Injection" says to neutralise them on export, and we
have no export, but no real name starts that way and such a value would be waiting in the
directory for the day someone copies it into a spreadsheet. Leading tabs and carriage returns
(the other triggers) are stripped from every cell already. Phone numbers may start with "+".
"""
from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from typing import Iterator, Literal, cast

from pydantic import ValidationError

from gateway.directory.user_input import UserIn
from gateway.errors import validation_message

ONEROSTER_ROLES = {
    "teacher": ("staff", False), "aide": ("staff", False), "proctor": ("staff", False),
    "administrator": ("staff", True),
    "parent": ("guardian", False), "guardian": ("guardian", False), "relative": ("guardian", False),
    "student": ("student", False),
}
PLAIN_FIELDS = {"external_id", "role", "name", "email", "phone", "locale", "channel_preference",
                "login_enabled", "is_admin", "guardian_of", "sections"}
PLAIN_REQUIRED = {"external_id", "role", "name"}
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n", ""}
DELIMITERS = (",", "\t", ";")
FORMULA_START = ("=", "+", "-", "@")

RosterFormat = Literal["oneroster", "plain"]
Row = tuple[int, "UserIn | str"]  # (line, the person or why the line is wrong)


@dataclass
class RosterError(ValueError):
    """Line `line` of the file (1 is the header) is wrong.

    `kind` says what is wrong with a file that is no roster: "empty", "binary", "not_roster"
    (no header we know), "header" (a column is unknown or repeated), "csv" (broken quoting), or
    "row" (one person's line, from read_roster).
    """

    line: int
    message: str
    kind: str = "row"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class RosterFile:
    """A roster read whole: its format, its text, every row, and how many were left out."""

    format: RosterFormat
    text: str
    rows: list[Row] = field(default_factory=list)
    left_out: int = 0  # OneRoster rows with status tobedeleted: nobody is removed, they are skipped


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM (Excel "Unicode text"), else Windows-1252."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")  # reads the BOM, and drops it
        except UnicodeDecodeError:
            pass  # an odd length or a lone surrogate: not UTF-16 after all
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
    rows = read_roster_rows(data)
    for number, user in rows:
        if isinstance(user, str):
            raise RosterError(number, user)
    return cast(list[tuple[int, UserIn]], rows)


def read_roster_rows(data: bytes | str) -> list[Row]:
    """Every row of a roster file as (line, UserIn) or (line, why it is wrong), in file order.

    Raises RosterError only when the file as a whole is no roster (see RosterError.kind).
    """
    return open_roster(data).rows


def open_roster(data: bytes | str) -> RosterFile:
    """Decode (bytes) and read a roster file whole; RosterError when it is no roster at all."""
    text = decode(data) if isinstance(data, bytes) else data
    if not text.strip():
        raise RosterError(1, "the file is empty: not a OneRoster users.csv nor a plain roster", "empty")
    if "\x00" in text:
        raise RosterError(1, "not a text file (it holds binary data); save the roster as CSV", "binary")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise RosterError(1, f"not a CSV file: {exc}", "csv") from None
    header = [h.strip() for h in fieldnames]
    named = [h for h in header if h]  # spreadsheets often add unnamed empty columns: ignored
    if len(set(named)) != len(named):
        repeated = sorted({h for h in named if named.count(h) > 1})[0]
        raise RosterError(1, f"column {repeated!r} appears twice", "header")
    reader.fieldnames = header
    columns = set(named)
    if "sourcedId" in columns:
        rows, left_out = _oneroster(reader)
        return RosterFile("oneroster", text, rows, left_out)
    if PLAIN_REQUIRED <= columns:
        unknown = columns - PLAIN_FIELDS
        if unknown:
            raise RosterError(1, f"unknown column {sorted(unknown)[0]!r}", "header")
        return RosterFile("plain", text, _plain(reader))
    raise RosterError(1, "not a OneRoster users.csv (no sourcedId column) nor a plain roster "
                         "(needs external_id, role and name columns)", "not_roster")


def _delimiter(text: str) -> str:
    """The separator whose reading of the first line is a header we know; else a comma."""
    first = text.splitlines()[0] if text else ""
    for delimiter in DELIMITERS:
        try:
            header = {h.strip() for h in next(csv.reader([first], delimiter=delimiter), [])}
        except csv.Error:
            continue
        if "sourcedId" in header or PLAIN_REQUIRED <= header:
            return delimiter
    return ","


def _rows(reader: csv.DictReader) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, row or why it is wrong) for every record; the number is where the record starts.

    reader.line_num counts physical lines read so far, including blank lines that DictReader skips
    and the newlines inside quoted values, so the start is worked back from the record's end.
    Broken quoting leaves the rest of the file unreadable: that is RosterError, not a row problem.
    """
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RosterError(reader.line_num, f"not valid CSV: {exc}", "csv") from None
        number = reader.line_num - _record_lines(row) + 1
        if None in row:
            yield number, "more values than columns"
            continue
        yield number, {k: (v or "").strip() for k, v in row.items() if k}


def _record_lines(row: dict[str | None, object]) -> int:
    """How many physical lines a parsed record spans (quoted values may hold newlines)."""
    return 1 + sum(str(v).count("\n") for v in row.values() if isinstance(v, str))


def _bool(value: str, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"{column}: expected true or false, got {value!r}")


def formula_problem(user: UserIn) -> str | None:
    """Why a person's text looks like a spreadsheet formula (see the module docstring), or None."""
    texts: list[tuple[str, str]] = [("external_id", user.external_id), ("name", user.name)]
    if user.email:
        texts.append(("email", user.email))
    texts += [("guardian_of", ext) for ext in user.guardian_of or []]
    texts += [("sections", name) for name in user.sections or []]
    for column, value in texts:
        if value.startswith(FORMULA_START):
            shown = value if len(value) <= 60 else value[:60] + "…"
            return f"{column}: {shown!r} starts with {value[0]!r} like a spreadsheet formula, which a roster cannot hold"
    return None


def _validated(raw: dict[str, object]) -> UserIn | str:
    try:
        user = UserIn.model_validate(raw)
    except ValidationError as exc:
        return validation_message(exc)
    return formula_problem(user) or user


def _plain(reader: csv.DictReader) -> list[Row]:
    users: list[Row] = []
    for number, row in _rows(reader):
        if isinstance(row, str):
            users.append((number, row))
            continue
        raw: dict[str, object] = {}
        try:
            for key, value in row.items():
                if not value:
                    continue
                if key in ("guardian_of", "sections"):
                    raw[key] = [v.strip() for v in value.split(";") if v.strip()]
                elif key in ("login_enabled", "is_admin"):
                    raw[key] = _bool(value, key)
                else:
                    raw[key] = value
        except ValueError as exc:
            users.append((number, str(exc)))
            continue
        users.append((number, _validated(raw)))
    return users


def _oneroster(reader: csv.DictReader) -> tuple[list[Row], int]:
    rows: list[tuple[int, dict[str, str] | str]] = []
    left_out = 0
    for number, row in _rows(reader):
        if not isinstance(row, str) and row.get("status", "").lower() == "tobedeleted":
            left_out += 1
            continue
        rows.append((number, row))
    problems: dict[int, str] = {}
    roles: dict[str, str] = {}
    for number, row in rows:
        if isinstance(row, str):
            continue
        mapped = ONEROSTER_ROLES.get(row.get("role", "").lower())
        if mapped is None:
            problems[number] = f"role: unknown OneRoster role {row.get('role')!r}"
        elif not row.get("sourcedId"):
            problems[number] = "sourcedId: missing"
        else:
            roles[row["sourcedId"]] = mapped[0]
    wards: dict[str, set[str]] = {}
    for number, row in rows:
        if isinstance(row, str) or number in problems:
            continue
        agents = [a.strip() for a in row.get("agentSourcedIds", "").split(",") if a.strip()]
        me = row["sourcedId"]
        for agent in agents:
            if roles.get(me) == "student" and roles.get(agent) == "guardian":
                wards.setdefault(agent, set()).add(me)
            elif roles.get(me) == "guardian" and roles.get(agent) == "student":
                wards.setdefault(me, set()).add(agent)
    users: list[Row] = []
    for number, row in rows:
        if isinstance(row, str) or number in problems:
            users.append((number, row if isinstance(row, str) else problems[number]))
            continue
        users.append((number, _oneroster_user(row, wards)))
    return users, left_out


def _oneroster_user(row: dict[str, str], wards: dict[str, set[str]]) -> UserIn | str:
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
    # enabledUser is the account in the student information system, not a login here: students'
    # logins are enabled by the school's admins in the directory (gateway.directory.logins).
    if role == "guardian":
        # The file is the whole roster: a guardian listed with no students has none now.
        raw["guardian_of"] = sorted(wards.get(row["sourcedId"], ()))
    return _validated(raw)
