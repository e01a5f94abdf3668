"""Where received e-mail enters: the raw-MIME webhook and the IMAP reader feed this one path.

Channels turn bytes into our InboundMessage (email_parse), threads store and route it; this module
only joins the two, so neither imports the other (DESIGN section 3).
"""
from __future__ import annotations

from dataclasses import replace

from gateway.channels.email_imap import BatchSink, Sink
from gateway.channels.email_parse import parse_inbound_email
from gateway.threads.inbound import InboundProcessor, record_inbound, record_many
from gateway.threads.models import InboundEvent


async def take_email(raw: bytes, processor: InboundProcessor, *, max_bytes: int, received_via: str,
                     cut_at: int | None = None) -> tuple[InboundEvent, bool]:
    """Store one raw message (committed when this returns) and schedule its routing if it is new.

    `cut_at`: the reader stopped at that many bytes of a larger message; what was read is kept,
    and the processor rejects it as oversized instead of posting a truncated reply.
    """
    msg = parse_inbound_email(raw, max_bytes=max_bytes, received_via=received_via)
    if cut_at is not None and not any(p.startswith("oversized") for p in msg.problems):
        msg = replace(msg, problems=(f"oversized: more than {cut_at} bytes",) + msg.problems)
    event, new = await record_inbound(msg)
    if new:
        processor.schedule(event.id)
    return event, new


def imap_sink(processor: InboundProcessor, max_bytes: int) -> Sink:
    async def sink(raw: bytes) -> None:
        await take_email(raw, processor, max_bytes=max_bytes, received_via="imap")

    return sink


def imap_batch_sink(processor: InboundProcessor, max_bytes: int) -> BatchSink:
    """The reader's fetched batch stored in one transaction (a commit per message costs most of
    the ingest time on SQLite), then routed in the background."""
    async def sink(raws: list[bytes]) -> None:
        msgs = [parse_inbound_email(raw, max_bytes=max_bytes, received_via="imap") for raw in raws]
        for event_id in await record_many(msgs):
            processor.schedule(event_id)

    return sink
