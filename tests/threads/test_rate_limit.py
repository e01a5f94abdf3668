"""Messages per second per sending number: a token bucket per key."""
import asyncio
import time

from gateway.threads.rate_limit import RateLimiter


async def timed(limiter: RateLimiter, keys: list[str]) -> float:
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire(k) for k in keys))
    return time.monotonic() - start


async def test_one_key_is_paced_after_its_burst():
    # 20/s with a burst of 1: five sends need at least four intervals of 50 ms.
    assert await timed(RateLimiter(20, burst=1), ["+14155550100"] * 5) >= 0.19


async def test_keys_do_not_hold_each_other_up():
    limiter = RateLimiter(2, burst=1)
    assert await timed(limiter, [f"+1415555010{i}" for i in range(5)]) < 0.4  # one token each, no waiting


async def test_zero_means_no_limit():
    assert await timed(RateLimiter(0), ["smtp"] * 1000) < 0.4
