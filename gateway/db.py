"""Database configuration, connection lifetime and migrations (tortoise-orm 1.x).

One code path for SQLite (embedded default) and PostgreSQL (asyncpg). Schema changes go through the
migrations in gateway/migrations (tortoise's built-in migration framework); `gateway migrate` applies
them. Tortoise 1.x keeps its state in a contextvar: always close the context you opened
(see STACK.md), which is what `open_database` does.
"""
from __future__ import annotations

import contextlib
import enum
import os
from datetime import datetime
from typing import Any, AsyncIterator, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.context import TortoiseContext
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

MODEL_MODULES = [
    "gateway.directory.models",
    "gateway.threads.models",
    "gateway.channels.models",
    "gateway.invites.tokens",
    "gateway.web.sessions",
    "gateway.invites.models",
]
MIGRATIONS_MODULE = "gateway.migrations"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0] in ("postgres", "postgresql", "asyncpg")


def connection_config(url: str) -> dict[str, Any]:
    """Turn a database URL into tortoise's connection dict, with settings that matter for us.

    SQLite gets a busy timeout so that a web process and a worker sharing one file wait for each
    other instead of failing with "database is locked".
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if is_postgres(url):
        return {
            "engine": "tortoise.backends.asyncpg",
            "credentials": {
                "host": parts.hostname or "127.0.0.1",
                "port": parts.port or 5432,
                "user": unquote(parts.username or "postgres"),
                "password": unquote(parts.password or ""),
                "database": parts.path.lstrip("/") or "postgres",
                "minsize": int(query.get("minsize", 1)),
                "maxsize": int(query.get("maxsize", 10)),
            },
        }
    path = url.split("://", 1)[1].split("?", 1)[0]
    return {
        "engine": "tortoise.backends.sqlite",
        "credentials": {
            "file_path": path or ":memory:",
            "busy_timeout": int(query.get("busy_timeout", 10000)),
            "journal_mode": "WAL",
            "foreign_keys": "ON",
            "synchronous": "NORMAL",
        },
    }


def tortoise_config(url: str) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(url)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` CLI (makemigrations), referenced from pyproject.toml.
TORTOISE_ORM = tortoise_config(os.environ.get("GATEWAY_DATABASE_URL", "sqlite://gateway.sqlite3"))


async def migrate_database(url: str) -> None:
    """Apply every pending migration, then leave no connection open."""
    from tortoise.migrations.api import migrate

    config = tortoise_config(url)
    await migrate(config=config)
    await Tortoise.close_connections()


@contextlib.asynccontextmanager
async def open_database(url: str, *, create_schema: bool = False) -> AsyncIterator[TortoiseContext]:
    """Initialise tortoise for `url` in the current context and close exactly that context at exit.

    `create_schema` builds the tables straight from the models (tests and throwaway databases);
    real databases are brought up to date by `migrate_database`.
    """
    ctx = await Tortoise.init(config=tortoise_config(url))
    try:
        if not is_postgres(url):
            await _unicode_lower_on_sqlite()
        if create_schema:
            await Tortoise.generate_schemas(safe=True)
        yield ctx
    finally:
        await ctx.close_connections()


async def _unicode_lower_on_sqlite() -> None:
    """SQLite's LOWER() folds A-Z only, so a name search for "élodie" would miss "Élodie" (PostgreSQL
    lowers every letter). An application-defined function may replace a built-in one (SQLite docs,
    "Application-Defined SQL Functions"); tortoise keeps one connection per SQLite database."""
    client = connections.get("default")
    await client.create_connection(with_db=True)  # connects once; later calls keep that connection
    raw = getattr(client, "_connection", None)
    if raw is not None:
        await raw.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def dialect() -> str:
    """'postgres' or 'sqlite' for the default connection of the current context."""
    return "postgres" if connections.get("default").capabilities.dialect == "postgres" else "sqlite"


def placeholders(postgres: bool, query: str) -> str:
    """Raw SQL is written once with "?" placeholders; asyncpg wants $1, $2, ..."""
    if not postgres:
        return query
    parts = query.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, start=1))


def like_pattern(text: str) -> str:
    """A `LIKE ? ESCAPE '\\'` pattern finding `text` anywhere, its own % and _ taken literally (lower-cased:
    compare with LOWER(column))."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def as_datetime(value: Any) -> datetime | None:
    """A datetime from raw SQL: asyncpg gives datetimes, SQLite the str(datetime) tortoise stored."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def db_value(value: object, postgres: bool | None = None) -> object:
    """A value as the driver takes it for raw SQL: enums by value, and on SQLite datetimes as the text
    tortoise writes (str(dt)), made once here rather than by the sqlite3 adapter for every row."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime) and not (dialect() == "postgres" if postgres is None else postgres):
        return str(value)
    return value


async def insert_rows(conn: BaseDBAsyncClient, model: type[Model], columns: Sequence[str], rows: list[tuple],
                      now: datetime) -> None:
    """INSERT `rows` (database values for `columns`); every other column gets its field's default
    (auto_now fields: `now`), so a field added to the model with a default needs no change here.

    bulk_create's cost at 100,000 rows is mostly building a model instance per row, so rows go in as
    tuples: COPY on PostgreSQL (an order of magnitude faster than executemany), executemany on SQLite.
    """
    if not rows:
        return
    meta = model._meta
    postgres = conn.capabilities.dialect == "postgres"
    names = [meta.fields_db_projection[c] for c in columns]
    defaults: list[object] = []
    for field_name, column in meta.fields_db_projection.items():
        if field_name == meta.pk_attr or field_name in columns:
            continue
        names.append(column)
        defaults.append(db_value(_field_default(meta.fields_map[field_name], now), postgres))
    records = [(*row, *defaults) for row in rows]
    if postgres:
        try:
            async with conn.acquire_connection() as raw:
                await raw.copy_records_to_table(meta.db_table, records=records, columns=names)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(exc) from exc  # what tortoise raises for it elsewhere (callers retry on it)
        return
    quoted = ", ".join(f'"{n}"' for n in names)
    sql = f'INSERT INTO "{meta.db_table}" ({quoted}) VALUES ({", ".join("?" * len(names))})'
    for start in range(0, len(records), 1000):  # one prepared statement: the fastest way into SQLite
        await conn.execute_many(sql, records[start:start + 1000])


def _field_default(field: Any, now: datetime) -> object:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    if field.default is not None:
        return field.default() if callable(field.default) else field.default
    if field.null:
        return None
    raise TypeError(f"{field.model_field_name} has no default; give it a value")
