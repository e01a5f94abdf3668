"""Turn one delivery into the SMS or e-mail the recipient gets, in the recipient's language.

The body is the author's words; everything we add around it (signature line, "reply to answer",
opt-out and unsubscribe lines) comes from the catalogs in the recipient's locale.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from gateway.channels.base import OutboundEmail, OutboundItem, OutboundSms
from gateway.i18n import babel_locale, current_translations, translations_for
from gateway.settings import Settings
from gateway.threads.addresses import (
    delivery_message_id,
    reply_address,
    token_reference,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    keep_trailing_newline=True,
    trim_blocks=False,
)
_env.install_gettext_callables(  # type: ignore[attr-defined]
    gettext=lambda s: current_translations.get().gettext(s),
    ngettext=lambda s, p, n: current_translations.get().ngettext(s, p, n),
    newstyle=True,
)
_TEXT = _env.get_template("email/message.txt")
_HTML = _env.get_template("email/message.html")


@dataclass(frozen=True, slots=True)
class OutboundContext:
    """Everything needed to render one delivery; loaded in bulk by the dispatcher."""

    delivery_id: int
    conversation_id: int
    channel: str
    to: str
    sms_sender: str | None
    kind: str
    subject: str
    body: str
    urgent: bool
    author_name: str | None
    school_name: str
    locale: str | None
    reply_token: str | None
    reply_domain: str
    short_link: bool = False


def render(ctx: OutboundContext, settings: Settings) -> OutboundItem:
    translations = translations_for(ctx.locale)
    reset = current_translations.set(translations)
    try:
        if ctx.channel == "sms":
            return _render_sms(ctx, settings)
        return _render_email(ctx, settings)
    finally:
        current_translations.reset(reset)


def _t(message: str, **values: object) -> str:
    text = current_translations.get().gettext(message)
    return text % values if values else text


def message_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url}/m/{token}"


def _render_sms(ctx: OutboundContext, settings: Settings) -> OutboundSms:
    signer = ctx.author_name or ctx.school_name
    if ctx.short_link and ctx.reply_token:
        lines = [
            _t("%(school)s newsletter: %(subject)s", school=ctx.school_name, subject=ctx.subject or "")
            .strip(),
            _t("Read it here: %(link)s", link=message_link(settings, ctx.reply_token)),
        ]
    else:
        # A plain "-", not an em dash: one character outside GSM-7 turns the whole SMS into UCS-2,
        # which fits 70 characters a segment instead of 160.
        lines = [ctx.body, f"- {signer}" if ctx.author_name is None else f"- {ctx.author_name}, {ctx.school_name}"]
        if ctx.kind == "conversation":
            lines.append(_t("Reply to this message to answer %(name)s.", name=signer))
    if ctx.kind != "conversation":
        # CTIA and carriers expect opt-out instructions on bulk messages.
        lines.append(_t("Text STOP to opt out."))
    callback = f"{settings.public_url}/webhooks/twilio/status?delivery={ctx.delivery_id}"
    return OutboundSms(
        to=ctx.to, from_=ctx.sms_sender or "", body="\n".join(lines), status_callback=callback,
        reference=str(ctx.delivery_id),
    )


def _render_email(ctx: OutboundContext, settings: Settings) -> OutboundEmail:
    locale = babel_locale(ctx.locale)
    subject = ctx.subject or _t("Message from %(school)s", school=ctx.school_name)
    if ctx.urgent:
        subject = _t("[Urgent] %(subject)s", subject=subject)
    unsubscribe_url = (
        f"{settings.public_url}/unsubscribe/{ctx.reply_token}"
        if ctx.kind == "newsletter" and ctx.reply_token
        else None
    )
    values = dict(
        body=ctx.body,
        body_html=Markup("<br>\n").join(escape(line) for line in ctx.body.split("\n")),
        subject=subject,
        urgent=ctx.urgent,
        author_name=ctx.author_name,
        school_name=ctx.school_name,
        can_reply=ctx.reply_token is not None,
        unsubscribe_url=unsubscribe_url,
        lang=str(locale).replace("_", "-"),
        direction=locale.text_direction,
    )
    display = f"{ctx.author_name} ({ctx.school_name})" if ctx.author_name else ctx.school_name
    headers: list[tuple[str, str]] = []
    references: tuple[str, ...] = ()
    reply_to = None
    if ctx.reply_token:
        reply_to = reply_address(ctx.reply_token, ctx.reply_domain)
        references = (token_reference(ctx.reply_token, ctx.reply_domain),)
    if ctx.author_name is None:
        headers.append(("Auto-Submitted", "auto-generated"))  # RFC 3834: written by no person
    if unsubscribe_url and ctx.reply_token:
        # RFC 2369 and RFC 8058 one-click unsubscribe.
        mailto = f"mailto:{reply_address(ctx.reply_token, ctx.reply_domain)}?subject=unsubscribe"
        headers.append(("List-Unsubscribe", f"<{unsubscribe_url}>, <{mailto}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return OutboundEmail(
        to=ctx.to,
        from_=str(Address(display_name=display, addr_spec=settings.smtp_from)),
        subject=subject,
        text=_TEXT.render(values),
        html=_HTML.render(values),
        message_id=delivery_message_id(settings.secret_key, ctx.delivery_id, ctx.reply_domain),
        reply_to=reply_to,
        references=references,
        headers=tuple(headers),
        reference=str(ctx.delivery_id),
    )
