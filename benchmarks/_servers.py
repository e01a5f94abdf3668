"""Provider fakes for the benchmarks, in their own process so they do not share our core.

Starts the recording fake Twilio REST API (tests/fakes/twilio.py) and an aiosmtpd server that
counts messages, prints one JSON line {"twilio": URL, "smtp_port": N, "sid": ..., "token": ...},
and serves until its standard input closes.
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from tests.fakes.twilio import FakeTwilio  # noqa: E402


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.count += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main() -> None:
    fake = FakeTwilio()
    runner = web.AppRunner(fake.make_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    smtp_port = free_port()
    controller = Controller(CountingHandler(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    print(json.dumps({"twilio": f"http://127.0.0.1:{port}", "smtp_port": smtp_port,
                      "sid": fake.account_sid, "token": fake.auth_token}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    controller.stop()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
