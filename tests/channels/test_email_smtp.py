"""SmtpEmailChannel against a real (aiosmtpd) SMTP server: what arrives, and how failures map."""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.channels import email_smtp
from gateway.channels.base import (
    ChannelKind,
    ContactProblem,
    OutboundEmail,
    PermanentSendError,
    TransientSendError,
)
from gateway.channels.email_mime import build_mime
from gateway.channels.email_smtp import SmtpEmailChannel
from tests.fakes.smtp import FakeSmtp

SUBJECT = "Reunión de padres: ¿mañana a las 18 h? 🎓"
TEXT = "Hola, Sra. Núñez:\n\nLe recordamos la reunión de mañana en el salón Añil. 🎓\n\nGracias.\n"
HTML = "<p>Hola, Sra. Núñez:</p><p>Le recordamos la reunión de mañana en el salón <b>Añil</b>. 🎓</p>"
UNSUBSCRIBE_URL = "https://gw.colegio.example.org/unsubscribe/" + "a1B2c3D4" * 12  # > 78 chars


def make_item(**changes: object) -> OutboundEmail:
    item = OutboundEmail(
        to="Ana Núñez <ana@example.org>",
        from_="Colegio San José <avisos@colegio.example.org>",
        subject=SUBJECT,
        text=TEXT,
        html=HTML,
        message_id="<d.1f3a9c@colegio.example.org>",
        reply_to="Colegio San José <reply+c42.9f8e@colegio.example.org>",
        references=("<orig.1@colegio.example.org>", "<reply.2@example.org>"),
        headers=(
            ("Auto-Submitted", "auto-generated"),
            ("List-Unsubscribe", f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@colegio.example.org>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ),
        reference="delivery-1",
    )
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


@pytest.fixture
async def channel(fake_smtp: FakeSmtp) -> AsyncIterator[SmtpEmailChannel]:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, timeout=5.0, local_hostname="gw.test")
    yield ch
    await ch.close()


# --- what arrives ----------------------------------------------------------------------------------


async def test_multipart_text_and_html_survive_the_trip_in_utf8(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    result = await channel.send(make_item())

    assert result.provider_id == "<d.1f3a9c@colegio.example.org>"
    assert channel.kind is ChannelKind.EMAIL
    [got] = fake_smtp.received
    assert got.mail_from == "avisos@colegio.example.org"
    assert got.rcpt_tos == ("ana@example.org",)
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == SUBJECT
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    # An 8bit body keeps the wire's CRLF line ends when parsed from bytes; compare the text.
    assert plain.get_content().replace("\r\n", "\n") == TEXT
    assert html.get_content().rstrip("\r\n") == HTML
    # The header block itself is 7-bit: the subject travelled as RFC 2047 encoded-words.
    assert header_block(got.raw).isascii()
    assert b"=?utf-8?" in header_block(got.raw)


async def test_text_only_is_a_single_text_part(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(html=None))

    msg = fake_smtp.received[0].message
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == TEXT


async def test_threading_and_list_headers_are_present(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item())

    [got] = fake_smtp.received
    msg = got.message
    assert msg["Message-ID"] == "<d.1f3a9c@colegio.example.org>"
    assert msg["Reply-To"].addresses[0].addr_spec == "reply+c42.9f8e@colegio.example.org"
    assert msg["References"] == "<orig.1@colegio.example.org> <reply.2@example.org>"
    assert msg["In-Reply-To"] == "<reply.2@example.org>"  # the parent = last of References
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@colegio.example.org>"
    )
    assert msg["Date"] is not None
    # The long URL was folded at a space, not turned into an encoded-word a client cannot use.
    assert f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>,\r\n <mailto:".encode() in got.raw


async def test_without_references_there_is_no_in_reply_to(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(references=(), reply_to=None))

    msg = fake_smtp.received[0].message
    assert "References" not in msg and "In-Reply-To" not in msg and "Reply-To" not in msg


async def test_non_ascii_display_name_is_rfc2047_encoded(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(to="Ñandú Pérez 🎓 <nandu@example.org>"))

    [got] = fake_smtp.received
    to_line = next(line for line in header_block(got.raw).split(b"\r\n") if line.startswith(b"To:"))
    assert to_line.isascii() and b"=?utf-8?" in to_line and b"<nandu@example.org>" in to_line
    assert got.message["To"].addresses[0].display_name == "Ñandú Pérez 🎓"


async def test_idna_domain_goes_out_as_a_labels(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(to="ana@colegio-añil.es"))

    [got] = fake_smtp.received
    assert got.rcpt_tos == ("ana@xn--colegio-ail-9db.es",)
    assert got.message["To"].addresses[0].domain == "xn--colegio-ail-9db.es"


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hola\r\nBcc: x@evil.example"},
        {"subject": "Hola\nBcc: x@evil.example"},
        {"to": "ana@example.org\r\nBcc: x@evil.example"},
        {"to": "Ana\r\nBcc: x@evil.example <ana@example.org>"},
        {"from_": "avisos@colegio.example.org\rBcc: x@evil.example"},
        {"reply_to": "r@colegio.example.org\r\nBcc: x@evil.example"},
        {"message_id": "<a@b>\r\nBcc: x@evil.example"},
        {"references": ("<a@b>\r\nBcc: x@evil.example",)},
        {"headers": (("List-Unsubscribe", "<https://x.example>\r\nBcc: x@evil.example"),)},
        {"headers": (("X-Evil\r\nBcc", "x@evil.example"),)},
    ],
    ids=lambda c: next(iter(c)),
)
async def test_header_injection_is_refused_and_nothing_is_sent(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp, changes: dict[str, object]
) -> None:
    with pytest.raises(PermanentSendError) as caught:
        await channel.send(make_item(**changes))

    assert caught.value.code == "invalid-message" and caught.value.problem is None
    assert fake_smtp.received == []
    assert fake_smtp.connections == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"to": "ana@example.org, eve@example.org"},  # one item, one recipient
        {"to": "not an address"},
        {"to": "josé@example.org"},  # would need SMTPUTF8
        {"message_id": "d.1f3a9c@colegio.example.org"},  # no angle brackets
        {"headers": (("Bcc", "eve@example.org"),)},  # reserved: set by build_mime or forbidden
        {"headers": (("Subject", "second subject"),)},
        {"headers": (("List-Unsubscribe", "<https://x.example/" + "a" * 1000 + ">"),)},  # > 998
        {"references": ("<ñ@example.org>",)},  # msg-id is ASCII
    ],
    ids=str,
)
def test_build_mime_rejects_what_it_cannot_send_faithfully(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_mime(make_item(**changes))


# --- connection reuse ------------------------------------------------------------------------------


async def test_twenty_concurrent_sends_over_a_pool_of_two_use_at_most_two_connections(
    fake_smtp: FakeSmtp,
) -> None:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, pool_size=2, local_hostname="gw.test")
    try:
        items = [make_item(message_id=f"<m{i}@colegio.example.org>") for i in range(20)]
        results = await asyncio.gather(*(ch.send(item) for item in items))
    finally:
        await ch.close()

    assert [r.provider_id for r in results] == [item.message_id for item in items]
    assert sorted(r.message["Message-ID"] for r in fake_smtp.received) == sorted(
        item.message_id for item in items
    )
    assert 1 <= fake_smtp.connections <= 2


async def test_sequential_sends_reuse_one_connection(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    for i in range(5):
        await channel.send(make_item(message_id=f"<s{i}@colegio.example.org>"))

    assert len(fake_smtp.received) == 5
    assert fake_smtp.connections == 1


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(message_id="<before@colegio.example.org>"))
    fake_smtp.drop_idle()
    await asyncio.sleep(0.05)  # let the client see the EOF, as it would during a real idle period

    await channel.send(make_item(message_id="<after@colegio.example.org>"))

    assert [r.message["Message-ID"] for r in fake_smtp.received] == [
        "<before@colegio.example.org>",
        "<after@colegio.example.org>",
    ]
    assert fake_smtp.connections == 2


async def test_a_connection_idle_too_long_is_replaced_before_use(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_smtp, "_MAX_IDLE_SECONDS", 0.0)  # every pause counts as too long

    await channel.send(make_item())
    await channel.send(make_item())

    assert len(fake_smtp.received) == 2
    assert fake_smtp.connections == 2


async def test_a_connection_lost_under_the_next_command_is_retried_once_on_a_new_one(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    await channel.send(make_item(message_id="<before@colegio.example.org>"))
    # The close races our MAIL FROM: the client only learns of it from that command.
    fake_smtp.drop_next(stage="mail")

    await channel.send(make_item(message_id="<after@colegio.example.org>"))

    assert len(fake_smtp.received) == 2
    assert fake_smtp.connections == 2


async def test_only_one_retry_then_transient_connection(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    fake_smtp.drop_next(stage="mail", times=2)

    with pytest.raises(TransientSendError) as err:
        await channel.send(make_item())

    assert err.value.code == "connection"
    assert fake_smtp.received == []
    await channel.send(make_item())  # the pool recovers
    assert len(fake_smtp.received) == 1


# --- error mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "code", "text"),
    [
        ("rcpt", 451, "4.3.0 Temporary lookup failure"),
        ("mail", 452, "4.3.1 Insufficient system storage"),
        ("data", 450, "4.2.0 Greylisted, try again later"),
    ],
)
async def test_4xx_replies_are_transient(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp, stage: str, code: int, text: str
) -> None:
    fake_smtp.fail_next(code, text, stage=stage)  # type: ignore[arg-type]

    with pytest.raises(TransientSendError) as err:
        await channel.send(make_item())

    assert err.value.code == f"smtp-{code}"
    assert text in err.value.reason
    await channel.send(make_item())  # the connection is still usable after RSET
    assert len(fake_smtp.received) == 1
    assert fake_smtp.connections == 1


async def test_421_closes_the_connection_and_the_next_send_opens_a_new_one(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    fake_smtp.fail_next(421, "4.3.2 Service shutting down", stage="mail")

    with pytest.raises(TransientSendError) as err:
        await channel.send(make_item())
    await channel.send(make_item())

    assert err.value.code == "smtp-421"
    assert len(fake_smtp.received) == 1
    assert fake_smtp.connections == 2


async def test_a_send_cancelled_mid_transaction_does_not_poison_the_pool(
    fake_smtp: FakeSmtp,
) -> None:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, pool_size=1, local_hostname="gw.test")
    try:
        fake_smtp.delay(2.0, stage="data")  # cut short: our disconnect cancels the server hook
        task = asyncio.create_task(ch.send(make_item(message_id="<cancelled@colegio.example.org>")))
        await asyncio.sleep(0.3)  # now waiting for the reply to DATA
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The half-finished session was thrown away, so this reply cannot be mistaken for ours.
        await ch.send(make_item(message_id="<next@colegio.example.org>"))
    finally:
        await ch.close()

    assert [r.message["Message-ID"] for r in fake_smtp.received][-1] == "<next@colegio.example.org>"
    assert fake_smtp.connections == 2


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "5.1.1 <ana@example.org>: Recipient address rejected: User unknown"),
        (550, "Requested action not taken: mailbox unavailable"),
        (551, "User not local"),
        (553, "5.1.3 Bad recipient address syntax"),
        (550, "5.4.1 Recipient address rejected: Access denied"),  # Microsoft 365's "no such user"
        (550, "5.2.1 Mailbox disabled, not accepting messages"),
    ],
)
async def test_recipient_refused_at_rcpt_is_permanent_and_bouncing(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp, code: int, text: str
) -> None:
    fake_smtp.fail_next(code, text, stage="rcpt")

    with pytest.raises(PermanentSendError) as err:
        await channel.send(make_item())

    assert err.value.code == f"smtp-{code}"
    assert err.value.problem is ContactProblem.BOUNCING
    assert fake_smtp.received == []


@pytest.mark.parametrize(
    ("stage", "code", "text"),
    [
        ("data", 552, "5.3.4 Message size exceeds fixed limit"),
        ("data", 554, "5.6.0 Transaction failed"),
        ("rcpt", 554, "5.7.1 Relay access denied"),  # policy: about us, not the address
        ("data", 550, "5.7.1 Message rejected as spam"),
        ("mail", 550, "5.1.8 Sender address rejected"),  # our sender, never the recipient
        ("rcpt", 554, "<avisos@colegio.example.org>: Sender address rejected: Access denied"),
    ],
)
async def test_other_5xx_are_permanent_without_a_contact_problem(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp, stage: str, code: int, text: str
) -> None:
    fake_smtp.fail_next(code, text, stage=stage)  # type: ignore[arg-type]

    with pytest.raises(PermanentSendError) as err:
        await channel.send(make_item())

    assert err.value.code == f"smtp-{code}"
    assert err.value.problem is None


async def test_user_unknown_reported_after_data_is_still_bouncing(
    channel: SmtpEmailChannel, fake_smtp: FakeSmtp
) -> None:
    # Some servers accept every RCPT and refuse the mailbox only once they have the message.
    fake_smtp.fail_next(550, "5.1.1 The email account that you tried to reach does not exist",
                        stage="data")

    with pytest.raises(PermanentSendError) as err:
        await channel.send(make_item())

    assert err.value.problem is ContactProblem.BOUNCING


async def test_no_server_listening_is_transient_connection() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ch = SmtpEmailChannel("127.0.0.1", port, timeout=2.0, local_hostname="gw.test")
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(make_item())
    finally:
        await ch.close()

    assert err.value.code == "connection"


async def test_a_server_slower_than_the_timeout_is_transient_timeout(
    fake_smtp: FakeSmtp,
) -> None:
    fake_smtp.delay(2.0, stage="data")
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, timeout=0.3, local_hostname="gw.test")
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(make_item())
    finally:
        await ch.close()

    assert err.value.code == "timeout"


async def test_login_and_bad_credentials_are_transient() -> None:
    with FakeSmtp(auth=("gateway", "s3cret")) as server:
        good = SmtpEmailChannel(server.host, server.port, username="gateway", password="s3cret",
                                local_hostname="gw.test")
        bad = SmtpEmailChannel(server.host, server.port, username="gateway", password="wrong",
                               local_hostname="gw.test")
        try:
            await good.send(make_item())
            # 535 is our configuration, not the message: it must wait for an operator, not be lost.
            with pytest.raises(TransientSendError) as err:
                await bad.send(make_item())
        finally:
            await good.close()
            await bad.close()

        assert err.value.code == "smtp-535"
        [got] = server.received
        assert got.login == "gateway"


async def test_a_server_requiring_auth_we_did_not_configure_is_transient() -> None:
    with FakeSmtp(auth=("gateway", "s3cret")) as server:
        ch = SmtpEmailChannel(server.host, server.port, local_hostname="gw.test")
        try:
            with pytest.raises(TransientSendError) as err:
                await ch.send(make_item())
        finally:
            await ch.close()

    assert err.value.code == "smtp-530"


# --- STARTTLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """A throwaway self-signed certificate for 127.0.0.1: (server context, client context)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d: Path = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    yield server_ctx, client_ctx


async def test_starttls_then_login(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_pair
    with FakeSmtp(auth=("gateway", "s3cret"), tls_context=server_ctx, require_starttls=True) as server:
        ch = SmtpEmailChannel(server.host, server.port, username="gateway", password="s3cret",
                              starttls=True, tls_context=client_ctx, local_hostname="gw.test")
        try:
            await ch.send(make_item())
            await ch.send(make_item())
        finally:
            await ch.close()

        assert [(r.tls, r.login) for r in server.received] == [(True, "gateway")] * 2
        assert server.connections == 1


async def test_an_untrusted_certificate_is_transient(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    with FakeSmtp(tls_context=server_ctx, require_starttls=True) as server:
        # The default context trusts the system CAs, not our self-signed certificate.
        ch = SmtpEmailChannel(server.host, server.port, starttls=True, local_hostname="gw.test")
        try:
            with pytest.raises(TransientSendError) as err:
                await ch.send(make_item())
        finally:
            await ch.close()

        assert err.value.code == "tls"
        assert server.received == []


async def test_starttls_required_but_not_offered_is_transient(fake_smtp: FakeSmtp) -> None:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, starttls=True, local_hostname="gw.test")
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(make_item())
    finally:
        await ch.close()

    assert err.value.code == "smtp-config"


# --- lifecycle ---------------------------------------------------------------------------------------


async def test_close_lets_a_send_in_flight_finish(fake_smtp: FakeSmtp) -> None:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, local_hostname="gw.test")
    fake_smtp.delay(0.3, stage="data")
    task = asyncio.create_task(ch.send(make_item()))
    await asyncio.sleep(0.1)

    await ch.close()

    assert task.done() and task.result().provider_id == make_item().message_id
    assert len(fake_smtp.received) == 1


async def test_send_after_close_is_transient_and_close_is_idempotent(
    fake_smtp: FakeSmtp,
) -> None:
    ch = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, local_hostname="gw.test")
    await ch.send(make_item())
    await ch.close()
    await ch.close()

    with pytest.raises(TransientSendError) as err:
        await ch.send(make_item())

    assert err.value.code == "closed"
    assert len(fake_smtp.received) == 1
