"""The baseline the outbox is compared with: the same rendered items sent straight through the
twilio client and aiosmtplib, with the dispatcher's concurrency, and no database."""
from __future__ import annotations

import asyncio
import email.utils
import time
from datetime import datetime, timezone
from email.message import EmailMessage

import aiosmtplib
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

SMS_CONCURRENCY = 32   # requests in flight, as the dispatcher's sms_concurrency in the benchmarks
SMTP_CONNECTIONS = 4   # as the SMTP channel's pool


def plain_mime(item) -> EmailMessage:  # type: ignore[no-untyped-def]
    """The same e-mail built with the standard library alone: same headers, same two parts."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = item.from_, item.to, item.subject
    m["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    m["Message-ID"] = item.message_id
    if item.reply_to:
        m["Reply-To"] = item.reply_to
    if item.references:
        m["References"] = " ".join(item.references)
        m["In-Reply-To"] = item.references[-1]
    for name, value in item.headers:
        m[name] = value
    m.set_content(item.text)
    m.add_alternative(item.html, subtype="html")
    return m


async def raw_loop(servers: dict, sms_items: list, email_items: list) -> float:
    """Seconds to send everything; `servers` is what benchmarks/_servers.py printed."""
    http = AsyncTwilioHttpClient()
    client = Client(servers["sid"], servers["token"], http_client=http, environment={})
    client.api.base_url = servers["twilio"]
    gate = asyncio.Semaphore(SMS_CONCURRENCY)

    async def sms(item) -> None:  # type: ignore[no-untyped-def]
        async with gate:
            await client.messages.create_async(to=item.to, from_=item.from_, body=item.body,
                                               status_callback=item.status_callback)

    queue: asyncio.Queue = asyncio.Queue()
    for item in email_items:
        queue.put_nowait(item)

    async def smtp_worker() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=servers["smtp_port"]) as smtp:
            while not queue.empty():
                await smtp.send_message(plain_mime(queue.get_nowait()))

    start = time.perf_counter()
    await asyncio.gather(*(sms(item) for item in sms_items), *(smtp_worker() for _ in range(SMTP_CONNECTIONS)))
    elapsed = time.perf_counter() - start
    await http.close()
    return elapsed
