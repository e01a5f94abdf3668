"""`create_app(settings)`: the aiohttp application, with every stateful part in a cleanup context.

Order of the contexts: database → channels → live page updates → dispatcher (when this process
runs workers) → inbound processing → invitation campaigns → IMAP reader (workers, when IMAP is configured). Each
is opened at start-up and closed in reverse order at shutdown, under `web.run_app` and under
pytest-aiohttp alike.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.channels.base import Channel
from gateway.channels.email_imap import ImapReader
from gateway.db import is_postgres, open_database
from gateway.i18n import current_translations, text_direction
from gateway.intake import imap_batch_sink, imap_sink
from gateway.settings import Settings
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.inbound import InboundProcessor
from gateway.threads.live import hub_for
from gateway.web import keys
from gateway.web.api_invites import campaign_runner
from gateway.web.middlewares import error_middleware, security_headers_middleware
from gateway.web.routes import setup_routes
from gateway.web.sessions import csrf_middleware, session_middleware
from gateway.web.throttle import LIMITS, AuthLimits

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "web" / "templates"


def create_app(
    settings: Settings, *, run_worker: bool | None = None, own_database: bool = True
) -> web.Application:
    """The gateway. `run_worker` starts the outbox dispatcher in this process (default: settings).

    `own_database=False` leaves the database to the caller (tests open one per test and share it).
    """
    app = web.Application(client_max_size=settings.max_request_bytes,
                          middlewares=[security_headers_middleware, error_middleware, session_middleware,
                                       csrf_middleware])
    app[keys.SETTINGS] = settings
    app[LIMITS] = AuthLimits()  # sign-in rate limits of this process
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: current_translations.get().gettext(s),
        ngettext=lambda s, p, n: current_translations.get().ngettext(s, p, n),
        newstyle=True,
    )
    env.globals["text_direction"] = text_direction
    if own_database:
        app.cleanup_ctx.append(_database(settings))
    app.cleanup_ctx.append(_channels(settings))
    app.cleanup_ctx.append(_live)
    app.on_shutdown.append(_end_live_streams)
    if settings.worker_enabled if run_worker is None else run_worker:
        app.cleanup_ctx.append(_dispatcher)
    app.cleanup_ctx.append(_inbound)
    app.cleanup_ctx.append(campaign_runner)  # invitation campaigns; workers also resume abandoned ones
    if settings.imap is not None and (settings.worker_enabled if run_worker is None else run_worker):
        app.cleanup_ctx.append(_mail_reader)
    setup_routes(app)
    return app


def _database(settings: Settings):
    async def database(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings.database_url):
            yield

    return database


def _channels(settings: Settings):
    async def channels(app: web.Application) -> AsyncIterator[None]:
        opened = await open_channels(settings)
        app[keys.CHANNELS] = opened
        try:
            yield
        finally:
            for channel in opened.values():
                await channel.close()

    return channels


async def open_channels(settings: Settings) -> dict[str, Channel]:
    """The real channel where it is configured, the dev transport otherwise."""
    from gateway.channels.dev import DevEmailChannel, DevSmsChannel

    channels: dict[str, Channel] = {}
    if settings.twilio is not None:
        from gateway.channels.twilio_sms import TwilioSmsChannel

        channels["sms"] = await TwilioSmsChannel.open(
            settings.twilio.account_sid, settings.twilio.auth_token, api_base_url=settings.twilio.api_base_url
        )
    else:
        channels["sms"] = DevSmsChannel()
    if settings.smtp is not None:
        from gateway.channels.email_smtp import SmtpEmailChannel

        smtp = settings.smtp
        channels["email"] = SmtpEmailChannel(
            smtp.host, smtp.port, username=smtp.username, password=smtp.password, starttls=smtp.starttls
        )
    else:
        channels["email"] = DevEmailChannel()
    return channels


async def _live(app: web.Application) -> AsyncIterator[None]:
    """Live page updates: in-process, or across processes by LISTEN/NOTIFY on PostgreSQL."""
    hub = hub_for(app[keys.SETTINGS].database_url)
    await hub.start()
    app[keys.LIVE] = hub
    yield
    await hub.close()


async def _end_live_streams(app: web.Application) -> None:
    if keys.LIVE in app:
        app[keys.LIVE].stop_streams()


async def _inbound(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    dispatcher = app.get(keys.DISPATCHER)
    processor = InboundProcessor({settings.reply_domain}, on_queued=dispatcher.wake if dispatcher else None,
                                 on_posted=app[keys.LIVE].publish,
                                 concurrency=4 if is_postgres(settings.database_url) else 1,
                                 yield_to_intake=not is_postgres(settings.database_url))
    app[keys.INBOUND] = processor
    stop = asyncio.Event()
    # Where workers run, they also sweep up replies a crashed process stored but never routed.
    sweeper = asyncio.create_task(processor.sweep_forever(stop)) if dispatcher else None
    yield
    stop.set()
    if sweeper is not None:
        await sweeper
    await processor.wait_idle()  # a reply being routed finishes; one not started is swept later


async def _mail_reader(app: web.Application) -> AsyncIterator[None]:
    """One IMAP reader per mailbox (it holds a lock, so extra workers simply wait their turn)."""
    settings = app[keys.SETTINGS]
    assert settings.imap is not None
    processor = app[keys.INBOUND]
    reader = ImapReader(settings.imap, imap_sink(processor, settings.max_email_bytes),
                        batch_sink=imap_batch_sink(processor, settings.max_email_bytes),
                        database_url=settings.database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop), name="imap-reader")
    yield
    stop.set()
    try:
        await asyncio.wait_for(task, timeout=30)
    except asyncio.TimeoutError:
        task.cancel()  # anything it fetched but did not commit is fetched again next time


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    dispatcher = Dispatcher(app[keys.SETTINGS], app[keys.CHANNELS])
    app[keys.DISPATCHER] = dispatcher
    stop = asyncio.Event()
    tasks = [asyncio.create_task(dispatcher.run(stop), name="outbox-dispatcher")]
    yield
    stop.set()
    dispatcher.wake()
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        log.warning("%s did not stop in 30 s; its leases will expire and be retried", task.get_name())
        task.cancel()
