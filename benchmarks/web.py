"""Web pages: a 500-message thread page, and how fast a reply reaches an open page, against bare aiohttp.

    .venv/bin/python benchmarks/web.py [--database sqlite|postgres] [--pages 200] [--replies 50]

Seeds a school with one conversation of 500 messages (a teacher and a guardian, each teacher
message with its SMS delivery), then starts two servers as child processes on loopback:
  - bare:    an aiohttp app that answers the same 500-message HTML from memory, and has an SSE
             stream that a POST pushes one event into (the floor for both measurements);
  - gateway: `gateway serve --no-worker` with the seeded database.
Measures, signed in as the teacher:
  1. the thread page: median and p95 of sequential GETs of /conversations/<id> (target: median
     under 50 ms), beside the bare handler answering the same bytes;
  2. live updates: with /conversations/<id>/events open, the guardian's signed SMS reply is posted
     to /webhooks/twilio/sms; the time from the webhook's answer to the reply arriving on the open
     stream (target: median under 200 ms), beside the bare POST → SSE push.
"""
from __future__ import annotations

import argparse
import asyncio
import json
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

from benchmarks._http import ms, time_gets
from benchmarks._pg import drop_pg, fresh_pg
from benchmarks.inbound import free_port, wait_up
from gateway.channels.base import DeliveryStatus
from gateway.db import migrate_database, open_database
from gateway.directory.models import Role, School
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.settings import DEV_SECRET_KEY
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import ConversationKind, Delivery, Direction, Message, Origin, RoutedBy
from gateway.web.sessions import start_session
from tests.fakes.twilio import sign_twilio_request

SID, TOKEN = "AC" + "2" * 32, "benchmark-auth-token-0123456789abcdef"
NUMBERS = ["+14155550100"]
GUARDIAN_PHONE = "+12025550100"
MESSAGES = 500

BARE = '''
import asyncio, sys
from aiohttp import web
page = open(sys.argv[2], "rb").read()
streams = set()
async def thread(request):
    return web.Response(body=page, content_type="text/html")
async def events(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    queue = asyncio.Queue(); streams.add(queue)
    try:
        while True:
            await response.write(await queue.get())
    except ConnectionResetError:
        return response
    finally:
        streams.discard(queue)
async def push(request):
    text = (await request.post())["Body"]
    for queue in streams:
        queue.put_nowait(("event: message\\ndata: " + text + "\\n\\n").encode())
    return web.Response(text="<Response/>", content_type="application/xml")
app = web.Application()
app.router.add_get("/thread", thread); app.router.add_get("/events", events); app.router.add_post("/push", push)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


async def seed(url: str) -> tuple[int, str, str]:
    """(conversation id, the teacher's session cookie, our number that texted the guardian)."""
    await migrate_database(url)
    async with open_database(url):
        school = await School.create(slug="bench", name="Bench School", sms_numbers=NUMBERS, timezone="America/New_York",
                                     quiet_hours_start=0, quiet_hours_end=0)
        await upsert_users(school, [
            UserIn(external_id="t", role=Role.STAFF, name="Ms. Rivera", email="rivera@school.example"),
            UserIn(external_id="g", role=Role.GUARDIAN, name="Ana García", phone=GUARDIAN_PHONE, channel_preference="sms"),
        ])
        result = await send_communication(school, sender_external_id="t", kind=ConversationKind.CONVERSATION,
                                          recipients=RecipientSpec(users=["g"]), subject="Field trip",
                                          body="Please sign the form.", secret_key=DEV_SECRET_KEY)
        [cid] = result.conversation_ids
        first = await Message.get(conversation_id=cid)
        teacher, guardian = first.author_id, (await Delivery.get(message_id=first.id)).recipient_id
        start = datetime.now(timezone.utc) - timedelta(days=30)
        rows = []
        for i in range(1, MESSAGES):
            inbound = i % 2 == 1
            rows.append(Message(conversation_id=cid, author_id=guardian if inbound else teacher,
                                body=f"Message {i}: " + "a few words about the field trip, lunch & the bus <times>. " * 2,
                                origin=Origin.SMS if inbound else Origin.WEB,
                                direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
                                routed_by=RoutedBy.SMS_POOL if inbound else None, created_at=start + timedelta(minutes=i)))
        await Message.bulk_create(rows, batch_size=500)
        outbound = await Message.filter(conversation_id=cid, direction=Direction.OUTBOUND).values_list("id", flat=True)
        await Delivery.bulk_create([Delivery(message_id=mid, recipient_id=guardian, channel="sms",
                                             address=GUARDIAN_PHONE, sender=NUMBERS[0], status=DeliveryStatus.DELIVERED)
                                    for mid in outbound if mid != first.id], batch_size=500)
        _session, cookie = await start_session(teacher, "password")
        ours = (await Delivery.get(message_id=first.id)).sender
        return cid, cookie, ours




async def read_event(stream: aiohttp.ClientResponse, text: str) -> str:
    """The next message event carrying `text` (a stream opened late first replays older replies)."""
    while True:
        block = (await stream.content.readuntil(b"\n\n")).decode()
        if "event: message" in block and text in block:
            return block


async def time_live(session: aiohttp.ClientSession, stream_url: str, post_url: str, public_url: str,
                    ours: str, n: int, tag: str) -> list[float]:
    """Seconds from the webhook's answer to the reply's arrival on the open stream."""
    times = []
    async with session.get(stream_url) as stream:
        for i in range(n):
            form = {"MessageSid": f"SM{tag}{i:030x}", "AccountSid": SID, "From": GUARDIAN_PHONE, "To": ours,
                    "Body": f"Reply {tag} {i}", "NumMedia": "0"}
            headers = {"X-Twilio-Signature": sign_twilio_request(TOKEN, public_url, form)}
            arrival = asyncio.ensure_future(read_event(stream, form["Body"]))
            async with session.post(post_url, data=form, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{post_url}: {response.status}")
            answered = time.perf_counter()
            await asyncio.wait_for(arrival, 10)
            times.append(time.perf_counter() - answered)
            await asyncio.sleep(0.05)  # one reply at a time, like a person
    return times




async def main(database: str, pages: int, replies: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/web.sqlite3" if database == "sqlite" else await fresh_pg("gw_bench_web")
        cid, cookie, ours = await seed(url)
        bare_port, gw_port = free_port(), free_port()
        gw = f"http://127.0.0.1:{gw_port}"
        env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_PORT": str(gw_port), "TWILIO_ACCOUNT_SID": SID,
               "TWILIO_AUTH_TOKEN": TOKEN, "GATEWAY_PUBLIC_URL": gw, "TWILIO_API_BASE_URL": "http://127.0.0.1:9"}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--no-worker", "--no-migrate"], env=env,
                                   stderr=subprocess.DEVNULL)
        bare = None
        try:
            await wait_up(gw_port)
            jar = aiohttp.CookieJar(unsafe=True)
            jar.update_cookies({"gw_session": cookie}, aiohttp.client.URL(gw))
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                page = f"{gw}/conversations/{cid}"
                html = await (await session.get(page)).read()
                count = html.count(b'<li id="m')
                if count != MESSAGES:
                    raise RuntimeError(f"the thread page shows {count} messages, not {MESSAGES}")
                Path(tmp, "page.html").write_bytes(html)
                last = re.search(rb'data-last="(\d+)"', html).group(1).decode()  # type: ignore[union-attr]
                bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port), str(Path(tmp, "page.html"))])
                await wait_up(bare_port)
                bare_url = f"http://127.0.0.1:{bare_port}"
                await time_gets(session, [page] * 20)  # warm-up
                await time_gets(session, [f"{bare_url}/thread"] * 20)
                gw_pages = await time_gets(session, [page] * pages)
                bare_pages = await time_gets(session, [f"{bare_url}/thread"] * pages)
                await time_live(session, f"{bare_url}/events", f"{bare_url}/push", f"{bare_url}/push", ours, 5, "w0")
                await time_live(session, f"{page}/events?after={last}", f"{gw}/webhooks/twilio/sms",
                                f"{gw}/webhooks/twilio/sms", ours, 5, "w1")
                bare_live = await time_live(session, f"{bare_url}/events", f"{bare_url}/push", f"{bare_url}/push",
                                            ours, replies, "b0")
                gw_live = await time_live(session, f"{page}/events?after={last}", f"{gw}/webhooks/twilio/sms",
                                          f"{gw}/webhooks/twilio/sms", ours, replies, "g0")
        finally:
            for proc in (bare, gateway):
                if proc is not None:
                    proc.kill()  # open streams would hold a graceful shutdown for a minute
                    proc.wait(10)
            if database == "postgres":
                await drop_pg(url)
    size = len(html) / 1024
    print(f"thread page, {MESSAGES} messages ({size:,.0f} KiB), {pages} sequential GETs, {database}:")
    print(f"  gateway: median {ms(gw_pages):.1f} ms  p95 {ms(gw_pages, .95):.1f} ms  (target: median < 50 ms)")
    print(f"  bare aiohttp, same bytes from memory: median {ms(bare_pages):.1f} ms  p95 {ms(bare_pages, .95):.1f} ms")
    print(f"  ratio gateway/bare (median): {statistics.median(gw_pages) / statistics.median(bare_pages):.1f}x")
    print(f"live update, webhook answered → reply on the open page, {replies} replies:")
    print(f"  gateway: median {ms(gw_live):.1f} ms  p95 {ms(gw_live, .95):.1f} ms  (target: median < 200 ms)")
    print(f"  bare aiohttp POST → SSE push: median {ms(bare_live):.2f} ms  p95 {ms(bare_live, .95):.2f} ms")
    print(json.dumps({"thread_median_ms": round(ms(gw_pages), 1), "bare_median_ms": round(ms(bare_pages), 2),
                      "live_median_ms": round(ms(gw_live), 1), "bare_live_median_ms": round(ms(bare_live), 2)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--replies", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.pages, args.replies))
