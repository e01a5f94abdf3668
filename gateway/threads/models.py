"""Conversations, their messages, the outbox (Delivery), reply tokens, SMS routes, inbound events."""
from __future__ import annotations

import enum

from tortoise import fields
from tortoise.models import Model

from gateway.channels.base import DeliveryStatus


class ConversationKind(str, enum.Enum):
    CONVERSATION = "conversation"
    ANNOUNCEMENT = "announcement"
    NEWSLETTER = "newsletter"


class ConversationState(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Origin(str, enum.Enum):
    """Where a message came from."""

    WEB = "web"
    API = "api"
    SMS = "sms"
    EMAIL = "email"
    SYSTEM = "system"


class Direction(str, enum.Enum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class RoutedBy(str, enum.Enum):
    REPLY_TOKEN = "reply_token"
    REFERENCES = "references"
    SMS_POOL = "sms_pool"
    SENDER_FALLBACK = "sender_fallback"
    WEB = "web"
    TRIAGE = "triage"


class Conversation(Model):
    id = fields.IntField(primary_key=True)
    school = fields.ForeignKeyField("models.School", related_name="conversations")
    kind = fields.CharEnumField(ConversationKind, max_length=16)
    subject = fields.CharField(max_length=200, default="")
    state = fields.CharEnumField(ConversationState, max_length=8, default=ConversationState.OPEN)
    created_by = fields.ForeignKeyField("models.User", related_name="started_conversations", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_message_at = fields.DatetimeField(null=True)

    class Meta:
        table = "conversation"
        indexes = (("school_id", "last_message_at"),)


class Participant(Model):
    id = fields.IntField(primary_key=True)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="participants")
    user = fields.ForeignKeyField("models.User", related_name="participations")
    role = fields.CharField(max_length=16)  # the membership role: staff | guardian | student
    is_owner = fields.BooleanField(default=False)
    last_read_at = fields.DatetimeField(null=True)
    # The channel this participant last wrote to us on; staff replies go back that way (DESIGN 5).
    last_channel = fields.CharField(max_length=8, null=True)

    class Meta:
        table = "participant"
        unique_together = (("conversation", "user"),)
        indexes = (("user_id",),)  # a person's conversation list


class Message(Model):
    id = fields.IntField(primary_key=True)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="messages")
    author = fields.ForeignKeyField("models.User", related_name="messages", null=True)
    body = fields.TextField()
    original = fields.TextField(null=True)  # raw source for audit: the full e-mail or webhook form
    origin = fields.CharEnumField(Origin, max_length=8)
    direction = fields.CharEnumField(Direction, max_length=8)
    routed_by = fields.CharEnumField(RoutedBy, max_length=16, null=True)
    sender_unverified = fields.BooleanField(default=False)
    urgent = fields.BooleanField(default=False)
    # A form's one-time submission key (hashed with its author): pressing Send twice, or the
    # browser re-posting, finds the first message instead of writing a second one.
    submission_key = fields.CharField(max_length=64, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "message"
        indexes = (("conversation_id", "created_at"),)


class Delivery(Model):
    """The outbox: one row per (message, recipient, channel), or per (login link, channel).

    A delivery carries either a conversation's Message or, with no message, a login link: the
    LoginToken whose link it sends (an invitation or a sign-in link, rendered when it is sent) and
    the school it is sent for.
    """

    id = fields.IntField(primary_key=True)
    message = fields.ForeignKeyField("models.Message", related_name="deliveries", null=True)
    login_token = fields.ForeignKeyField("models.LoginToken", related_name="deliveries", null=True)
    school = fields.ForeignKeyField("models.School", related_name="link_deliveries", null=True)  # login links only
    # A login link the person just asked for is not held back by quiet hours (messages use Message.urgent).
    urgent = fields.BooleanField(default=False)
    recipient = fields.ForeignKeyField("models.User", related_name="deliveries")
    channel = fields.CharField(max_length=8)  # sms | email
    address = fields.CharField(max_length=320, null=True)  # the contact point used (null if suppressed)
    sender = fields.CharField(max_length=320, null=True)  # our number for SMS
    status = fields.CharEnumField(DeliveryStatus, max_length=16, default=DeliveryStatus.QUEUED)
    attempts = fields.SmallIntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=64, null=True)
    claimed_until = fields.DatetimeField(null=True)
    provider_id = fields.CharField(max_length=255, null=True)
    segments = fields.SmallIntField(null=True)
    error_code = fields.CharField(max_length=32, null=True)
    error_reason = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "delivery"
        # message_id: a thread page and its live stream read the deliveries of its messages.
        indexes = (("status", "next_attempt_at"), ("provider_id",), ("recipient_id", "channel"), ("login_token_id",),
                   ("message_id",))


class ReplyToken(Model):
    """Identifies one participant of one conversation in reply addresses.

    Only a hash is stored. The token itself is an HMAC of `salt` under the server secret, so the
    outbox can put it in every e-mail without keeping it in clear (gateway.threads.addresses).
    """

    id = fields.IntField(primary_key=True)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="reply_tokens")
    user = fields.ForeignKeyField("models.User", related_name="reply_tokens")
    salt = fields.CharField(max_length=32)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reply_token"
        unique_together = (("conversation", "user"),)


class SmsRoute(Model):
    """(their phone, our number) → the conversation a reply on that pair belongs to (DESIGN 4)."""

    id = fields.IntField(primary_key=True)
    school = fields.ForeignKeyField("models.School", related_name="sms_routes")
    phone = fields.CharField(max_length=20)
    our_number = fields.CharField(max_length=40)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="sms_routes")
    user = fields.ForeignKeyField("models.User", related_name="sms_routes", null=True)  # who we texted
    last_used_at = fields.DatetimeField()

    class Meta:
        table = "sms_route"
        unique_together = (("phone", "our_number"),)


class InboundOutcome(str, enum.Enum):
    RECEIVED = "received"        # stored, not yet processed
    ROUTED = "routed"            # became a Message in a conversation
    UNMATCHED = "unmatched"      # kept for staff triage: no conversation could be told
    AUTO_REPLY = "auto_reply"    # out-of-office and other automatic mail: recorded, never posted
    BOUNCE = "bounce"            # a delivery report about mail we sent
    OPT_OUT = "opt_out"          # STOP and friends
    OPT_IN = "opt_in"            # START and friends
    HELP = "help"                # HELP / INFO
    REJECTED = "rejected"        # failed a check (signature, size, loop); `reason` says which
    APPLIED = "applied"          # a status callback that moved a delivery
    IGNORED = "ignored"          # a status callback for no delivery of ours


class InboundEvent(Model):
    """Every inbound item as received, with its outcome. Nothing inbound is dropped without a row.

    It is also the inbox queue. A webhook stores the item and answers at once, and processing
    happens from the stored row. An item stuck in `received` (a crash) is picked up again.
    """

    id = fields.IntField(primary_key=True)
    school = fields.ForeignKeyField("models.School", related_name="inbound_events", null=True)
    channel = fields.CharField(max_length=16)  # sms | email | sms_status
    provider_id = fields.CharField(max_length=255, unique=True)
    outcome = fields.CharEnumField(InboundOutcome, max_length=16, default=InboundOutcome.RECEIVED)
    reason = fields.CharField(max_length=500, null=True)
    sender = fields.CharField(max_length=320, null=True)
    payload = fields.TextField()  # the item as received (form, JSON or raw MIME)
    normalized: dict = fields.JSONField(null=True)  # our InboundMessage, as the channel read it
    conversation = fields.ForeignKeyField("models.Conversation", related_name="inbound_events", null=True)
    message = fields.ForeignKeyField("models.Message", related_name="inbound_events", null=True)
    claimed_until = fields.DatetimeField(null=True)
    received_at = fields.DatetimeField(auto_now_add=True)
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbound_event"
        indexes = (("school_id", "outcome", "received_at"), ("outcome", "received_at"))
