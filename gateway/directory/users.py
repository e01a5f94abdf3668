"""Bulk upsert of a school's people, keyed by the school's own external ids.

The whole batch is validated before anything is written, and written in one transaction: a bad row
rejects the request with its index and field, and nothing changes (DESIGN section 8).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Sequence, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from gateway.db import db_value, insert_rows, placeholders
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
from gateway.directory.user_input import PreparedUser, RowError, UserIn, link_problem, prepare_batch


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int


UPSERT_ATTEMPTS = 3


async def upsert_users(school: School, users: Sequence[UserIn]) -> UpsertResult:
    """Create or update `users` in `school`; all or nothing. Raises RowError.

    Two batches naming the same new people at once (a re-sent request, two roster imports) both see
    them missing, and the second to commit breaks a unique constraint. Its transaction rolls back
    entirely, so it is simply run again: the people now exist and are updated.
    """
    rows = prepare_batch(school, users)
    for attempt in range(1, UPSERT_ATTEMPTS + 1):
        try:
            return await _upsert(school, rows)
        except IntegrityError:
            if attempt == UPSERT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _upsert(school: School, rows: list[PreparedUser]) -> UpsertResult:
    """The whole batch in a few chunked queries per table, whatever its size.

    Everything the batch touches is read first and the checks made on it; then each table is
    written in bulk, its changes worked out in Python from what was read, with the same rules the
    row-by-row version applied person by person. People never share rows: every membership is
    created here with a user of its own, so no two rows of a batch touch the same user.
    """
    batch_roles = {r.data.external_id: r.data.role for r in rows}
    referenced = sorted({ext for r in rows for ext in (r.data.guardian_of or [])})

    async with in_transaction() as conn:
        await _plan_each_query(conn)
        stored = await _read_people(school, list(batch_roles))
        students = await _read_students(school, referenced)
        _check_links(rows, stored, students, batch_roles)

        now = datetime.now(timezone.utc)
        new = [r for r in rows if r.data.external_id not in stored]
        user_ids = {ext: person.user_id for ext, person in stored.items()}
        user_ids.update(await _create_people(conn, school, new, now))
        await _update_people(conn, school, [(r, stored[r.data.external_id]) for r in rows
                                            if r.data.external_id in stored])

        # Only people who existed before this batch can have contacts, wards or sections stored.
        known = {person.user_id for person in stored.values()}
        await _write_contacts(conn, rows, user_ids, known, now)
        students.update({ext: uid for ext, uid in user_ids.items() if batch_roles[ext] is Role.STUDENT})
        await _write_wards(conn, school, rows, user_ids, students, known, now)
        await _write_sections(conn, school, rows, user_ids, known, now)
    return UpsertResult(created=len(new), updated=len(rows) - len(new))


def _user_fields(r: PreparedUser, school: School, *, new: bool) -> dict[str, object]:
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


def _default_preference(r: PreparedUser) -> ChannelPreference:
    if r.email:
        return ChannelPreference.EMAIL
    return ChannelPreference.SMS if r.phone else ChannelPreference.EMAIL


# Ids per IN (...) list. SQLite refuses a statement with more than 32,766 bound variables (999 before
# 3.32) and asyncpg more than 32,767 arguments: a 50,000-person roster cannot go in one list.
CHUNK = 900
WRITE_CHUNK = 5000  # rows per executemany: bounds the parameter lists built at once
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def _plan_each_query(conn: BaseDBAsyncClient) -> None:
    """PostgreSQL: plan every query of this transaction for its own values.

    asyncpg prepares each statement once per (pooled) connection, and after five runs PostgreSQL
    may keep a generic plan. One made while the tables were small (the chunked reads of a first
    import run on empty tables) then scans whole tables for every chunk of the next import:
    40 s instead of 0.5 s to read 40,000 people, measured.
    """
    if _postgres(conn):
        await conn.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")


@dataclass
class _Stored:
    """A person of the batch the school has already, as stored."""

    membership_id: int
    user_id: int
    role: Role
    is_admin: bool
    user: dict[str, object]  # the fields _user_fields writes, as stored


async def _read_people(school: School, ext_ids: list[str]) -> dict[str, _Stored]:
    stored: dict[str, _Stored] = {}
    for chunk in _chunks(ext_ids):
        for m in await Membership.filter(school=school, external_id__in=chunk).values(
            "id", "external_id", "role", "is_admin", "user_id",
            "user__name", "user__locale", "user__channel_preference", "user__login_enabled",
        ):
            user = {"name": m["user__name"], "locale": m["user__locale"],
                    "channel_preference": ChannelPreference(m["user__channel_preference"]),
                    "login_enabled": bool(m["user__login_enabled"])}
            stored[m["external_id"]] = _Stored(m["id"], m["user_id"], Role(m["role"]), bool(m["is_admin"]), user)
    return stored


async def _read_students(school: School, ext_ids: list[str]) -> dict[str, int]:
    """User ids of the school's students among `ext_ids` (the ones guardian_of names), by external id."""
    found: dict[str, int] = {}
    for chunk in _chunks(ext_ids):
        found.update(await Membership.filter(school=school, external_id__in=chunk, role=Role.STUDENT)
                     .values_list("external_id", "user_id"))
    return found


def _check_links(rows: list[PreparedUser], stored: dict[str, _Stored], students: dict[str, int],
                 batch_roles: dict[str, Role]) -> None:
    """link_problem for every row, in order, before anything is written: the first bad row is reported."""
    def is_student(ext: str) -> bool:
        return ext in students or batch_roles.get(ext) is Role.STUDENT

    for r in rows:
        old = stored.get(r.data.external_id)
        problem = link_problem(r.data, old.role if old is not None else None, is_student)
        if problem is not None:
            raise RowError(r.index, *problem)


USER_COLUMNS = ("name", "locale", "channel_preference", "login_enabled")


async def _create_people(conn: BaseDBAsyncClient, school: School, rows: list[PreparedUser], now: datetime) -> dict[str, int]:
    """Insert a user and a membership for each new person; returns their user ids by external id."""
    if not rows:
        return {}
    postgres = _postgres(conn)
    values = []
    for r in rows:
        fields = _user_fields(r, school, new=True)
        values.append(tuple(db_value(fields[c], postgres) for c in USER_COLUMNS))
    ids = await _insert_users(conn, values, now)
    user_ids = {r.data.external_id: uid for r, uid in zip(rows, ids)}
    # In external-id order: two batches creating the same people meet on the unique index in the
    # same order, so the later one waits, fails once the first commits and is run again (no deadlock).
    memberships = sorted((r.data.external_id, school.id, user_ids[r.data.external_id], r.data.role.value,
                          bool(r.data.is_admin)) for r in rows)
    await insert_rows(conn, Membership, ("external_id", "school_id", "user_id", "role", "is_admin"), memberships, now)
    return user_ids


async def _insert_users(conn: BaseDBAsyncClient, values: list[tuple], now: datetime) -> list[int]:
    """Insert users (values for USER_COLUMNS) and return their ids, in the same order.

    A bulk insert returns no ids, and a user has no key of its own to read them back by.
    PostgreSQL: the ids are drawn from the table's sequence first (safe with concurrent writers)
    and inserted explicitly. SQLite: one writer at a time, and this transaction holds the write
    lock from its first insert to its commit, so the new rows take the next ids one after another,
    in order: they are the len(values) highest.
    """
    if _postgres(conn):
        drawn = await conn.execute_query_dict(
            "SELECT nextval(pg_get_serial_sequence('\"user\"', 'id')) AS id FROM generate_series(1, $1)",
            [len(values)])
        ids = sorted(row["id"] for row in drawn)
        await insert_rows(conn, User, ("id", *USER_COLUMNS), [(uid, *v) for uid, v in zip(ids, values)], now)
        return ids
    await insert_rows(conn, User, USER_COLUMNS, values, now)
    newest = await conn.execute_query_dict('SELECT "id" FROM "user" ORDER BY "id" DESC LIMIT ?', [len(values)])
    return [row["id"] for row in reversed(newest)]


async def _update_people(conn: BaseDBAsyncClient, school: School, people: list[tuple[PreparedUser, _Stored]]) -> None:
    """Write the given fields of people the school has already, and is_admin when it is given.

    Only values that differ from the stored ones are written (an update never touched updated_at,
    so the outcome is the same), grouped by the columns they change: one executemany per group.
    """
    postgres = _postgres(conn)
    by_columns: dict[tuple[str, ...], list[list[object]]] = defaultdict(list)
    admins: dict[bool, list[int]] = defaultdict(list)
    for r, person in people:
        changes = {k: v for k, v in _user_fields(r, school, new=False).items() if v != person.user[k]}
        if changes:
            by_columns[tuple(changes)].append([*(db_value(v, postgres) for v in changes.values()), person.user_id])
        if r.data.is_admin is not None and person.is_admin != r.data.is_admin:
            admins[r.data.is_admin].append(person.membership_id)
    for columns, params in by_columns.items():
        sets = ", ".join(f'"{User._meta.fields_db_projection[c]}"=?' for c in columns)
        sql = placeholders(postgres, f'UPDATE "user" SET {sets} WHERE "id"=?')
        params.sort(key=lambda p: p[-1])  # by id: concurrent batches lock rows in one order
        for chunk in _chunks(params, WRITE_CHUNK):
            await conn.execute_many(sql, list(chunk))
    for flag, ids in admins.items():
        for chunk in _chunks(sorted(ids)):
            await Membership.filter(id__in=chunk).update(is_admin=flag)


async def _write_contacts(conn: BaseDBAsyncClient, rows: list[PreparedUser], user_ids: dict[str, int], known: set[int],
                          now: datetime) -> None:
    """Each e-mail or phone given (null included) becomes the person's one contact point of its kind."""
    given = [(user_ids[r.data.external_id], kind, address) for r in rows for kind, address in _given_contacts(r)]
    stored = await _read_contacts(sorted({uid for uid, _, _ in given if uid in known}))
    stale: list[int] = []
    fresh: list[tuple[int, str, str]] = []
    for uid, kind, address in given:
        gone, add = _contact_change(stored.get((uid, kind), []), address)
        stale.extend(gone)
        if add:
            fresh.append((uid, kind.value, address))  # type: ignore[arg-type]  # add implies an address
    await _delete(ContactPoint, stale)
    await insert_rows(conn, ContactPoint, ("user_id", "kind", "address"), sorted(fresh), now)


def _given_contacts(r: PreparedUser) -> list[tuple[ContactKind, str | None]]:
    """(kind, normalised address or None) for the contact fields the row gives; a field not given is left alone."""
    given = r.data.model_fields_set
    return [(kind, address) for kind, field, address in ((ContactKind.EMAIL, "email", r.email),
                                                         (ContactKind.PHONE, "phone", r.phone)) if field in given]


def _contact_change(current: list[tuple[int, str]], address: str | None) -> tuple[list[int], bool]:
    """(contact point ids to delete, whether to add `address`) to make `address` the one of its kind.

    `current` is the person's (id, address) of that kind. An address that stays keeps its row, and
    with it its opt-out and bounce state (re-importing a roster must not undo a STOP); every other
    address of the kind goes, and None removes them all.
    """
    if len(current) == 1 and current[0][1] == address:
        return [], False
    stale = [cid for cid, stored in current if stored != address]
    return stale, bool(address) and all(stored != address for _, stored in current)


async def _read_contacts(user_ids: list[int]) -> dict[tuple[int, ContactKind], list[tuple[int, str]]]:
    found: dict[tuple[int, ContactKind], list[tuple[int, str]]] = defaultdict(list)
    for chunk in _chunks(user_ids):
        for cid, uid, kind, address in await ContactPoint.filter(user_id__in=chunk).values_list(
                "id", "user_id", "kind", "address"):
            found[(uid, ContactKind(kind))].append((cid, address))
    return found


async def _write_wards(conn: BaseDBAsyncClient, school: School, rows: list[PreparedUser], user_ids: dict[str, int],
                       students: dict[str, int], known: set[int], now: datetime) -> None:
    """A guardian_of given replaces the guardian's wards in this school (an empty list removes them)."""
    wanted = {user_ids[r.data.external_id]: {students[ext] for ext in r.data.guardian_of}
              for r in rows if r.data.guardian_of is not None}
    current: dict[int, dict[int, int]] = defaultdict(dict)  # guardian → student → relationship id
    for chunk in _chunks(sorted(g for g in wanted if g in known)):
        for rid, guardian, student in await Relationship.filter(school=school, guardian_id__in=chunk).values_list(
                "id", "guardian_id", "student_id"):
            current[guardian][student] = rid
    gone = [rid for guardian, links in current.items() for student, rid in links.items()
            if student not in wanted[guardian]]
    missing = sorted((guardian, student, school.id) for guardian, students_ in wanted.items()
                     for student in students_ - current.get(guardian, {}).keys())
    await _delete(Relationship, gone)
    await insert_rows(conn, Relationship, ("guardian_id", "student_id", "school_id"), missing, now)


async def _write_sections(conn: BaseDBAsyncClient, school: School, rows: list[PreparedUser], user_ids: dict[str, int],
                          known: set[int], now: datetime) -> None:
    """`sections` given replaces the person's sections in this school; a section is created by its name."""
    names = {user_ids[r.data.external_id]: set(r.data.sections) for r in rows if r.data.sections is not None}
    if not names:
        return
    section_ids = await _section_ids(conn, school, sorted(set().union(*names.values())), now)
    wanted = {uid: {section_ids[n] for n in wanted_names} for uid, wanted_names in names.items()}
    current = await _read_section_members(school, sorted(uid for uid in wanted if uid in known))
    gone = [mid for uid, links in current.items() for sid, mid in links.items() if sid not in wanted[uid]]
    missing = sorted((sid, uid) for uid, sids in wanted.items() for sid in sids - current.get(uid, {}).keys())
    await _delete(SectionMember, gone)
    await insert_rows(conn, SectionMember, ("section_id", "user_id"), missing, now)


async def _read_section_members(school: School, user_ids: list[int]) -> dict[int, dict[int, int]]:
    """user → section → section_member id, for `user_ids` in this school.

    No index of section_member starts with user_id, so each IN (...) query scans the table: for more
    people than one chunk, the school's section members are read once and those of the batch kept.
    """
    current: dict[int, dict[int, int]] = defaultdict(dict)
    if not user_ids:
        return current
    ours = SectionMember.filter(section__school=school)
    if len(user_ids) <= CHUNK:
        found = await ours.filter(user_id__in=user_ids).values_list("id", "user_id", "section_id")
    else:
        wanted = set(user_ids)
        found = [m for m in await ours.values_list("id", "user_id", "section_id") if m[1] in wanted]
    for mid, uid, sid in found:
        current[uid][sid] = mid
    return current


async def _section_ids(conn: BaseDBAsyncClient, school: School, names: list[str], now: datetime) -> dict[str, int]:
    """The id of each named section of the school, creating the missing ones (read back: bulk inserts return no ids)."""
    found = await _read_sections(school, names)
    missing = [n for n in names if n not in found]
    if missing:
        await insert_rows(conn, Section, ("school_id", "name"), [(school.id, n) for n in missing], now)
        found.update(await _read_sections(school, missing))
    return found


async def _read_sections(school: School, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(names):
        found.update(await Section.filter(school=school, name__in=chunk).values_list("name", "id"))
    return found


async def _delete(model: type[Model], ids: list[int]) -> None:
    for chunk in _chunks(sorted(ids)):
        await model.filter(id__in=chunk).delete()


def _postgres(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"
