"""Guardians answer by e-mail: the raw-MIME webhook and the IMAP reader, routing, triage (DESIGN section 4).

Every reply here answers an e-mail the gateway really sent: a conversation is composed, dispatched
through the dev e-mail transport, and the stored DevOutboxItem gives the Reply-To, Message-ID and
References a guardian's client would answer to. The replies are then written the way Gmail,
Outlook, Apple Mail and mail systems write them (quoted history, attribution lines, HTML-only
bodies, delivery reports), posted to POST /webhooks/email or APPENDed to a real Dovecot mailbox, and
the stored rows are checked: the Message (only the new words, routed_by, author,
sender_unverified), the InboundEvent (outcome and reason), the deliveries to staff, and what must
not happen.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import inspect
import itertools
import quopri
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from pathlib import Path

import pytest

from gateway.channels.dev import DevEmailChannel, DevSmsChannel
from gateway.channels.email_imap import ImapReader
from gateway.channels.models import DevOutboxItem
from gateway.directory.models import AuditLog, ContactPoint, Membership
from gateway.intake import imap_sink
from gateway.threads.addresses import find_tokens
from gateway.threads.compose import RecipientSpec, post_staff_reply, send_communication
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.inbound import InboundProcessor
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    ConversationState,
    Delivery,
    InboundEvent,
    Message,
    Participant,
)
from gateway.web import keys
from tests.conftest import require
from tests.fakes.dovecot import DovecotServer

# The session's Dovecot (tests/channels/test_email_imap.py takes it the same way).

SECRET = "inbound-email-webhook-secret-0123456789"
DOMAIN = "reply.school.test"
JOHN = "John Smith <john@family.example>"
WEI = "Li Wei <wei@family.example>"
ANA = "Ana García <ana@family.example>"
RIVERA_EMAIL = "rivera@school.example"
CHEN_EMAIL = "chen@school.example"
TRIP = "Please sign the permission slip for Friday's trip to the science museum."
serial = itertools.count(1)


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def client(make_client):
    return await make_client(inbound_email_secret=SECRET)


@pytest.fixture
def server(dovecot: DovecotServer) -> DovecotServer:
    require(dovecot)
    return dovecot


# ---------------------------------------------------------------------------------------- helpers


async def uid(ext: str) -> int:
    return (await Membership.get(external_id=ext)).user_id


async def dispatch(settings) -> int:
    """Send everything due through the dev transports, as the worker would."""
    return await Dispatcher(settings, {"sms": DevSmsChannel(), "email": DevEmailChannel()}).drain()


async def start(school, settings, *, sender: str = "t-rivera", to: tuple[str, ...] = ("g-john",),
                subject: str = "Field trip on Friday", body: str = TRIP) -> int:
    """A teacher starts a conversation, and the outbox sends it."""
    result = await send_communication(school, sender_external_id=sender, kind=ConversationKind.CONVERSATION,
                                      recipients=RecipientSpec(users=list(to)), subject=subject, body=body,
                                      secret_key=settings.secret_key)
    await dispatch(settings)
    return result.conversation_ids[0]


@dataclass(frozen=True)
class Received:
    """One e-mail the gateway sent, as the guardian's mail client shows it."""

    to: str
    from_: str
    reply_to: str
    message_id: str
    references: str
    subject: str
    text: str
    sent_at: str = "Mon, 2 Sep 2024 08:15:00 -0400"

    @property
    def token(self) -> str:
        [token] = find_tokens(self.reply_to)
        return token

    @property
    def from_name(self) -> str:
        return email.utils.parseaddr(self.from_)[0]

    @property
    def from_address(self) -> str:
        return email.utils.parseaddr(self.from_)[1]


async def mailed(address: str, subject: str | None = None) -> Received:
    """The latest e-mail the dev transport sent to `address` (with that subject)."""
    query = DevOutboxItem.filter(kind="email", to=address)
    if subject is not None:
        query = query.filter(subject=subject)
    item = await query.order_by("-id").first()
    assert item is not None, f"nothing was e-mailed to {address}"
    assert item.reply_to, "a conversation e-mail always carries a reply address"
    return Received(to=item.to, from_=item.sender, reply_to=item.reply_to, message_id=item.provider_id,
                    references=item.headers.get("References", ""), subject=item.subject, text=item.body)


def new_message_id(domain: str) -> str:
    return f"<CA{next(serial):06d}x{time.time_ns():x}@{domain}>"


def qp(text: str, charset: str = "utf-8") -> str:
    """Quoted-printable with CRLF line ends, as clients write it."""
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode(charset)).decode("ascii")
    return encoded.replace("\n", "\r\n")


def headers_block(headers: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers)


def quoted(text: str) -> str:
    """The original's text as a '> ' quote."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.rstrip("\n").split("\n"))


def gmail_reply(original: Received, words: str, *, sender: str = JOHN, to: str | None = None,
                cc: str | None = None, delivered_to: str | None = None, x_original_to: str | None = None,
                in_reply_to: str | None = "ours", references: str | None = "ours",
                message_id: str | None = None, subject: str | None = None,
                extra: list[tuple[str, str]] | None = None) -> bytes:
    """Gmail's web reply: multipart/alternative, quoted-printable, "On ... wrote:" and a `gmail_quote`."""
    to = original.reply_to if to is None else to
    if in_reply_to == "ours":
        in_reply_to = original.message_id
    if references == "ours":  # the original's References, then its Message-ID (RFC 5322 3.6.4)
        references = f"{original.references}\r\n {original.message_id}".strip()
    attribution = f"On Mon, Sep 2, 2024 at 8:15\u202fAM {original.from_name} <{original.from_address}> wrote:"
    text = f"{words}\n\n{attribution}\n\n{quoted(original.text)}\n"
    words_html = "".join(f"<div>{escape(line) or '<br>'}</div>" for line in words.split("\n"))
    original_html = "<br>".join(escape(line) for line in original.text.rstrip("\n").split("\n"))
    html = (f'<div dir="ltr">{words_html}</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            f"{escape(attribution)}<br></div><blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;"
            f'border-left:1px solid rgb(204,204,204);padding-left:1ex">{original_html}</blockquote></div>\n')
    boundary = f"000000000000{next(serial):012x}"
    headers = [("Return-Path", f"<{email.utils.parseaddr(sender)[1]}>")]
    if delivered_to:
        headers.append(("Delivered-To", delivered_to))
    if x_original_to:
        headers.append(("X-Original-To", x_original_to))
    headers += [
        ("Received", ("from mail-lf1-f41.google.com (mail-lf1-f41.google.com [209.85.167.41])\r\n"
                      f"\tby mx.{DOMAIN} (Postfix) with ESMTPS id 4VtL1x3QZbz9sWf; Mon,  2 Sep 2024 14:31:07 +0000")),
        ("MIME-Version", "1.0"),
    ]
    if references:
        headers.append(("References", references))
    if in_reply_to:
        headers.append(("In-Reply-To", in_reply_to))
    headers += [
        ("From", sender),
        ("Date", "Mon, 2 Sep 2024 10:30:55 -0400"),
        ("Message-ID", message_id or new_message_id("mail.gmail.com")),
        ("Subject", subject or f"Re: {original.subject}"),
        ("To", to),
    ]
    if cc:
        headers.append(("Cc", cc))
    headers += list(extra or [])
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp(text)}\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp(html)}\r\n"
            f"--{boundary}--\r\n")
    return (headers_block(headers) + "\r\n" + body).encode("ascii")


def outlook_html_reply(original: Received, words: str, *, sender: str = JOHN) -> bytes:
    """Outlook on the web: text/html only (windows-1252, quoted-printable), history after `divRplyFwdMsg`."""
    name, address = email.utils.parseaddr(sender)
    style = ("font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; "
             "font-size: 12pt; color: rgb(0, 0, 0);")
    paragraphs = "\n".join(
        f'<div class="elementToProof" style="{style}">\n{escape(line, quote=False) or "<br>"}</div>'
        for line in words.split("\n"))
    original_html = "<br>\n".join(escape(line, quote=False) for line in original.text.rstrip("\n").split("\n"))
    html = (
        '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html; charset=Windows-1252">\n'
        '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>\n'
        f'</head>\n<body dir="ltr">\n{paragraphs}\n<div id="appendonsend"></div>\n'
        '<hr style="display:inline-block;width:98%" tabindex="-1">\n'
        '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">'
        f"<b>From:</b> {escape(original.from_name)} &lt;{original.from_address}&gt;<br>\n"
        "<b>Sent:</b> Monday, September 2, 2024 8:15 AM<br>\n"
        f"<b>To:</b> {escape(name)} &lt;{address}&gt;<br>\n"
        f"<b>Subject:</b> {escape(original.subject)}</font>\n<div>&nbsp;</div>\n</div>\n"
        f"<div>{original_html}</div>\n</body>\n</html>\n"
    )
    headers = [
        ("Received", ("from EUR05-AM6-obe.outbound.protection.outlook.com (mail-am6eur05olkn2081."
                      "outbound.protection.outlook.com [40.92.91.81])\r\n"
                      f"\tby mx.{DOMAIN} (Postfix) with ESMTPS id 4VtWq20kMnz9sWh\r\n"
                      f"\tfor <{original.reply_to}>; Mon,  2 Sep 2024 12:44:18 +0000 (UTC)")),
        ("From", sender),
        ("To", f'"{original.from_name}" <{original.reply_to}>'),
        ("Subject", f"RE: {original.subject}"),
        ("Thread-Topic", original.subject),
        ("Thread-Index", "AQHatmGq3Kd0hYtE0kq3JqfP6yX1ZLG3Rz8A"),
        ("Date", "Mon, 2 Sep 2024 12:44:15 +0000"),
        ("Message-ID", "\r\n " + new_message_id("AM7PR02MB5862.eurprd02.prod.outlook.com")),
        ("References", original.message_id),
        ("In-Reply-To", original.message_id),
        ("Accept-Language", "en-US"),
        ("Content-Language", "en-US"),
        ("X-MS-Has-Attach", ""),
        ("X-MS-TNEF-Correlator", ""),
        ("Content-Type", 'text/html; charset="Windows-1252"'),
        ("Content-Transfer-Encoding", "quoted-printable"),
        ("MIME-Version", "1.0"),
    ]
    return (headers_block(headers) + "\r\n" + qp(html, "cp1252")).encode("ascii")


def iphone_reply(original: Received, words: str, *, sender: str = JOHN, to: str | None = None) -> bytes:
    """iPhone Mail: one text/plain part, "Sent from my iPhone", the attribution inside the quote."""
    text = (f"{words}\n\nSent from my iPhone\n\n"
            f"> On Sep 2, 2024, at 8:15\u202fAM, {original.from_name} <{original.from_address}> wrote:\n>\n"
            f"{quoted(original.text)}\n")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "quoted-printable"),
        ("From", sender),
        ("Mime-Version", "1.0 (1.0)"),
        ("Subject", f"Re: {original.subject}"),
        ("Date", "Mon, 2 Sep 2024 09:02:31 -0400"),
        ("Message-Id", new_message_id("icloud.com")),
        ("References", f"{original.references} {original.message_id}".strip()),
        ("In-Reply-To", original.message_id),
        ("To", to or original.reply_to),
        ("X-Mailer", "iPhone Mail (21G93)"),
    ]
    return (headers_block(headers) + "\r\n" + qp(text)).encode("ascii")


def plain_mail(*, sender: str, to: str, subject: str, text: str, extra: list[tuple[str, str]] | None = None,
               message_id: str | None = None) -> bytes:
    """A fresh message, not a reply: no token, no In-Reply-To, no References."""
    headers = [
        ("From", sender), ("To", to), ("Subject", subject), ("Date", "Tue, 3 Sep 2024 07:12:00 -0400"),
        ("Message-ID", message_id or new_message_id("family.example")), ("MIME-Version", "1.0"),
        *(extra or []),
        ("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit"),
    ]
    return (headers_block(headers) + "\r\n" + text.replace("\n", "\r\n") + "\r\n").encode("utf-8")


async def post_email(client, raw: bytes, *, secret: str | None = SECRET, authorization: str | None = None):
    """Pipe one message to the webhook as an MTA does, then let the stored event be routed."""
    headers = {"Content-Type": "message/rfc822"}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    response = await client.post("/webhooks/email", data=raw, headers=headers)
    await client.app[keys.INBOUND].wait_idle()
    return response


async def accepted(response) -> InboundEvent:
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer["duplicate"] is False
    return await InboundEvent.get(id=answer["id"])


async def inbound_messages(conversation_id: int | None = None) -> list[Message]:
    query = Message.filter(direction="inbound")
    if conversation_id is not None:
        query = query.filter(conversation_id=conversation_id)
    return await query.order_by("id")


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait for an async or plain condition (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------ 1. the ordinary reply


async def test_a_gmail_reply_to_the_reply_address_lands_with_only_the_new_words(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    # What the outbox put on the e-mail: the guardian's client answers to exactly these.
    assert re.fullmatch(rf"reply\+[a-z2-7]{{26}}@{re.escape(DOMAIN)}", original.reply_to)
    assert re.fullmatch(rf"<d\d+\.[0-9a-f]{{16}}@{re.escape(DOMAIN)}>", original.message_id)
    assert original.references == f"<t.{original.token}@{DOMAIN}>"
    words = "Yes, Tom can go on the trip. I'll send the form back with him tomorrow.\n\nThanks,\nJohn"

    response = await post_email(client, gmail_reply(original, words, delivered_to=original.reply_to))

    event = await accepted(response)
    [reply] = await inbound_messages(cid)
    assert reply.body == words  # the "On ... wrote:" line and the quoted history are gone
    assert (reply.routed_by.value, reply.origin.value, reply.author_id, reply.sender_unverified) == (
        "reply_token", "email", await uid("g-john"), False)
    assert "Please sign the permission slip" in reply.original  # the full e-mail is kept for audit
    assert (event.channel, event.outcome.value, event.reason, event.sender) == (
        "email", "routed", "reply_token", "john@family.example")
    assert (event.message_id, event.conversation_id, event.school_id) == (reply.id, cid, people.id)
    # The teacher is told, by e-mail; the guardian does not get their own words back.
    [told] = await Delivery.filter(message=reply)
    assert (told.recipient_id, told.channel, told.address, told.status.value) == (
        await uid("t-rivera"), "email", RIVERA_EMAIL, "queued")
    assert (await Participant.get(conversation_id=cid, user_id=await uid("g-john"))).last_channel == "email"
    assert (await Conversation.get(id=cid)).state is ConversationState.OPEN


async def test_an_empty_reply_with_only_the_quote_is_kept_for_triage_not_posted(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    raw = gmail_reply(original, "")  # "Reply", then "Send" by mistake
    event = await accepted(await post_email(client, raw))
    assert (event.outcome.value, event.conversation_id) == ("unmatched", cid)
    assert "no visible text" in event.reason
    assert await inbound_messages() == []


# ------------------------------------------------------------------ 2. a relay drops "+token"


@pytest.mark.parametrize("threading", ["in_reply_to_and_references", "message_id_only", "token_reference_only"])
async def test_a_relay_that_drops_the_plus_address_still_routes_by_references(client, people, settings, threading):
    # John has two open conversations: his address alone could not tell which one he answers.
    cid = await start(people, settings, subject="Field trip on Friday")
    other = await start(people, settings, sender="t-chen", subject="Math homework")
    original = await mailed("john@family.example", subject="Field trip on Friday")
    in_reply_to, references = {
        "in_reply_to_and_references": ("ours", "ours"),
        "message_id_only": (original.message_id, None),          # some clients write In-Reply-To only
        "token_reference_only": (None, original.references),      # only <t.TOKEN@...> survived
    }[threading]
    raw = gmail_reply(original, "Tom will bring the slip tomorrow.", to=f"Ms. Rivera <reply@{DOMAIN}>",
                      delivered_to=f"reply@{DOMAIN}", in_reply_to=in_reply_to, references=references)
    assert b"reply+" not in raw.split(b"\r\n\r\n")[0]  # no plus-address left in any header

    event = await accepted(await post_email(client, raw))

    [reply] = await inbound_messages()
    assert (reply.conversation_id, reply.body, reply.routed_by.value) == (cid, "Tom will bring the slip tomorrow.",
                                                                          "references")
    assert (reply.author_id, reply.sender_unverified) == (await uid("g-john"), False)
    assert (event.outcome.value, event.reason) == ("routed", "references")
    assert await inbound_messages(other) == []
    assert [d.recipient_id for d in await Delivery.filter(message=reply)] == [await uid("t-rivera")]


@pytest.mark.parametrize("case", ["token_beats_references", "unknown_token_falls_through"])
async def test_the_first_rule_that_resolves_wins(client, people, settings, case):
    trip = await start(people, settings, subject="Field trip on Friday")
    math = await start(people, settings, sender="t-chen", subject="Math homework")
    to_trip = await mailed("john@family.example", subject="Field trip on Friday")
    to_math = await mailed("john@family.example", subject="Math homework")
    # John answers the math e-mail (its In-Reply-To/References) but the To: says otherwise.
    to = to_trip.reply_to if case == "token_beats_references" else f"reply+{'a' * 26}@{DOMAIN}"
    await accepted(await post_email(client, gmail_reply(to_math, "Which one is this for?", to=to)))
    [reply] = await inbound_messages()
    expected = (trip, "reply_token") if case == "token_beats_references" else (math, "references")
    assert (reply.conversation_id, reply.routed_by.value) == expected
    assert reply.author_id == await uid("g-john")


# ------------------------------------------------------------ 3. a shared household mailbox


async def share_address(address: str, *externals: str) -> None:
    for ext in externals:
        await ContactPoint.filter(user_id=await uid(ext), kind="email").update(address=address)


async def test_a_shared_household_address_routes_by_token_and_never_guesses_without_one(
        client, people, settings, auth):
    shared = "smiths@family.example"
    await share_address(shared, "g-john", "g-wei")
    reading = await start(people, settings, to=("g-john",), subject="Tom's reading")
    math = await start(people, settings, sender="t-chen", to=("g-wei",), subject="Tom's math")
    to_john = await mailed(shared, subject="Tom's reading")
    to_wei = await mailed(shared, subject="Tom's math")

    # With the token, the token's person is the author (and the address is theirs: verified).
    await accepted(await post_email(client, gmail_reply(to_wei, "Thank you, we will practise fractions.",
                                                        sender=f"Smith family <{shared}>")))
    await accepted(await post_email(client, gmail_reply(to_john, "He loved the book.",
                                                        sender=f"Smith family <{shared}>")))
    [for_chen] = await inbound_messages(math)
    [for_rivera] = await inbound_messages(reading)
    assert (for_chen.author_id, for_chen.routed_by.value, for_chen.sender_unverified) == (
        await uid("g-wei"), "reply_token", False)
    assert (for_rivera.author_id, for_rivera.routed_by.value, for_rivera.sender_unverified) == (
        await uid("g-john"), "reply_token", False)

    # A fresh e-mail from the shared address, both sharers with an open conversation: never guessed.
    fresh = plain_mail(sender=f"Smith family <{shared}>", to=f"Lincoln Elementary <reply@{DOMAIN}>",
                       subject="Tom is sick today", text="Tom has a fever and will stay home today.\n\nJohn")
    event = await accepted(await post_email(client, fresh))
    assert (event.outcome.value, event.message_id, event.conversation_id, event.school_id) == (
        "unmatched", None, None, people.id)
    assert "2 open conversations" in event.reason
    assert len(await inbound_messages()) == 2
    deliveries_before = await Delivery.all().count()

    listing = await (await client.get("/api/v1/inbound?outcome=unmatched", headers=auth)).json()
    [item] = listing["items"]
    assert (item["id"], item["channel"], item["sender"], item["outcome"]) == (event.id, "email", shared, "unmatched")
    assert item["text"] == "Tom has a fever and will stay home today.\n\nJohn"

    response = await client.post(f"/api/v1/inbound/{event.id}/attach", json={"conversation_id": reading},
                                 headers=auth)
    assert response.status == 201, await response.text()
    attached = await Message.get(id=(await response.json())["message_id"])
    assert (attached.conversation_id, attached.routed_by.value, attached.body) == (
        reading, "triage", "Tom has a fever and will stay home today.\n\nJohn")
    assert (attached.author_id, attached.sender_unverified) == (await uid("g-john"), False)
    event = await InboundEvent.get(id=event.id)
    assert (event.outcome.value, event.reason, event.message_id) == ("routed", "attached by staff", attached.id)
    [told] = await Delivery.filter(message=attached)
    assert told.recipient_id == await uid("t-rivera")
    assert await Delivery.all().count() == deliveries_before + 1


async def test_one_conversation_with_both_sharers_cannot_tell_who_wrote(client, people, settings):
    shared = "smiths@family.example"
    await share_address(shared, "g-john", "g-wei")
    cid = await start(people, settings, to=("g-john", "g-wei"), subject="Parent conference")
    fresh = plain_mail(sender=shared, to=f"reply@{DOMAIN}", subject="Conference time",
                       text="Can we move the conference to 4 pm?")
    event = await accepted(await post_email(client, fresh))
    assert event.outcome.value == "unmatched"
    assert "no open conversation" in event.reason  # the only candidate has both of them in it
    assert await inbound_messages(cid) == []


# ---------------------------------------------------------------- 4. a different address


async def test_a_reply_from_a_work_address_with_the_token_is_routed_but_marked_unverified(
        client, people, settings, auth):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    raw = iphone_reply(original, "I'm at work, but yes: Tom can go.", sender="John Smith <jsmith@acme-corp.example>")

    event = await accepted(await post_email(client, raw))

    [reply] = await inbound_messages(cid)
    assert (reply.body, reply.routed_by.value, reply.author_id, reply.sender_unverified) == (
        "I'm at work, but yes: Tom can go.", "reply_token", await uid("g-john"), True)
    assert (event.outcome.value, event.sender) == ("routed", "jsmith@acme-corp.example")
    # Shown as unverified to staff; the work address is not learned as John's.
    shown = await (await client.get(f"/api/v1/conversations/{cid}", headers=auth)).json()
    [as_shown] = [m for m in shown["messages"] if m["direction"] == "inbound"]
    assert (as_shown["author"], as_shown["sender_unverified"], as_shown["routed_by"], as_shown["channel"]) == (
        "g-john", True, "reply_token", "email")
    assert [(d["recipient"], d["channel"]) for d in as_shown["deliveries"]] == [("t-rivera", "email")]
    assert not await ContactPoint.exists(address="jsmith@acme-corp.example")
    assert [d.recipient_id for d in await Delivery.filter(message=reply)] == [await uid("t-rivera")]


# ------------------------------------------------------------------- 5. Outlook, HTML only


async def test_an_outlook_html_only_reply_keeps_only_the_new_words(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    words = "Hi Ms. Rivera,\n\nTom will be picked up at 1:30 on Thursday for a dentist\u2019s appointment.\n\nJohn Smith"
    raw = outlook_html_reply(original, words)
    assert b"text/plain" not in raw and b"divRplyFwdMsg" in raw

    event = await accepted(await post_email(client, raw))

    [reply] = await inbound_messages(cid)
    assert reply.body == words  # windows-1252 apostrophe decoded; the From/Sent/To block and history gone
    assert TRIP not in reply.body and "From:" not in reply.body
    assert (reply.routed_by.value, reply.author_id, reply.sender_unverified) == ("reply_token", await uid("g-john"),
                                                                                 False)
    assert event.outcome.value == "routed"
    assert [d.recipient_id for d in await Delivery.filter(message=reply)] == [await uid("t-rivera")]


# ------------------------------------------------------------- 6. forwarded to a co-parent


@pytest.mark.parametrize("where", ["cc", "bcc"])
async def test_a_co_parent_answering_a_forward_routes_by_the_token_in_cc_or_the_envelope(
        client, people, settings, where):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    forward_id = new_message_id("mail.gmail.com")  # John forwarded the teacher's e-mail to Maria
    forwarded = (f"---------- Forwarded message ---------\nFrom: {original.from_}\n"
                 f"Date: Mon, Sep 2, 2024 at 8:15 AM\nSubject: {original.subject}\nTo: <john@family.example>\n\n"
                 f"{original.text}")
    body = ("I can drive Tom on Friday, I'll sign the slip tonight.\n\nMaria\n\n"
            "On Mon, Sep 2, 2024 at 9:00 AM John Smith <john@family.example> wrote:\n\n"
            f"> Can you answer this one?\n>\n{quoted(forwarded)}\n")
    extra = [("Cc", original.reply_to)] if where == "cc" else [
        # Bcc leaves no header; the receiving MTA records the envelope recipient.
        ("Delivered-To", original.reply_to), ("X-Original-To", original.reply_to)]
    raw = plain_mail(sender="Maria Smith <maria.smith@gmail.example>", to=JOHN,
                     subject=f"Re: Fwd: {original.subject}", text=body,
                     extra=[("In-Reply-To", forward_id), ("References", forward_id), *extra])

    event = await accepted(await post_email(client, raw))

    [reply] = await inbound_messages(cid)
    assert reply.body == "I can drive Tom on Friday, I'll sign the slip tonight.\n\nMaria"
    # The token names John's place in the conversation; Maria's address is not his: unverified.
    assert (reply.routed_by.value, reply.author_id, reply.sender_unverified) == (
        "reply_token", await uid("g-john"), True)
    assert (event.outcome.value, event.sender) == ("routed", "maria.smith@gmail.example")
    assert [d.recipient_id for d in await Delivery.filter(message=reply)] == [await uid("t-rivera")]


# --------------------------------------------------------------- 7. after the conversation closed


async def test_a_reply_after_close_reopens_the_conversation_and_tells_its_owner(client, people, settings):
    cid = await start(people, settings)
    await Conversation.filter(id=cid).update(state=ConversationState.CLOSED)
    original = await mailed("john@family.example")

    await accepted(await post_email(client, gmail_reply(original, "Sorry, one more question: is lunch provided?")))

    assert (await Conversation.get(id=cid)).state is ConversationState.OPEN
    [reply] = await inbound_messages(cid)
    assert reply.body == "Sorry, one more question: is lunch provided?"
    [entry] = await AuditLog.filter(action="conversation.reopened")
    assert (entry.target, entry.actor, entry.school_id) == (f"conversation:{cid}", f"message:{reply.id}", people.id)
    owner = await Participant.get(conversation_id=cid, is_owner=True)
    [told] = await Delivery.filter(message=reply)
    assert (told.recipient_id, told.channel) == (owner.user_id, "email") and owner.user_id == await uid("t-rivera")


async def test_a_reply_to_an_open_conversation_writes_no_reopen_entry(client, people, settings):
    await start(people, settings)
    await accepted(await post_email(client, gmail_reply(await mailed("john@family.example"), "Thanks!")))
    assert not await AuditLog.exists(action="conversation.reopened")


# ----------------------------------------------------------------------- 8. out of office


def gmail_vacation(original: Received) -> bytes:
    return plain_mail(
        sender=JOHN, to=original.reply_to, subject="Away until 10 September",
        text="Hi, I'm travelling with limited access to email until September 10. I'll reply when I'm back.\n\nJohn",
        extra=[("In-Reply-To", original.message_id), ("References", original.message_id),
               ("Auto-Submitted", "auto-replied"), ("Precedence", "bulk"), ("X-Autoreply", "yes")])


def spanish_ooo(original: Received) -> bytes:
    """An out-of-office that sets no header at all, only a Spanish Outlook subject."""
    return plain_mail(
        sender=JOHN, to=f'"{original.from_name}" <{original.reply_to}>',
        subject="=?iso-8859-1?Q?Respuesta_autom=E1tica:_Field_trip_on_Friday?=",
        text="Gracias por su mensaje. Estoy fuera de la oficina hasta el 17 de septiembre.\n\nUn saludo,\nJohn",
        extra=[("In-Reply-To", original.message_id), ("References", original.message_id)])


@pytest.mark.parametrize("build, reason", [
    (gmail_vacation, "Auto-Submitted: auto-replied"),
    (spanish_ooo, "subject: respuesta automática"),
], ids=["auto-submitted", "spanish-subject"])
async def test_an_out_of_office_is_recorded_and_never_posted_or_answered(client, people, settings, build, reason):
    cid = await start(people, settings)
    await Conversation.filter(id=cid).update(state=ConversationState.CLOSED)
    original = await mailed("john@family.example")
    deliveries, sent = await Delivery.all().count(), await DevOutboxItem.all().count()

    event = await accepted(await post_email(client, build(original)))

    assert (event.outcome.value, event.reason, event.message_id) == ("auto_reply", reason, None)
    assert await inbound_messages() == []
    assert await Delivery.all().count() == deliveries  # nobody told, nothing answered
    await dispatch(settings)
    assert await DevOutboxItem.all().count() == sent
    assert (await Conversation.get(id=cid)).state is ConversationState.CLOSED  # not reopened
    assert (await Participant.get(conversation_id=cid, user_id=await uid("g-john"))).last_channel is None


# ----------------------------------------------------------------------------- 9. bounces


def postfix_dsn(original: Received, *, status: str = "5.1.1", action: str = "failed") -> bytes:
    """Postfix's DSN (RFC 3464) for one of our e-mails, with the returned headers."""
    boundary = "3B6B9C0A12.1725264004/mx.family.example"
    recipient = original.to
    text = (
        "This is the mail system at host mx.family.example.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n\r\n"
        f"<{recipient}>: host mx1.family.example[203.0.113.25] said: 550\r\n"
        f"    {status} <{recipient}>: Recipient address rejected: User unknown\r\n"
        "    in virtual mailbox table (in reply to RCPT TO command)\r\n")
    report = (
        "Reporting-MTA: dns; mx.family.example\r\nX-Postfix-Queue-ID: 3B6B9C0A12\r\n"
        f"X-Postfix-Sender: rfc822; school@{DOMAIN}\r\n"
        "Arrival-Date: Mon,  2 Sep 2024 10:00:02 +0000 (UTC)\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx1.family.example\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address\r\n"
        "    rejected: User unknown in virtual mailbox table\r\n")
    returned = (
        f"Return-Path: <school@{DOMAIN}>\r\nFrom: {original.from_}\r\nTo: {recipient}\r\n"
        f"Reply-To: {original.reply_to}\r\nSubject: {original.subject}\r\n"
        "Date: Mon, 02 Sep 2024 10:00:01 +0000\r\n"
        f"Message-ID: {original.message_id}\r\nReferences: {original.references}\r\nMIME-Version: 1.0\r\n")
    headers = [
        ("Return-Path", "<>"), ("Delivered-To", f"bounces@{DOMAIN}"),
        ("Date", "Mon,  2 Sep 2024 10:00:04 +0000 (UTC)"),
        ("From", "MAILER-DAEMON@mx.family.example (Mail Delivery System)"),
        ("Subject", "Undelivered Mail Returned to Sender"), ("To", f"school@{DOMAIN}"),
        ("Auto-Submitted", "auto-replied"), ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"'),
        ("Content-Transfer-Encoding", "8bit"),
        ("Message-Id", new_message_id("mx.family.example")),
    ]
    body = (
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"{report}\r\n"
        f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{returned}\r\n--{boundary}--\r\n")
    return (headers_block(headers) + "\r\n" + body).encode("utf-8")


async def test_a_dsn_bounce_marks_the_address_and_falls_back_to_sms(client, people, settings):
    cid = await start(people, settings)  # John prefers e-mail and has a phone
    original = await mailed("john@family.example")
    first = await Delivery.get(channel="email", recipient_id=await uid("g-john"))
    assert (first.status.value, first.provider_id) == ("sent", original.message_id)

    event = await accepted(await post_email(client, postfix_dsn(original)))

    assert (event.outcome.value, event.reason) == ("bounce", "5.1.1 failed: 1 address(es) marked")
    assert await inbound_messages() == []
    point = await ContactPoint.get(user_id=await uid("g-john"), kind="email")
    assert point.bouncing_at is not None and point.address == "john@family.example"
    first = await Delivery.get(id=first.id)
    assert (first.status.value, first.error_code) == ("undelivered", "5.1.1")
    assert "User unknown" in first.error_reason
    # The same message goes to John's phone, once.
    [fallback] = await Delivery.filter(message_id=first.message_id, recipient_id=await uid("g-john"), channel="sms")
    assert (fallback.address, fallback.status.value) == ("+14155550143", "queued")
    assert fallback.sender in people.sms_numbers
    await post_email(client, postfix_dsn(original))  # a second report about the same e-mail
    assert await Delivery.filter(message_id=first.message_id, channel="sms").count() == 1
    await dispatch(settings)
    assert await DevOutboxItem.filter(kind="sms", to="+14155550143").count() == 1
    assert (await Conversation.get(id=cid)).state is ConversationState.OPEN

    # The next conversation reaches John by SMS, not at the bouncing address.
    later = await start(people, settings, sender="t-chen", subject="Math homework")
    deliveries = await Delivery.filter(message__conversation_id=later, recipient_id=await uid("g-john"))
    assert [(d.channel, d.address) for d in deliveries] == [("sms", "+14155550143")]


async def test_a_delay_notice_changes_nothing(client, people, settings):
    await start(people, settings)
    original = await mailed("john@family.example")
    event = await accepted(await post_email(client, postfix_dsn(original, status="4.4.1", action="delayed")))
    assert (event.outcome.value, event.reason) == ("bounce", "4.4.1 delayed: 0 address(es) marked")
    assert (await ContactPoint.get(user_id=await uid("g-john"), kind="email")).bouncing_at is None
    assert not await Delivery.exists(channel="sms", recipient_id=await uid("g-john"))


async def test_a_bounce_marks_a_shared_household_address_for_everyone_who_has_it(client, people, settings):
    shared = "smiths@family.example"
    await share_address(shared, "g-john", "g-wei")
    await start(people, settings, to=("g-john",), subject="Tom's reading")
    event = await accepted(await post_email(client, postfix_dsn(await mailed(shared))))
    assert event.outcome.value == "bounce"
    assert [cp.bouncing_at is not None for cp in await ContactPoint.filter(kind="email", address=shared)] == [True, True]
    # Wei's next conversation does not go to the dead mailbox again.
    later = await start(people, settings, sender="t-chen", to=("g-wei",), subject="Tom's math")
    deliveries = await Delivery.filter(message__conversation_id=later, recipient_id=await uid("g-wei"))
    assert [(d.channel, d.address) for d in deliveries] == [("sms", "+14155550144")]


# ------------------------------------------------------------------------ 10. loops, daemons


async def test_mail_from_our_own_reply_domain_is_a_loop_and_is_not_posted(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    # Something on our side (another gateway, a misrouted notification) writes from the reply domain.
    raw = plain_mail(sender=f"Lincoln Elementary <school@{DOMAIN}>", to=original.reply_to, subject=original.subject,
                     text="Ms. Rivera wrote a new message.", extra=[("Delivered-To", original.reply_to)])
    deliveries = await Delivery.all().count()

    event = await accepted(await post_email(client, raw))

    assert (event.outcome.value, event.reason) == ("rejected", "loop: mail from our own reply domain")
    assert await inbound_messages(cid) == []
    assert await Delivery.all().count() == deliveries


async def test_our_own_email_redirected_back_is_a_loop_even_when_smtp_from_is_elsewhere(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    assert not original.from_address.endswith("@" + DOMAIN)  # SMTP_FROM on another domain than replies
    # John's "redirect everything" rule sends our e-mail, Message-ID and all, back to its Reply-To.
    raw = plain_mail(sender=original.from_, to=original.to, subject=original.subject, text=original.text,
                     message_id=original.message_id,
                     extra=[("Delivered-To", original.reply_to), ("Resent-From", "john@family.example"),
                            ("Resent-To", original.reply_to), ("References", original.references)])
    deliveries = await Delivery.all().count()

    event = await accepted(await post_email(client, raw))

    assert event.outcome.value == "rejected" and event.reason.startswith("loop:")
    assert await inbound_messages(cid) == []  # the teacher's own words are not echoed as John's reply
    assert await Delivery.all().count() == deliveries


async def test_a_mailer_daemon_notice_that_is_not_a_dsn_is_an_auto_reply(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    raw = plain_mail(sender="Mail Delivery Subsystem <MAILER-DAEMON@mx.family.example>", to=original.reply_to,
                     subject="Warning: message delayed",
                     text="Your message has not been delivered yet. The mail system will keep trying.\n",
                     extra=[("In-Reply-To", original.message_id)])
    event = await accepted(await post_email(client, raw))
    assert (event.outcome.value, event.reason) == ("auto_reply", "sender: mailer-daemon")
    assert await inbound_messages(cid) == []
    assert (await ContactPoint.get(user_id=await uid("g-john"), kind="email")).bouncing_at is None


# ------------------------------------------------------------------------ 11. duplicates


async def test_the_same_message_id_twice_makes_one_event_and_one_message(client, people, settings):
    cid = await start(people, settings)
    raw = gmail_reply(await mailed("john@family.example"), "See you Friday.")

    first = await post_email(client, raw)
    again = await post_email(client, raw)  # the MTA did not see our 202 and retried
    assert (first.status, again.status) == (202, 202)
    first_json, again_json = await first.json(), await again.json()
    assert (first_json["duplicate"], again_json["duplicate"]) == (False, True)
    assert again_json["id"] == first_json["id"]
    # The IMAP reader re-reading the same message after a crash is a duplicate as well.
    await imap_sink(client.app[keys.INBOUND], settings.max_email_bytes)(raw)
    await client.app[keys.INBOUND].wait_idle()

    assert await InboundEvent.filter(channel="email").count() == 1
    [reply] = await inbound_messages(cid)
    assert await Delivery.filter(message=reply).count() == 1


async def test_a_message_without_message_id_is_deduplicated_by_its_bytes(client, people, settings):
    cid = await start(people, settings)
    raw = gmail_reply(await mailed("john@family.example"), "No Message-ID here.")
    raw = re.sub(rb"Message-ID: <[^>]+>\r\n", b"", raw)
    first = await accepted(await post_email(client, raw))
    assert first.provider_id.startswith("sha256:")
    assert (await (await post_email(client, raw)).json())["duplicate"] is True
    assert len(await inbound_messages(cid)) == 1


# ------------------------------------------------------------------------ 12. bad input


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-secret", f"Basic {SECRET}", f"Bearer {SECRET}x"],
                         ids=["missing", "wrong", "not-bearer", "longer"])
async def test_a_wrong_or_missing_secret_is_401_and_stored_as_rejected(client, people, settings, authorization):
    cid = await start(people, settings)
    raw = gmail_reply(await mailed("john@family.example"), "Forged or misconfigured.")
    response = await post_email(client, raw, secret=None, authorization=authorization)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    [event] = await InboundEvent.all()
    assert (event.channel, event.outcome.value, event.reason) == ("email", "rejected", "bad or missing bearer secret")
    assert "Forged or misconfigured." in event.payload
    assert await inbound_messages(cid) == []


async def test_without_a_configured_secret_the_webhook_refuses_everything(make_client, people, settings):
    client = await make_client()  # GATEWAY_INBOUND_EMAIL_SECRET unset
    cid = await start(people, settings)
    response = await post_email(client, gmail_reply(await mailed("john@family.example"), "Hello?"),
                                authorization="Bearer ")
    assert response.status == 401
    [event] = await InboundEvent.all()
    assert (event.outcome.value, event.reason) == ("rejected", "the inbound e-mail webhook is not configured")
    assert await inbound_messages(cid) == []


async def test_broken_mime_from_a_guardian_is_stored_and_routed(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    words = "Ella has a cold, she might not make it on Friday. I'll let you know Thursday.\n\nJohn"
    raw = (headers_block([
        ("From", JOHN), ("To", original.reply_to), ("Subject", f"Re: {original.subject}"),
        ("Date", "Mon, 2 Sep 2024 19:02:11 +0100"), ("Message-ID", new_message_id("family.example")),
        ("In-Reply-To", original.message_id), ("MIME-Version", "1.0"),
        # The declared boundary never appears: the client wrote another one.
        ("Content-Type", 'multipart/alternative; boundary="----=_Part_1_1717437731"'), ("X-Mailer", "HomeMailer 2.1"),
    ]) + "\r\n------=_Part_2_1717437731\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + words.replace("\n", "\r\n") + "\r\n------=_Part_2_1717437731--\r\n").encode()

    event = await accepted(await post_email(client, raw))

    assert (event.outcome.value, event.reason) == ("routed", "reply_token")
    assert any(p.startswith("broken MIME") for p in event.normalized["problems"])
    [reply] = await inbound_messages(cid)
    assert reply.body == words
    assert reply.author_id == await uid("g-john")


async def test_non_utf8_eight_bit_headers_are_read_and_routed(client, people, settings):
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    raw = (b"From: H\xe9l\xe8ne Smith <john@family.example>\r\n"
           b"To: Mme Lef\xe8vre <" + original.reply_to.encode() + b">\r\n"
           b"Subject: Re: R\xe9union - absence de Chlo\xe9 jeudi\r\n"
           b"Date: Thu, 5 Sep 2024 07:55:40 +0200\r\n"
           b"Message-ID: " + new_message_id("orange.fr").encode() + b"\r\n"
           b"In-Reply-To: " + original.message_id.encode() + b"\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n"
           b"Bonjour Madame,\r\n\r\nChlo\xe9 sera absente jeudi matin.\r\n")

    event = await accepted(await post_email(client, raw))

    assert event.outcome.value == "routed"
    assert event.normalized["subject"] == "Re: Réunion - absence de Chloé jeudi"
    assert event.normalized["sender_name"] == "Hélène Smith"
    [reply] = await inbound_messages(cid)
    assert reply.body == "Bonjour Madame,\n\nChloé sera absente jeudi matin."
    assert (reply.author_id, reply.sender_unverified) == (await uid("g-john"), False)


async def test_header_injection_attempts_are_stored_and_cannot_steer_routing(client, people, settings):
    johns = await start(people, settings, to=("g-john",), subject="Tom's reading")
    weis = await start(people, settings, sender="t-chen", to=("g-wei",), subject="Tom's math")
    to_john = await mailed("john@family.example")
    to_wei = await mailed("wei@family.example")
    # Encoded CR/LF trying to add a Bcc; two From fields and two From addresses; John's token hidden
    # in a display name (it is no address); two ids in Message-ID; the real address is Wei's.
    encoded_john = to_john.reply_to.replace("@", "=40")
    raw = headers_block([
        ("Return-Path", "<mallory@evil.example>"),
        ("From", ("=?utf-8?q?Principal_Office=0D=0ABcc=3A_all-parents=40lincoln-elementary=2Eorg?= "
                  "<mallory@evil.example>, rivera@school.example")),
        ("From", "rivera@school.example"),
        ("To", f"=?utf-8?q?{encoded_john}?= <mallory-drop@evil.example>, {to_wei.reply_to}"),
        ("Subject", "=?utf-8?b?VXJnZW50DQpCY2M6IGFsbC1wYXJlbnRzQGxpbmNvbG4tZWxlbWVudGFyeS5vcmcNCg0KSGVsbG8=?="),
        ("Message-ID", "<inj-1@evil.example> <second@evil.example>"),
        ("Date", "Thu, 5 Sep 2024 03:03:03 +0000"), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]).encode() + b"\r\nPlease click the link.\r\n"

    event = await accepted(await post_email(client, raw))

    assert event.provider_id.startswith("sha256:")  # two ids are no Message-ID we trust
    assert "\r" not in event.normalized["subject"] and "\n" not in event.normalized["subject"]
    assert "\n" not in event.normalized["sender_name"]
    assert any("header injection" in p for p in event.normalized["problems"])
    assert (event.outcome.value, event.sender) == ("routed", "mallory@evil.example")
    assert await inbound_messages(johns) == []
    [reply] = await inbound_messages(weis)
    assert (reply.author_id, reply.sender_unverified, reply.body) == (
        await uid("g-wei"), True, "Please click the link.")
    [told] = await Delivery.filter(message=reply)  # only Mr. Chen; no Bcc to anyone
    assert (told.recipient_id, told.address) == (await uid("t-chen"), CHEN_EMAIL)


def with_attachment(raw: bytes, size: int) -> bytes:
    """The same reply with a scanned permission slip attached (base64, `size` bytes of PDF)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    head_text = head.decode()
    content_type = re.search(r"^Content-Type: (.*)$", head_text, re.MULTILINE).group(1)
    head_text = head_text.replace(f"Content-Type: {content_type}",
                                  'Content-Type: multipart/mixed; boundary="mixed-outer"')
    pdf = base64.encodebytes(b"%PDF-1.7\n" + bytes(range(256)) * (size // 256)).replace(b"\n", b"\r\n")
    return (head_text.encode() + b"\r\n\r\n--mixed-outer\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n"
            + body + b"\r\n--mixed-outer\r\nContent-Type: application/pdf; name=\"slip.pdf\"\r\n"
            b"Content-Disposition: attachment; filename=\"slip.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + pdf + b"\r\n--mixed-outer--\r\n")


async def test_a_message_over_the_size_limit_is_413_and_stored_as_rejected(make_client, people, settings):
    client = await make_client(inbound_email_secret=SECRET, max_email_bytes=50_000)
    cid = await start(people, settings)
    raw = with_attachment(gmail_reply(await mailed("john@family.example"), "Signed slip attached."), 80_000)
    assert len(raw) > 100_000

    response = await post_email(client, raw)

    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    [event] = await InboundEvent.all()
    assert event.outcome.value == "rejected"
    assert event.reason.startswith("oversized"), event.reason
    assert "Signed slip attached." in event.payload  # what was read is kept for a person to look at
    assert await inbound_messages(cid) == []


async def test_a_message_within_the_size_limit_with_an_attachment_is_routed(make_client, people, settings):
    client = await make_client(inbound_email_secret=SECRET, max_email_bytes=50_000)
    cid = await start(people, settings)
    raw = with_attachment(gmail_reply(await mailed("john@family.example"), "Signed slip attached."), 20_000)
    assert len(raw) < 50_000
    event = await accepted(await post_email(client, raw))
    assert event.outcome.value == "routed"
    assert [m.body for m in await inbound_messages(cid)] == ["Signed slip attached."]


async def test_an_oversized_message_read_by_imap_is_stored_as_rejected(people, settings):
    cid = await start(people, settings)
    raw = with_attachment(gmail_reply(await mailed("john@family.example"), "Signed slip attached."), 80_000)
    processor = InboundProcessor({DOMAIN})
    await imap_sink(processor, 50_000)(raw)
    await processor.wait_idle()
    [event] = await InboundEvent.all()
    assert (event.outcome.value, event.normalized["received_via"]) == ("rejected", "imap")
    assert event.reason == f"oversized: {len(raw)} bytes > limit 50000"
    assert await inbound_messages(cid) == []


# ------------------------------------------------------------------------- 13. IMAP, for real


async def test_a_reply_appended_to_the_mailbox_is_read_by_the_app_and_reaches_the_teacher(
        make_client, people, settings, server):
    box = server.new_mailbox()
    cid = await start(people, settings)
    original = await mailed("john@family.example")
    client = await make_client(inbound_email_secret=SECRET, imap=box.settings, run_worker=True)
    raw = gmail_reply(original, "Tom will bring the slip tomorrow.", delivered_to=original.reply_to)

    await box.append([raw])

    await until(lambda: Message.exists(conversation_id=cid, direction="inbound"))
    await client.app[keys.INBOUND].wait_idle()
    [reply] = await inbound_messages(cid)
    assert (reply.body, reply.routed_by.value, reply.author_id) == (
        "Tom will bring the slip tomorrow.", "reply_token", await uid("g-john"))
    event = await InboundEvent.get(message_id=reply.id)
    assert (event.outcome.value, event.normalized["received_via"]) == ("routed", "imap")
    # The app's own dispatcher tells the teacher.
    await until(lambda: DevOutboxItem.exists(kind="email", to=RIVERA_EMAIL))
    told = await DevOutboxItem.get(kind="email", to=RIVERA_EMAIL)
    assert "Tom will bring the slip tomorrow." in told.body
    # Read means moved out of the INBOX, marked seen.
    await until(lambda: _inbox_empty(box))
    [processed] = await box.list("Processed")
    assert processed.raw == raw and "\\Seen" in processed.flags


async def _inbox_empty(box) -> bool:
    return await box.list("INBOX") == []


async def test_the_message_leaves_the_inbox_only_after_it_was_stored(people, settings, server):
    box = server.new_mailbox()
    cid = await start(people, settings)
    raw = gmail_reply(await mailed("john@family.example"), "Yes, he can go.")
    await box.append([raw])
    processor = InboundProcessor({DOMAIN})
    store = imap_sink(processor, settings.max_email_bytes)
    seen_while_storing: list[tuple[int, list[str]]] = []

    async def watching(data: bytes) -> None:
        await store(data)
        # Committed, and still unread in the INBOX: nothing is marked before the row exists.
        inbox = await box.list("INBOX")
        seen_while_storing.append((await InboundEvent.all().count(), [sorted(m.flags) for m in inbox]))

    assert await ImapReader(box.settings, watching, timeout=5).run_once() == 1
    await processor.wait_idle()

    assert seen_while_storing == [(1, [[]])]
    assert await box.list("INBOX") == []
    assert [m.raw for m in await box.list("Processed")] == [raw]
    assert [m.body for m in await inbound_messages(cid)] == ["Yes, he can go."]


class Dead(InboundProcessor):
    """A processor in a process that is about to die: it never gets to route anything."""

    def schedule(self, event_id: int) -> None:
        return None


async def test_killed_between_storing_and_marking_the_reply_is_processed_exactly_once(people, settings, server):
    box = server.new_mailbox()
    cid = await start(people, settings)
    raw = gmail_reply(await mailed("john@family.example"), "Exactly once, please.")
    await box.append([raw])
    stored = asyncio.Event()
    store = imap_sink(Dead({DOMAIN}), settings.max_email_bytes)

    async def store_then_die(data: bytes) -> None:
        await store(data)           # the row is committed...
        stored.set()
        await asyncio.Event().wait()  # ...and the process is killed before the reader marks the mail

    stop = asyncio.Event()
    task = asyncio.create_task(ImapReader(box.settings, store_then_die, timeout=5).run(stop))
    await asyncio.wait_for(stored.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    [left] = await box.list("INBOX")
    assert "\\Seen" not in left.flags
    [event] = await InboundEvent.all()
    assert event.outcome.value == "received"  # stored, never routed

    # The restarted worker: its reader hands the mail over again, its sweeper routes the stored row.
    processor = InboundProcessor({DOMAIN})
    assert await ImapReader(box.settings, imap_sink(processor, settings.max_email_bytes), timeout=5).run_once() == 1
    await processor.wait_idle()
    assert await processor.sweep(older_than=timedelta(0)) == 1
    assert await processor.sweep(older_than=timedelta(0)) == 0

    [event] = await InboundEvent.all()
    assert (event.outcome.value, event.reason) == ("routed", "reply_token")
    [reply] = await inbound_messages(cid)
    assert reply.body == "Exactly once, please."
    assert await Delivery.filter(message=reply).count() == 1
    assert await box.list("INBOX") == []
    assert await ImapReader(box.settings, imap_sink(processor, settings.max_email_bytes), timeout=5).run_once() == 0


async def test_an_oversized_message_in_the_mailbox_is_stored_as_rejected_and_moved(people, settings, server):
    box = server.new_mailbox()
    cid = await start(people, settings)
    raw = with_attachment(gmail_reply(await mailed("john@family.example"), "Signed slip attached."), 80_000)
    await box.append([raw])
    processor = InboundProcessor({DOMAIN})
    assert await ImapReader(box.settings, imap_sink(processor, 50_000), timeout=5).run_once() == 1
    await processor.wait_idle()
    [event] = await InboundEvent.all()
    assert event.outcome.value == "rejected" and event.reason.startswith("oversized:")
    assert await inbound_messages(cid) == []
    assert await box.list("INBOX") == []  # handled (kept as a row), so not read again and again


# --------------------------------------------------------------------------- 14. cross-channel


async def test_a_guardian_texted_may_answer_by_email_and_the_teacher_answers_by_email(client, people, settings):
    cid = await start(people, settings, to=("g-ana",), subject="Lucía's reading")  # Ana prefers SMS
    assert [d.channel for d in await Delivery.filter(recipient_id=await uid("g-ana"))] == ["sms"]
    assert not await DevOutboxItem.exists(kind="email", to="ana@family.example")
    # She writes from her known address to the school's general address (no token, no references).
    raw = plain_mail(sender=ANA, to="Lincoln Elementary <office@lincoln.example>", subject="Lectura de Lucía",
                     text="Prefiero el correo. Lucía lee cada noche.\n\nAna",
                     extra=[("Delivered-To", f"reply@{DOMAIN}")])

    event = await accepted(await post_email(client, raw))

    assert (event.outcome.value, event.reason) == ("routed", "sender_fallback")
    [reply] = await inbound_messages(cid)
    assert (reply.body, reply.routed_by.value, reply.author_id, reply.sender_unverified) == (
        "Prefiero el correo. Lucía lee cada noche.\n\nAna", "sender_fallback", await uid("g-ana"), False)
    assert (await Participant.get(conversation_id=cid, user_id=await uid("g-ana"))).last_channel == "email"

    message, _ = await post_staff_reply(people, cid, sender_external_id="t-rivera", body="¡Gracias, Ana!",
                                        secret_key=settings.secret_key)
    [delivery] = await Delivery.filter(message=message)
    assert (delivery.channel, delivery.address) == ("email", "ana@family.example")
    await dispatch(settings)
    answer = await mailed("ana@family.example")
    assert answer.reply_to and "¡Gracias, Ana!" in answer.text  # she can now reply with a token


async def test_with_two_open_conversations_a_tokenless_email_is_not_guessed(client, people, settings):
    await start(people, settings, to=("g-ana",), subject="Lucía's reading")
    await start(people, settings, sender="t-chen", to=("g-ana",), subject="Lucía's math")
    raw = plain_mail(sender=ANA, to=f"reply@{DOMAIN}", subject="Pregunta", text="¿Cuál de las dos?")
    event = await accepted(await post_email(client, raw))
    assert event.outcome.value == "unmatched" and "2 open conversations" in event.reason
    assert await inbound_messages() == []


# ----------------------------------------------------- every sample client message, and garbage


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
GARBAGE = [b"", b"\xff\xfe\x00\x01 not mail at all \x80\x81", b"From: \r\nTo: <>\r\n\r\n", b"\r\n\r\n\r\n",
           b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n" * 50]


SAMPLE_OUTCOMES = {  # their reply tokens and senders are not ours: nothing to route them to
    "exchange_dsn": "bounce", "postfix_dsn_5_1_1": "bounce", "qmail_bounce": "bounce",
    "exchange_ooo_spanish": "auto_reply", "gmail_vacation": "auto_reply", "mailing_list": "auto_reply",
}


async def test_every_sample_message_and_garbage_is_stored_with_an_outcome_never_a_500(client, people):
    samples = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))}
    assert len(samples) >= 15
    samples.update({f"garbage-{i}": raw for i, raw in enumerate(GARBAGE)})
    ids = {}
    for name, raw in samples.items():
        response = await post_email(client, raw)
        assert response.status == 202, (name, response.status, await response.text())
        ids[name] = (await response.json())["id"]
    for name, event_id in ids.items():
        event = await InboundEvent.get(id=event_id)
        assert (name, event.outcome.value) == (name, SAMPLE_OUTCOMES.get(name, "unmatched")), event.reason
        assert event.processed_at is not None and event.payload is not None
    assert await InboundEvent.all().count() == len(samples)
    assert await inbound_messages() == []


async def test_bad_messages_in_the_mailbox_never_stall_the_reader(people, settings, server):
    box = server.new_mailbox()
    cid = await start(people, settings)
    good = gmail_reply(await mailed("john@family.example"), "After the junk, my answer.")
    bad = [(FIXTURES / f"{name}.eml").read_bytes()
           for name in ("header_injection", "latin1_subject", "broken_boundary", "no_message_id")]
    bad += [raw for raw in GARBAGE if raw.strip()]
    await box.append([*bad, good])
    processor = InboundProcessor({DOMAIN})

    reader = ImapReader(box.settings, imap_sink(processor, settings.max_email_bytes), timeout=5)
    assert await reader.run_once() == len(bad) + 1
    await processor.wait_idle()

    assert await InboundEvent.filter(outcome="received").count() == 0
    assert await InboundEvent.all().count() == len(bad) + 1
    assert [m.body for m in await inbound_messages(cid)] == ["After the junk, my answer."]
    assert await box.list("INBOX") == []


async def test_an_unknown_sender_writing_to_the_reply_address_is_listed_for_triage(client, people, settings, auth):
    cid = await start(people, settings)
    raw = plain_mail(sender="Rosa García <abuela.rosa@example.org>", to=f"Lincoln Elementary <reply@{DOMAIN}>",
                     subject="Recojo a Lucía", text="Soy la abuela de Lucía; la recojo yo el viernes.")
    event = await accepted(await post_email(client, raw))
    assert (event.outcome.value, event.reason) == (
        "unmatched", "nothing to route by, and the sender is not in the directory")
    listing = await (await client.get("/api/v1/inbound?outcome=unmatched", headers=auth)).json()
    assert [item["id"] for item in listing["items"]] == [event.id]
    response = await client.post(f"/api/v1/inbound/{event.id}/attach", json={"conversation_id": cid}, headers=auth)
    assert response.status == 201
    attached = await Message.get(id=(await response.json())["message_id"])
    assert (attached.author_id, attached.sender_unverified, attached.routed_by.value) == (None, True, "triage")


async def test_with_two_schools_on_one_reply_domain_an_unknown_sender_is_put_on_neither_list(
        client, people, settings, auth):
    from gateway.directory.schools import create_api_key

    _, other_key = await create_api_key("other-school")
    raw = plain_mail(sender="someone@example.org", to=f"reply@{DOMAIN}", subject="Hello", text="Which school is this?")
    event = await accepted(await post_email(client, raw))
    assert (event.outcome.value, event.school_id) == ("unmatched", None)  # kept, but never shown to the wrong school
    for key in (auth, {"Authorization": f"Bearer {other_key}"}):
        assert (await (await client.get("/api/v1/inbound", headers=key)).json())["items"] == []


# ------------------------------------------------------------- staff answering from their mail client


async def test_a_teacher_answering_the_notification_by_email_reaches_the_guardian(client, people, settings):
    cid = await start(people, settings)
    await accepted(await post_email(client, gmail_reply(await mailed("john@family.example"), "Is lunch provided?")))
    await dispatch(settings)  # Ms. Rivera is told by e-mail, with a reply address of her own
    notification = await mailed(RIVERA_EMAIL)
    assert "Is lunch provided?" in notification.text
    assert notification.token != (await mailed("john@family.example")).token

    raw = outlook_html_reply(notification, "Yes, the school provides lunch.\n\nMs. Rivera",
                             sender=f"Ms. Rivera <{RIVERA_EMAIL}>")
    event = await accepted(await post_email(client, raw))

    assert (event.outcome.value, event.reason) == ("routed", "reply_token")
    [_question, answer] = await Message.filter(conversation_id=cid, origin="email").order_by("id")
    assert (answer.author_id, answer.body, answer.sender_unverified) == (
        await uid("t-rivera"), "Yes, the school provides lunch.\n\nMs. Rivera", False)
    [to_john] = await Delivery.filter(message=answer)  # to the guardian, not back to the teacher
    assert (to_john.recipient_id, to_john.channel, to_john.address) == (
        await uid("g-john"), "email", "john@family.example")
