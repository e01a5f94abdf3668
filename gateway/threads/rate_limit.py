"""Messages-per-second limits per sending number and for SMTP (a token bucket per key).

Carriers and providers cap throughput per sender (a US long code: 1 message/s; Twilio queues the
excess and eventually fails it with 30001 "queue overflow"), so we pace ourselves instead. The limit
is per worker process: with N workers, configure 1/N of the provider's limit.
"""
from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate                       # tokens per second; 0 = unlimited
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, key: str) -> None:
        if self.rate <= 0:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # waiters for one key queue up in order; other keys are not held up
            while True:
                now = time.monotonic()
                tokens, last = self._buckets.get(key, (self.burst, now))
                tokens = min(self.burst, tokens + (now - last) * self.rate)
                if tokens >= 1:
                    self._buckets[key] = (tokens - 1, now)
                    return
                self._buckets[key] = (tokens, now)
                await asyncio.sleep((1 - tokens) / self.rate)
