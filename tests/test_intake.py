"""The e-mail intake shared by the webhook and the IMAP reader: batches are all or nothing."""
from __future__ import annotations

import pytest

from gateway.channels.email_imap import ImapReader, SinkFailed
from gateway.channels.email_parse import parse_inbound_email
from gateway.intake import imap_batch_sink
from gateway.threads.inbound import InboundProcessor, record_inbound, record_many
from gateway.threads.models import InboundEvent
from tests.conftest import require
from tests.fakes.dovecot import DovecotServer, make_reply


async def test_a_batch_stores_only_what_is_new_and_returns_the_new_ids(db):
    first, second, third = (parse_inbound_email(make_reply(i)) for i in range(3))
    await record_inbound(first)
    ids = await record_many([first, second, second, third])  # a repeat within the batch, one stored already
    assert len(ids) == 2
    assert sorted(await InboundEvent.filter(id__in=ids).values_list("provider_id", flat=True)) == sorted(
        [second.provider_id, third.provider_id])
    assert await InboundEvent.all().count() == 3
    assert await record_many([first, second, third]) == []


async def test_a_failing_batch_leaves_the_mailbox_untouched_and_is_offered_again(db, dovecot: DovecotServer):
    require(dovecot)
    box = dovecot.new_mailbox()
    await box.append([make_reply(i) for i in range(5)])
    processor = InboundProcessor({"reply.school.test"})
    calls = []

    async def broken(raws: list[bytes]) -> None:
        calls.append(len(raws))
        raise RuntimeError("database is down")

    with pytest.raises(SinkFailed):
        await ImapReader(box.settings, lambda raw: None, batch_sink=broken, timeout=5).run_once()  # type: ignore[arg-type]
    assert calls == [5] and len(await box.list("INBOX")) == 5 and await InboundEvent.all().count() == 0

    reader = ImapReader(box.settings, lambda raw: None, batch_sink=imap_batch_sink(processor, 1_000_000),  # type: ignore[arg-type]
                        timeout=5)
    assert await reader.run_once() == 5
    await processor.wait_idle()
    assert await InboundEvent.all().count() == 5 and await box.list("INBOX") == []
    assert await InboundEvent.filter(outcome="received").count() == 0  # routed (here: unmatched), not stuck
