"""Prometheus metrics (served at /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_OUTCOMES = Counter(
    "gateway_delivery_outcomes_total", "Outbound send attempts by channel and outcome",
    ["channel", "outcome"],  # outcome: sent | retry | failed | suppressed | deferred
)
SEND_SECONDS = Histogram(
    "gateway_send_seconds", "Time a provider took to accept one item", ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_DEPTH = Gauge("gateway_outbox_queued", "Deliveries waiting in the outbox (read at scrape time)")
