"""The `gateway` console script, run for real: stdout carries results, stderr one line on misuse, exit 2."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tortoise.backends.base.executor import EXECUTOR_CACHE

from gateway.db import open_database
from gateway.directory.models import (
    ApiKey,
    ContactPoint,
    Membership,
    Relationship,
    School,
)
from gateway.directory.schools import authenticate_api_key

GATEWAY = Path(sys.executable).with_name("gateway")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OUR_PREFIXES = ("GATEWAY_", "TWILIO_", "SMTP_", "IMAP_")


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/x.sqlite3"


def run(database: str, *args: str, module: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(OUR_PREFIXES)}  # CI stays as inherited
    clean["GATEWAY_DATABASE_URL"] = database
    clean.update(env)
    command = [sys.executable, "-m", "gateway", *args] if module else [str(GATEWAY), *args]
    return subprocess.run(command, env=clean, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    assert lines[0].startswith("gateway: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


async def open_db(database: str):
    EXECUTOR_CACHE.clear()  # SQL is cached per connection name; an earlier test may have used PostgreSQL
    return open_database(database)


# --- create-api-key ----------------------------------------------------------------------------------


async def test_create_api_key_prints_only_a_working_key(database):
    result = run(database, "create-api-key", "lincoln", "--name", "sis")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    key = result.stdout.strip()
    assert key.startswith("gk_") and " " not in key
    assert result.stderr == ""

    second = run(database, "create-api-key", "lincoln")
    assert second.returncode == 0
    other_key = second.stdout.strip()
    assert other_key != key

    async with await open_db(database):
        found = await authenticate_api_key(key)
        assert found is not None and found.school.slug == "lincoln" and found.name == "sis"
        assert (await authenticate_api_key(other_key)).name == "default"
        assert await School.all().count() == 1
        assert await ApiKey.all().count() == 2


def test_create_api_key_with_a_bad_slug(database, tmp_path):
    assert_usage_error(run(database, "create-api-key", "Not A Slug"), "slug", "'Not A Slug'")
    assert not (tmp_path / "x.sqlite3").exists()  # refused before the database was touched


@pytest.mark.parametrize("name", ["", "   ", "n" * 101, "two\nlines"], ids=["empty", "blank", "long", "newline"])
def test_create_api_key_with_a_bad_name(database, tmp_path, name):
    assert_usage_error(run(database, "create-api-key", "lincoln", "--name", name), "key name")
    assert not (tmp_path / "x.sqlite3").exists()


def test_create_api_key_needs_a_slug(database):
    assert_usage_error(run(database, "create-api-key"), "slug")


# --- import-roster -----------------------------------------------------------------------------------


async def test_import_roster_creates_then_updates(database):
    assert run(database, "create-api-key", "lincoln").returncode == 0
    roster = str(FIXTURES / "oneroster_users.csv")
    result = run(database, "import-roster", roster, "--school", "lincoln")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "created 8, updated 0\n"
    assert result.stderr == ""
    again = run(database, "import-roster", roster, "--school", "lincoln")
    assert again.stdout == "created 0, updated 8\n"

    async with await open_db(database):
        school = await School.get(slug="lincoln")
        assert await Membership.filter(school=school).count() == 8
        teacher = await Membership.get(school=school, external_id="t-100")
        phone = await ContactPoint.get(user_id=teacher.user_id, kind="phone")
        assert phone.address == "+14155552671"
        assert await Relationship.filter(school=school).count() == 3


def test_import_roster_plain_csv(database, tmp_path):
    assert run(database, "create-api-key", "lincoln").returncode == 0
    path = tmp_path / "people.csv"
    path.write_text("external_id,role,name,guardian_of\ns-1,student,Kid,\ng-1,guardian,Parent,s-1\n")
    result = run(database, "import-roster", str(path), "--school", "lincoln")
    assert (result.returncode, result.stdout) == (0, "created 2, updated 0\n")


def test_import_roster_bad_file_names_the_line(database, tmp_path):
    assert run(database, "create-api-key", "lincoln").returncode == 0
    path = tmp_path / "people.csv"
    path.write_text("external_id,role,name\nt-1,staff,A\nt-2,janitor,B\n")
    assert_usage_error(run(database, "import-roster", str(path), "--school", "lincoln"), "people.csv", "line 3", "role")


async def test_import_roster_problem_found_in_the_directory_names_the_file_line(database, tmp_path):
    """A bad phone is found only when the school's region is known; the line must still be right
    although a tobedeleted row comes before it."""
    assert run(database, "create-api-key", "lincoln").returncode == 0
    text = (FIXTURES / "oneroster_users.csv").read_text(encoding="utf-8-sig")
    path = tmp_path / "users.csv"
    path.write_text(text.replace("+1 415 555 0142", "12345"), encoding="utf-8")
    assert_usage_error(run(database, "import-roster", str(path), "--school", "lincoln"), "line 8", "phone")
    async with await open_db(database):
        assert await Membership.all().count() == 0  # all or nothing


def test_import_roster_unknown_school(database):
    line = assert_usage_error(run(database, "import-roster", str(FIXTURES / "oneroster_users.csv"), "--school", "nowhere"),
                              "nowhere")
    assert "create-api-key" in line


def test_import_roster_missing_file(database, tmp_path):
    assert_usage_error(run(database, "import-roster", str(tmp_path / "nope.csv"), "--school", "lincoln"), "nope.csv")


def test_import_roster_needs_the_school(database):
    assert_usage_error(run(database, "import-roster", str(FIXTURES / "oneroster_users.csv")), "--school")


# --- usage and configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["frobnicate"], [], ["migrate", "--bogus"]], ids=["unknown", "none", "bad-option"])
def test_bad_arguments(database, args):
    assert_usage_error(run(database, *args))


@pytest.mark.parametrize("env,variable", [
    ({"GATEWAY_PORT": "abc"}, "GATEWAY_PORT"),
    ({"GATEWAY_DATABASE_URL": "mysql://db/x"}, "GATEWAY_DATABASE_URL"),
    ({"GATEWAY_DATABASE_URL": "sqlite:///no/such/folder/x.sqlite3"}, "GATEWAY_DATABASE_URL"),
    ({"GATEWAY_ENV": "production", "GATEWAY_PUBLIC_URL": "https://gw.example"}, "GATEWAY_SECRET_KEY"),
    ({"GATEWAY_ENV": "production", "GATEWAY_PUBLIC_URL": "https://gw.example", "GATEWAY_SECRET_KEY": "changeme"},
     "GATEWAY_SECRET_KEY"),
])
def test_bad_configuration(database, env, variable):
    assert_usage_error(run(database, "migrate", **env), variable)
    assert_usage_error(run(database, "create-api-key", "lincoln", **env), variable)


def test_unreachable_postgres_is_one_line(database):
    # Port 1 on localhost: refused at once.
    assert_usage_error(run("postgres://postgres@127.0.0.1:1/x", "create-api-key", "lincoln"), "GATEWAY_DATABASE_URL")


def test_python_m_gateway_help(database):
    result = run(database, "--help", module=True)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "worker", "migrate", "demo", "import-roster", "create-api-key", "extract-reply"):
        assert command in result.stdout
    sub = run(database, "import-roster", "--help", module=True)
    assert sub.returncode == 0 and "--school" in sub.stdout


def test_python_m_gateway_errors_like_the_script(database):
    assert_usage_error(run(database, "frobnicate", module=True))


def test_migrate_on_a_fresh_file(database, tmp_path):
    result = run(database, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    with sqlite3.connect(tmp_path / "x.sqlite3") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"school", "user", "membership", "contact_point", "api_key", "audit_log", "section"} <= tables
    assert run(database, "migrate").returncode == 0  # and again: nothing to do
