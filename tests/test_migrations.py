"""`gateway migrate` builds the same schema as the models, on SQLite and PostgreSQL, and is re-runnable."""
from __future__ import annotations

import uuid
from pathlib import Path

from tortoise import connections
from tortoise.backends.base.executor import EXECUTOR_CACHE

from gateway.db import migrate_database, open_database
from gateway.directory.models import School
from tests.conftest import _pg_execute, _pg_url, require

TABLES_SQL = {
    "sqlite": "SELECT name AS t FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'",
    "postgres": "SELECT table_name AS t FROM information_schema.tables WHERE table_schema='public'",
}


async def columns(dialect: str) -> dict[str, set[str]]:
    conn = connections.get("default")
    tables = [r["t"] for r in await conn.execute_query_dict(TABLES_SQL[dialect])]
    out = {}
    for table in tables:
        if table.startswith("tortoise_migrations") or table == "tortoise":
            continue
        if dialect == "sqlite":
            rows = await conn.execute_query_dict(f'PRAGMA table_info("{table}")')
            out[table] = {r["name"] for r in rows}
        else:
            rows = await conn.execute_query_dict(
                "SELECT column_name FROM information_schema.columns WHERE table_name=$1", [table])
            out[table] = {r["column_name"] for r in rows}
    return out


async def schema_two_ways(migrated_url: str, generated_url: str, dialect: str):
    EXECUTOR_CACHE.clear()
    await migrate_database(migrated_url)
    await migrate_database(migrated_url)  # a second run has nothing to do and must not fail
    async with open_database(migrated_url):
        migrated = await columns(dialect)
        await School.create(slug="after-migrate", name="Works")
        assert await School.filter(slug="after-migrate").exists()
    async with open_database(generated_url, create_schema=True):
        generated = await columns(dialect)
    return migrated, generated


def without_bookkeeping(schema: dict[str, set[str]]) -> dict[str, set[str]]:
    return {t: c for t, c in schema.items() if "migration" not in t}


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path):
    migrated, generated = await schema_two_ways(f"sqlite:///{tmp_path}/m.sqlite3", f"sqlite:///{tmp_path}/g.sqlite3", "sqlite")
    assert without_bookkeeping(migrated) == without_bookkeeping(generated)


async def test_migrations_match_the_models_on_postgres(pg_template):
    require(pg_template)
    names = [f"gw_mig_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        await _pg_execute(f"CREATE DATABASE {name}")
    try:
        migrated, generated = await schema_two_ways(_pg_url(names[0]), _pg_url(names[1]), "postgres")
        assert without_bookkeeping(migrated) == without_bookkeeping(generated)
    finally:
        for name in names:
            await _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
