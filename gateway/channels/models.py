"""Rows the channels keep for themselves (never conversations: see DESIGN section 3)."""
from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class DevOutboxItem(Model):
    """What a dev transport "sent": shown on /dev/mailbox so a newcomer sees the product work."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=8)  # sms | email
    to = fields.CharField(max_length=320)
    sender = fields.CharField(max_length=320)
    subject = fields.CharField(max_length=500, default="")
    body = fields.TextField()
    html = fields.TextField(null=True)
    reply_to = fields.CharField(max_length=320, null=True)
    provider_id = fields.CharField(max_length=255)
    headers: dict = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "dev_outbox_item"


class ImapCursor(Model):
    """How far the IMAP reader got in one mailbox, so a restart resumes instead of rereading.

    A UID means something only together with the mailbox's UIDVALIDITY (RFC 3501 section 2.3.1.1),
    so both are stored. last_uid only moves forward, after the sink committed and the mail was marked.
    """

    id = fields.IntField(primary_key=True)
    mailbox = fields.CharField(max_length=500, unique=True)  # "user@host:port/INBOX"
    uidvalidity = fields.BigIntField()
    last_uid = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "imap_cursor"
