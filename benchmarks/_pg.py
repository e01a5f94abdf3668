"""A throwaway PostgreSQL database for a benchmark run (the server at 127.0.0.1:5432, trust auth)."""
from __future__ import annotations

import os

import asyncpg

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


async def fresh_pg(prefix: str) -> str:
    name = f"{prefix}_{os.getpid()}"
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return f"postgres://postgres@127.0.0.1:5432/{name}"


async def drop_pg(url: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await conn.close()
