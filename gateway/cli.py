"""`gateway` (also `python -m gateway`): serve, worker, migrate, demo, import-roster, create-api-key,
extract-reply. Bad arguments or configuration: one line on stderr and exit 2 (DESIGN section 8)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from gateway.settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem the person at the terminal can fix; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        sys.stderr.write(f"gateway: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="School conversation gateway")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="web server and outbox workers in one process")
    serve.add_argument("--no-worker", action="store_true", help="serve the web only (run `gateway worker` elsewhere)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    sub.add_parser("worker", help="outbox workers only")
    sub.add_parser("migrate", help="apply database migrations")
    demo = sub.add_parser("demo", help="seed a demo school and serve it with dev transports")
    demo.add_argument("--no-serve", action="store_true", help="seed and send, then exit")
    roster = sub.add_parser("import-roster", help="import a OneRoster users.csv or a plain CSV")
    roster.add_argument("file", type=Path)
    roster.add_argument("--school", required=True, help="the school's slug")
    key = sub.add_parser("create-api-key", help="create an admin API key (and the school if new); prints the key")
    key.add_argument("slug")
    key.add_argument("--name", default="default")
    extract = sub.add_parser("extract-reply", help="print the visible reply text of an e-mail or plain text")
    extract.add_argument("file", nargs="?", type=Path)
    return parser


# Long-running commands report what they do; one-shot commands keep stderr for their one line.
VERBOSE_COMMANDS = {"serve", "worker", "demo"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.command in VERBOSE_COMMANDS else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "extract-reply":
            return extract_reply(args.file)
        settings = load_settings()
        if args.command == "demo":
            from gateway.demo import run_demo

            return run_demo(settings, serve=not args.no_serve)
        return COMMANDS[args.command](settings, args)
    except (SettingsError, UsageError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a database we cannot open is bad configuration too
        problem = _database_problem(exc)
        if problem is None:
            raise
        return _fail(problem)


def _fail(message: str) -> int:
    one_line = message.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")  # whatever the message holds
    sys.stderr.write(f"gateway: {one_line}\n")
    return EXIT_USAGE


def _database_problem(exc: BaseException) -> str | None:
    """A one-line description when `exc` means the configured database cannot be opened."""
    import socket

    from tortoise.exceptions import (
        ConfigurationError,
        DBConnectionError,
        OperationalError,
    )

    # Not every OSError: `serve` on a port in use is not a database problem.
    reaching = (ConnectionError, socket.gaierror, TimeoutError)
    if isinstance(exc, (DBConnectionError, ConfigurationError, OperationalError, *reaching)) or type(
        exc
    ).__module__.startswith(("sqlite3", "asyncpg")):
        return f"GATEWAY_DATABASE_URL: cannot use the database: {exc}"
    return None


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.db import migrate_database

    asyncio.run(migrate_database(settings.database_url))
    print("migrations applied", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app
    from gateway.db import migrate_database

    if not args.no_migrate:
        asyncio.run(migrate_database(settings.database_url))
    app = create_app(settings, run_worker=not args.no_worker)
    web.run_app(app, host=settings.host, port=settings.port, print=lambda s: print(s, file=sys.stderr))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """The app's stateful parts (database, channels, dispatcher, inbound sweeper, mail reader)
    started exactly as `serve` starts them, with no web listener."""
    from aiohttp import web

    from gateway.app import create_app

    async def work() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(create_app(settings, run_worker=True))
        await runner.setup()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        return 0

    return asyncio.run(work())


def cmd_create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.db import open_database
    from gateway.directory.schools import (
        InvalidKeyName,
        InvalidSlug,
        check_key_name,
        check_slug,
        create_api_key,
    )

    try:  # before touching the database
        check_slug(args.slug)
        check_key_name(args.name)
    except (InvalidSlug, InvalidKeyName) as exc:
        raise UsageError(str(exc)) from None

    async def create() -> str:
        async with open_database(settings.database_url):
            _, key = await create_api_key(args.slug, name=args.name)
        return key

    _migrate_quietly(settings)
    print(asyncio.run(create()))
    return 0


def cmd_import_roster(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.db import open_database
    from gateway.directory.models import School
    from gateway.directory.roster import RosterError, read_roster
    from gateway.directory.user_input import RowError
    from gateway.directory.users import upsert_users

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        rows = read_roster(data)
    except RosterError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    lines = [line for line, _ in rows]
    users = [user for _, user in rows]

    async def run() -> tuple[int, int]:
        async with open_database(settings.database_url):
            school = await School.get_or_none(slug=args.school)
            if school is None:
                raise UsageError(f"no school {args.school!r}; create it with `gateway create-api-key {args.school}`")
            try:
                result = await upsert_users(school, users)
            except RowError as exc:
                # The index is the person's position; skipped rows and blank lines make it differ from the line.
                raise UsageError(f"{args.file}: line {lines[exc.index]}: {exc.field}: {exc.message}") from None
            return result.created, result.updated

    _migrate_quietly(settings)
    created, updated = asyncio.run(run())
    print(f"created {created}, updated {updated}")
    return 0


def extract_reply(path: Path | None) -> int:
    from gateway.channels.email_parse import decode_bodies
    from gateway.threads.reply_text import extract_reply as from_text
    from gateway.threads.reply_text import extract_reply_from_html

    try:
        data = path.read_bytes() if path else sys.stdin.buffer.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if _looks_like_message(data):
        text, html = decode_bodies(data)
        reply = from_text(text) if text is not None else extract_reply_from_html(html or "")
    else:
        reply = from_text(data.decode("utf-8", errors="replace"))
    sys.stdout.write(reply + ("\n" if reply and not reply.endswith("\n") else ""))
    return 0


HEADER_LINE = re.compile(rb"^[!-9;-~]+:")  # RFC 5322 section 2.2: field name, colon
COMMON_HEADERS = {b"from", b"to", b"message-id", b"content-type", b"mime-version", b"received", b"subject", b"date"}


def _looks_like_message(data: bytes) -> bool:
    """An RFC 5322 message starts with header fields, some of them the usual ones; else it is text."""
    head = re.split(rb"\r?\n\r?\n", data[:16384], maxsplit=1)[0]
    lines = head.splitlines()
    if not lines or not HEADER_LINE.match(lines[0]):
        return False
    names = {line.split(b":", 1)[0].lower() for line in lines if HEADER_LINE.match(line)}
    return bool(names & COMMON_HEADERS)


def _migrate_quietly(settings: Settings) -> None:
    from gateway.db import migrate_database

    asyncio.run(migrate_database(settings.database_url))


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "migrate": cmd_migrate,
    "create-api-key": cmd_create_api_key,
    "import-roster": cmd_import_roster,
}


if __name__ == "__main__":
    raise SystemExit(main())
