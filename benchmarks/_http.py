"""Timing page requests for the page benchmarks (web.py, directory.py)."""
from __future__ import annotations

import time

import aiohttp


async def time_gets(session: aiohttp.ClientSession, urls: list[str]) -> list[float]:
    """Seconds each sequential GET took (body read); any status but 200 stops the run."""
    times = []
    for url in urls:
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {body[:300]!r}")
        times.append(time.perf_counter() - started)
    return times


def ms(values: list[float], q: float = 0.5) -> float:
    """The `q` quantile of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
