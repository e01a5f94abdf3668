"""What a roster file would do to a school's directory, worked out without writing anything.

`preview_roster(school, data)` decodes and reads the file (gateway.directory.roster), makes every
check upsert_users would make, row by row (users.prepare_user and users.link_problem, the same
functions), and compares the people with the school's memberships (one query): who would be
created, who updated, and every rejected row with its line and reason. `preview.users` are the
rows upsert_users accepts as they are: applying them writes exactly the preview's creations and
updates (in one transaction), as long as nobody changes the directory in between.

Rows are judged one by one, so one bad row does not hide the others (upsert_users itself is all
or nothing, for the API). Two choices differ from upsert_users, because a rejected row is skipped
here rather than failing the batch:
- an external id on several lines rejects all of them (upsert_users rejects the second): we
  cannot tell which line is right, and applying the first one silently would be a guess;
- a guardian whose guardian_of names a student that is new and rejected is rejected too (the
  student will not exist), with the student's line in the reason.

The reading and checking are CPU work (about a second for 50,000 rows): they run in a thread, so
the server keeps answering other requests meanwhile.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from gateway.directory.models import Membership, Role, School
from gateway.directory.roster import RosterFile, open_roster
from gateway.directory.user_input import RowError, UserIn, link_problem, prepare_user

__all__ = ["PreviewPerson", "RejectedRow", "RosterPreview", "preview_roster"]


@dataclass(frozen=True)
class PreviewPerson:
    line: int
    external_id: str
    name: str
    role: Role
    old_name: str | None = None  # an update that renames the person: their name now


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str  # "field: what is wrong", in English like the API's errors


@dataclass
class RosterPreview:
    format: str  # "oneroster" or "plain"
    text: str  # the decoded file, as stored between the preview and applying it
    create: list[PreviewPerson] = field(default_factory=list)
    update: list[PreviewPerson] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    left_out: int = 0  # OneRoster rows marked tobedeleted (nobody is removed)
    users: list[UserIn] = field(default_factory=list)  # the accepted rows, in file order: to apply

    @property
    def rows(self) -> int:
        return len(self.create) + len(self.update) + len(self.rejected)

    def digest(self) -> str:
        """A fingerprint of exactly who would be created, updated and rejected (and why): the page
        shows a preview, and applying checks that it still is the same one, not just the same counts."""
        parts = [f"c:{p.external_id}" for p in self.create] + [f"u:{p.external_id}" for p in self.update]
        parts += [f"r:{r.line}:{r.reason}" for r in self.rejected]
        parts += [u.model_dump_json(exclude_unset=True) for u in self.users]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "to_create": len(self.create), "to_update": len(self.update),
                "rejected": len(self.rejected)}


async def preview_roster(school: School, data: bytes | str) -> RosterPreview:
    """The preview of roster file `data` (bytes as uploaded, or the text stored) for `school`.

    Raises RosterError when the file is no roster at all (empty, binary, no header we know).
    """
    roster = await asyncio.to_thread(open_roster, data)
    existing = {
        ext: (Role(role), name)
        for ext, role, name in await Membership.filter(school_id=school.id).values_list(
            "external_id", "role", "user__name")
    }
    return await asyncio.to_thread(_judge, school, roster, existing)


def _judge(school: School, roster: RosterFile, existing: dict[str, tuple[Role, str]]) -> RosterPreview:
    preview = RosterPreview(format=roster.format, text=roster.text, left_out=roster.left_out)
    problems: dict[int, str] = {}
    lines_of: dict[str, list[int]] = {}
    for line, user in roster.rows:
        if isinstance(user, str):
            problems[line] = user
            continue
        lines_of.setdefault(user.external_id, []).append(line)
        try:
            prepare_user(school, line, user)
        except RowError as exc:
            problems[line] = f"{exc.field}: {exc.message}"
    for ext, lines in lines_of.items():
        if len(lines) > 1:
            for line in lines:
                problems.setdefault(line, f"external_id: {ext!r} is on more than one line "
                                          f"({_lines(lines)}); list each person once")
    people = [(line, user) for line, user in roster.rows if isinstance(user, UserIn) and line not in problems]

    def current_role(ext: str) -> Role | None:
        found = existing.get(ext)
        return found[0] if found else None

    # Students first: whether a guardian's students will exist depends on which students are accepted.
    batch_students: set[str] = set()
    for line, user in people:
        if user.role is Role.STUDENT:
            problem = link_problem(user, current_role(user.external_id), lambda ext: False)
            if problem is not None:
                problems[line] = f"{problem[0]}: {problem[1]}"
            else:
                batch_students.add(user.external_id)
    rejected_line_of: dict[str, int] = {}  # students of the file that will not be written
    for line, user in roster.rows:
        if isinstance(user, UserIn) and user.role is Role.STUDENT and line in problems:
            rejected_line_of.setdefault(user.external_id, line)

    def is_student(ext: str) -> bool:
        return ext in batch_students or current_role(ext) is Role.STUDENT

    for line, user in people:
        if user.role is Role.STUDENT:
            continue
        problem = link_problem(user, current_role(user.external_id), is_student)
        if problem is not None:
            reason = f"{problem[0]}: {problem[1]}"
            missing = next((ext for ext in user.guardian_of or [] if not is_student(ext)), None)
            if problem[0] == "guardian_of" and missing in rejected_line_of:
                reason += f" (its line {rejected_line_of[missing]} is rejected)"
            problems[line] = reason

    for line, user in roster.rows:
        if line in problems:
            preview.rejected.append(RejectedRow(line, problems[line]))
            continue
        assert isinstance(user, UserIn)
        found = existing.get(user.external_id)
        if found is not None and "login_enabled" in user.model_fields_set:
            # Students' logins are the admins' decision, made in the directory (audited there): an
            # upload sets them for new people only and never switches an existing student.
            user = UserIn.model_validate(user.model_dump(exclude_unset=True, exclude={"login_enabled"}))
        preview.users.append(user)
        if found is None:
            preview.create.append(PreviewPerson(line, user.external_id, user.name, user.role))
        else:
            old_name = found[1] if found[1] != user.name else None
            preview.update.append(PreviewPerson(line, user.external_id, user.name, user.role, old_name))
    return preview


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:5])
    return f"lines {shown}, …" if len(lines) > 5 else f"lines {shown}"
