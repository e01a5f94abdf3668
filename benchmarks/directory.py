"""The School Directory at 50,000 people: the People page, and a 50,000-row roster preview.

    .venv/bin/python benchmarks/directory.py [--database sqlite|postgres] [--people 50000] [--requests 100]

Seeds a school of 50,000 (staff, guardians, students in 200 sections, two guardians per student,
contact points, some joined, some invited), starts `gateway serve --no-worker` and a bare aiohttp
app as child processes, and, signed in as a staff admin, measures:
  1. the People page, filtered and paginated (a rotation of name search, role, section, joined and
     page filters): median and p95 of sequential GETs (target: median under 100 ms), beside the
     bare app answering the same bytes from memory;
  2. a 50,000-row OneRoster users.csv uploaded to /directory/roster: the time until the preview is
     stored and the redirect to it answered (target: under 10 seconds), beside the bare app
     receiving the same upload and reading every row with the csv module.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp
from tortoise import connections

from benchmarks._http import ms, time_gets
from benchmarks._pg import drop_pg, fresh_pg
from benchmarks.inbound import free_port, wait_up
from gateway.db import migrate_database, open_database
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
from gateway.web.sessions import start_session

SECTIONS = 200
BARE = '''
import csv, io, sys
from aiohttp import web
page = open(sys.argv[2], "rb").read()
async def people(request):
    return web.Response(body=page, content_type="text/html")
async def roster(request):
    reader = await request.multipart()
    data = b""
    async for part in reader:
        data = await part.read()
    rows = sum(1 for _ in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    raise web.HTTPSeeOther(f"/roster/{rows}")
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_get("/people", people); app.router.add_post("/roster", roster)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''
FIRST = ["Ana", "John", "Li", "María", "Nguyen", "Fatima", "Tom", "Lucía", "Wei", "Omar", "Sofia", "Liam"]
LAST = ["García", "Smith", "Wei", "Tran", "Haddad", "Rivera", "Chen", "Okafor", "Müller", "Rossi"]


def name(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]} {i}"


async def seed(url: str, n: int) -> tuple[int, str]:
    """(the school id, an admin's session cookie)."""
    await migrate_database(url)
    async with open_database(url):
        school = await School.create(slug="bench", name="Bench School", sms_numbers=["+14155550100"])
        staff, students = max(2, n * 3 // 100), n * 30 // 100
        guardians = n - staff - students
        roles = [Role.STAFF] * staff + [Role.GUARDIAN] * guardians + [Role.STUDENT] * students
        long_ago = datetime.now(timezone.utc) - timedelta(days=60)
        await User.bulk_create([User(name=name(i), joined_at=long_ago if i % 3 == 0 else None,
                                     login_enabled=role is not Role.STUDENT or i % 2 == 0,
                                     channel_preference=ChannelPreference.EMAIL)
                                for i, role in enumerate(roles)], batch_size=2000)
        ids = await User.all().order_by("id").values_list("id", flat=True)
        await Membership.bulk_create([Membership(school=school, user_id=uid, external_id=f"p{i}", role=role,
                                                 is_admin=i == 0) for i, (uid, role) in enumerate(zip(ids, roles))],
                                     batch_size=2000)
        await Section.bulk_create([Section(school=school, name=f"Class {s:03d}") for s in range(SECTIONS)])
        section_ids = await Section.filter(school=school).order_by("id").values_list("id", flat=True)
        staff_ids, guardian_ids = ids[:staff], ids[staff:staff + guardians]
        student_ids = ids[staff + guardians:]
        members = [SectionMember(section_id=section_ids[k % SECTIONS], user_id=uid) for k, uid in enumerate(student_ids)]
        members += [SectionMember(section_id=section_ids[k % SECTIONS], user_id=uid) for k, uid in enumerate(staff_ids)]
        await SectionMember.bulk_create(members, batch_size=2000)
        links = [Relationship(school=school, guardian_id=guardian_ids[(2 * k + j) % len(guardian_ids)], student_id=uid)
                 for k, uid in enumerate(student_ids) for j in (0, 1)]
        await Relationship.bulk_create(links, batch_size=2000)
        points = [ContactPoint(user_id=uid, kind=ContactKind.EMAIL, address=f"p{k}@family.example",
                               bouncing_at=long_ago if k % 50 == 0 else None) for k, uid in enumerate(ids)]
        points += [ContactPoint(user_id=uid, kind=ContactKind.PHONE, address=f"+1202{k:07d}")
                   for k, uid in enumerate(guardian_ids)]
        await ContactPoint.bulk_create(points, batch_size=2000)
        if url.startswith("postgres"):
            # Fresh statistics, as autovacuum would have after a bulk load (the planner otherwise
            # thinks every table is empty and picks nested loops over 50,000 rows).
            await connections.get("default").execute_script("ANALYZE")
        _session, cookie = await start_session(ids[0], "password")
        return school.id, cookie


def roster_csv(n: int) -> bytes:
    """A OneRoster 1.1 users.csv: the first half updates seeded people, the rest are new."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
                     "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
                     "agentSourcedIds", "grades", "password"])
    for i in range(n):
        key = f"p{i}" if i < n // 2 else f"new{i}"
        writer.writerow([key, "active", "2026-08-01", "true", "org1", "parent", "", "", FIRST[i % 12], f"Family {i}",
                         "", "", f"{key}@family.example", "", "", "", "", ""])
    return out.getvalue().encode()




async def time_upload(session: aiohttp.ClientSession, url: str, data: bytes, token: str | None) -> float:
    form = aiohttp.FormData()
    if token:
        form.add_field("csrf_token", token)
    form.add_field("file", data, filename="users.csv", content_type="text/csv")
    started = time.perf_counter()
    async with session.post(url, data=form, allow_redirects=False) as response:
        await response.read()
        if response.status != 303:
            raise RuntimeError(f"{url}: {response.status} {(await response.text())[:300]}")
    return time.perf_counter() - started




def report_pages(n: int, requests: int, database: str, gw_pages: list[float], bare_pages: list[float]) -> None:
    print(f"People page, {n:,} people, filtered and paginated, {requests} sequential GETs, {database}:")
    print(f"  gateway: median {ms(gw_pages):.1f} ms  p95 {ms(gw_pages, .95):.1f} ms  (target: median < 100 ms)")
    print(f"  bare aiohttp, same bytes from memory: median {ms(bare_pages):.2f} ms  p95 {ms(bare_pages, .95):.2f} ms")
    print(f"  ratio gateway/bare (median): {statistics.median(gw_pages) / statistics.median(bare_pages):.0f}x")


async def main(database: str, n: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/directory.sqlite3" if database == "sqlite" else await fresh_pg("gw_bench_dir")
        started = time.perf_counter()
        _school_id, cookie = await seed(url, n)
        print(f"seeded {n:,} people in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        gw_port, bare_port = free_port(), free_port()
        gw = f"http://127.0.0.1:{gw_port}"
        env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_PORT": str(gw_port), "GATEWAY_PUBLIC_URL": gw}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--no-worker", "--no-migrate"], env=env,
                                   stderr=subprocess.DEVNULL)
        bare = None
        sections = [f"section={s}" for s in range(3, 3 + SECTIONS, 37)]
        filters = ["q=garc", "role=guardian&joined=no&page=20", "role=student&login=enabled&page=7", "page=400",
                   "q=tran+1&role=guardian", *sections, "joined=yes&page=3"]
        urls = [f"{gw}/directory/people?{filters[i % len(filters)]}" for i in range(requests)]
        try:
            await wait_up(gw_port)
            jar = aiohttp.CookieJar(unsafe=True)
            jar.update_cookies({"gw_session": cookie}, aiohttp.client.URL(gw))
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
                sample = await (await session.get(f"{gw}/directory/people?role=guardian&joined=no&page=20")).read()
                if sample.count(b'<tr id="u') != 50:
                    raise RuntimeError("the People page did not list 50 people")
                Path(tmp, "people.html").write_bytes(sample)
                bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port), str(Path(tmp, "people.html"))])
                await wait_up(bare_port)
                bare_url = f"http://127.0.0.1:{bare_port}"
                await time_gets(session, urls[:10])  # warm-up
                gw_pages = await time_gets(session, urls)
                bare_pages = await time_gets(session, [f"{bare_url}/people"] * requests)
                report_pages(n, requests, database, gw_pages, bare_pages)
                roster = roster_csv(n)
                page = (await (await session.get(f"{gw}/directory/roster")).text())
                token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page).group(1)  # type: ignore[union-attr]
                bare_upload = await time_upload(session, f"{bare_url}/roster", roster, None)
                gw_upload = await time_upload(session, f"{gw}/directory/roster", roster, token)
        finally:
            for proc in (bare, gateway):
                if proc is not None:
                    proc.kill()
                    proc.wait(10)
            if database == "postgres":
                await drop_pg(url)
    print(f"roster preview, {n:,}-row OneRoster users.csv ({len(roster) / 1e6:.1f} MB):")
    print(f"  gateway upload → preview stored: {gw_upload:.2f} s  (target: < 10 s)")
    print(f"  bare aiohttp upload + csv read: {bare_upload:.2f} s  ratio {gw_upload / bare_upload:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.people, args.requests))
