"""Inbound SMS webhooks end to end, against a bare aiohttp handler in the same run.

    .venv/bin/python benchmarks/inbound.py [--requests 2000] [--concurrency 20]

Seeds an SQLite school (1,000 guardians, each in an open conversation that texted them), then
starts two servers as child processes on loopback:
  - bare:    an aiohttp app whose handler reads the form and answers empty TwiML;
  - gateway: `gateway serve --no-worker` (verify the Twilio signature, dedupe on MessageSid, store
             the event, answer TwiML; the reply is then routed, stored as a Message and queued to
             the teacher in the background).
The same signed requests go to both. Prints request rates, the ratio (target >= 0.25), p50/p99
latency, and how long the gateway took until every reply was routed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from benchmarks._pg import drop_pg, fresh_pg  # noqa: E402
from gateway.db import migrate_database, open_database  # noqa: E402
from gateway.directory.models import Role, School  # noqa: E402
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users  # noqa: E402
from gateway.settings import DEV_SECRET_KEY  # noqa: E402
from gateway.threads.compose import RecipientSpec, send_communication  # noqa: E402
from gateway.threads.models import ConversationKind, Delivery, InboundEvent  # noqa: E402
from tests.fakes.twilio import sign_twilio_request  # noqa: E402

SID, TOKEN = "AC" + "1" * 32, "benchmark-auth-token-0123456789abcdef"
NUMBERS = ["+14155550100", "+14155550101"]

BARE = '''
from aiohttp import web
async def sms(request):
    await request.post()
    return web.Response(text='<?xml version="1.0" encoding="UTF-8"?><Response />', content_type="application/xml")
app = web.Application(); app.router.add_post("/webhooks/twilio/sms", sms)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None, access_log=None)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def seed(url: str, guardians: int) -> list[tuple[str, str]]:
    """(guardian phone, our number that texted them) pairs."""
    await migrate_database(url)
    async with open_database(url):
        school = await School.create(slug="bench", name="Bench School", sms_numbers=NUMBERS,
                                     quiet_hours_start=0, quiet_hours_end=0)
        people = [UserIn(external_id="t", role=Role.STAFF, name="Ms. Rivera", email="rivera@school.example")]
        people += [UserIn(external_id=f"g{i}", role=Role.GUARDIAN, name=f"G{i}", phone=f"+1202555{i:04d}",
                          channel_preference="sms") for i in range(guardians)]
        await upsert_users(school, people)
        await send_communication(school, sender_external_id="t", kind=ConversationKind.CONVERSATION,
                                 recipients=RecipientSpec(users=[f"g{i}" for i in range(guardians)]), subject="Trip",
                                 body="Please sign.", private=True, secret_key=DEV_SECRET_KEY)
        return [(d.address, d.sender) for d in await Delivery.filter(channel="sms")]


async def wait_up(port: int) -> None:
    for _ in range(1200):  # a loaded 2-core machine can take a while to import and start
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


async def blast(port: int, pairs: list[tuple[str, str]], n: int, concurrency: int, tag: str) -> tuple[float, list[float]]:
    base = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
    public = base  # the gateway's GATEWAY_PUBLIC_URL is its own address here
    requests = []
    for i in range(n):
        phone, ours = pairs[i % len(pairs)]
        form = {"MessageSid": f"SM{tag}{i:030x}", "AccountSid": SID, "From": phone, "To": ours,
                "Body": f"Signed, thanks! ({i})", "NumMedia": "0"}
        requests.append((form, sign_twilio_request(TOKEN, public, form)))
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            form, signature = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(base, data=form, headers={"X-Twilio-Signature": signature}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{resp.status}: {await resp.text()}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


async def main(n: int, concurrency: int, database: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/inbound.sqlite3" if database == "sqlite" else await fresh_pg("gw_bench_in")
        pairs = await seed(url, 1000)
        bare_port, gw_port = free_port(), free_port()
        env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_PORT": str(gw_port), "TWILIO_ACCOUNT_SID": SID,
               "TWILIO_AUTH_TOKEN": TOKEN, "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{gw_port}"}
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--no-worker", "--no-migrate"], env=env,
                                   stderr=subprocess.DEVNULL)
        try:
            await wait_up(bare_port)
            await wait_up(gw_port)
            await blast(bare_port, pairs, 200, concurrency, "w0")  # warm-up
            await blast(gw_port, pairs, 200, concurrency, "w1")
            bare_s, bare_lat = await blast(bare_port, pairs, n, concurrency, "b0")
            gw_s, gw_lat = await blast(gw_port, pairs, n, concurrency, "g0")
            answered = time.perf_counter()
            async with open_database(url):
                while await InboundEvent.filter(outcome="received").exists():
                    await asyncio.sleep(0.05)
                routed_s = gw_s + (time.perf_counter() - answered)
                routed = await InboundEvent.filter(outcome="routed").count()
        finally:
            for proc in (bare, gateway):
                proc.terminate()
                proc.wait(10)
            if database == "postgres":
                await drop_pg(url)
    bare_rate, gw_rate = n / bare_s, n / gw_s
    print(f"bare aiohttp handler: {bare_rate:,.0f} req/s  p50 {pct(bare_lat, 50):.1f} ms  p99 {pct(bare_lat, 99):.1f} ms")
    print(f"gateway webhook:      {gw_rate:,.0f} req/s  p50 {pct(gw_lat, 50):.1f} ms  p99 {pct(gw_lat, 99):.1f} ms")
    print(f"ratio gateway/bare: {gw_rate / bare_rate:.2f} (target >= 0.25)")
    print(f"all {routed} replies (of {n + 200} incl. warm-up) routed, stored and queued to the teacher "
          f"{routed_s:.2f} s after the first request: {n / routed_s:,.0f} replies/s end to end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.database))
