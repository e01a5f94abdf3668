"""Dev transports: they "send" by storing the item for the /dev/mailbox page.

Used whenever Twilio or SMTP is not configured, so `gateway demo` works on a fresh machine with no
accounts. They go through the same outbox, rendering and status machine as the real channels.
"""
from __future__ import annotations

import uuid

from gateway.channels.base import (
    ChannelKind,
    OutboundEmail,
    OutboundItem,
    OutboundSms,
    SendResult,
)
from gateway.channels.models import DevOutboxItem
from gateway.channels.sms_segments import count_segments


class DevSmsChannel:
    kind = ChannelKind.SMS

    async def send(self, item: OutboundItem) -> SendResult:
        assert isinstance(item, OutboundSms)
        sid = "SMdev" + uuid.uuid4().hex
        await DevOutboxItem.create(kind="sms", to=item.to, sender=item.from_, body=item.body, provider_id=sid,
                                   headers={"StatusCallback": item.status_callback or ""})
        return SendResult(provider_id=sid, segments=count_segments(item.body).segments)

    async def close(self) -> None:
        return None


class DevEmailChannel:
    kind = ChannelKind.EMAIL

    async def send(self, item: OutboundItem) -> SendResult:
        assert isinstance(item, OutboundEmail)
        headers = dict(item.headers)
        if item.references:
            headers["References"] = " ".join(item.references)
        await DevOutboxItem.create(
            kind="email", to=item.to, sender=item.from_, subject=item.subject, body=item.text, html=item.html,
            reply_to=item.reply_to, provider_id=item.message_id, headers=headers,
        )
        return SendResult(provider_id=item.message_id)

    async def close(self) -> None:
        return None
