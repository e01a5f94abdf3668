"""Rate limits: sign-in per address typed and per client address, and families' messages per person.

The buckets live in memory, per process. With N web processes an attacker gets at most N times the
limit, which is still far too little for guessing a password of 10+ characters that is not on the
common list; and a restart forgets the buckets. Both are accepted for now (a DB table would make the
limit exact across processes, at one write per attempt).

Buckets are keyed by the *typed* address after normalisation, known or not, so an unknown address is
limited exactly like a known one and the 429 reveals nothing. The client address is
`request.remote`: behind a reverse proxy that is the proxy, so every client would share one bucket;
configure the proxy to forward the real address (aiohttp's forwarded handling) before relying on the
per-client limit there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from aiohttp import web


class TokenBuckets:
    """`capacity` attempts at once, refilled at `capacity / per_seconds` per second, per key."""

    def __init__(self, capacity: float, per_seconds: float, *, max_keys: int = 100_000) -> None:
        self.capacity = capacity
        self.rate = capacity / per_seconds if per_seconds > 0 else math.inf
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - when) * self.rate)

    def retry_after(self, key: str, *, now: float | None = None) -> float:
        """Seconds until `key` may try again (0 when it may now), without taking anything."""
        now = time.monotonic() if now is None else now
        level = self._level(key, now)
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._buckets) >= self.max_keys:
            self._prune(now)
        self._buckets[key] = (self._level(key, now) - 1, now)

    def _prune(self, now: float) -> None:
        # Full buckets carry no information; drop them (and, if still too many, the oldest half).
        for key in [k for k in self._buckets if self._level(k, now) >= self.capacity]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            for key, _ in sorted(self._buckets.items(), key=lambda item: item[1][1])[: self.max_keys // 2]:
                del self._buckets[key]


@dataclass
class AuthLimits:
    """The sign-in limits of one process (defaults are per address / per client address)."""

    # Password attempts for one address: 5, then one every 3 minutes.
    password_per_address: TokenBuckets = field(default_factory=lambda: TokenBuckets(5, 15 * 60))
    # "Send me a link" for one address: 3, then one every 5 minutes (each one texts or mails someone).
    link_per_address: TokenBuckets = field(default_factory=lambda: TokenBuckets(3, 15 * 60))
    # Every sign-in form post from one client address: 30, then one every 10 seconds.
    per_client: TokenBuckets = field(default_factory=lambda: TokenBuckets(30, 300))
    # Messages a guardian or student writes on the website (each one texts or mails a teacher):
    # 20, then one every 3 minutes. Staff are not limited.
    family_writes: TokenBuckets = field(default_factory=lambda: TokenBuckets(20, 60 * 60))


LIMITS = web.AppKey("auth_limits", AuthLimits)


def limits(request: web.Request) -> AuthLimits:
    return request.config_dict[LIMITS]


def client_key(request: web.Request) -> str:
    return f"client:{request.remote or '-'}"


def check(request: web.Request, *pairs: tuple[TokenBuckets, str]) -> float:
    """Take one token from each (bucket, key); returns 0, or the seconds to wait (nothing taken)."""
    wait = max((bucket.retry_after(key) for bucket, key in pairs), default=0.0)
    if wait > 0:
        return wait
    for bucket, key in pairs:
        bucket.take(key)
    return 0.0
