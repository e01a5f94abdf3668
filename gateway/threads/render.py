"""Turn one delivery into the SMS or e-mail the recipient gets, in the recipient's language.

The body is the author's words; everything we add around it (signature line, "reply to answer",
opt-out and unsubscribe lines, the "set up your account" link for people who have not joined)
comes from the catalogs in the recipient's locale. Invitations and sign-in links (kinds
"invitation" and "login_link") are written entirely by us, from templates and catalogs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel.dates import format_date
from markupsafe import Markup, escape

from gateway.channels.base import OutboundEmail, OutboundItem, OutboundSms
from gateway.channels.sms_segments import count_segments
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
_LINK_TEMPLATES = {
    kind: (_env.get_template(f"email/{kind}.txt"), _env.get_template(f"email/{kind}.html"))
    for kind in ("invitation", "login_link")
}
LINK_KINDS = frozenset(_LINK_TEMPLATES)


class LinkUnusable(Exception):
    """A login link that must not be sent any more (expired or used while it waited in the outbox)."""


@dataclass(frozen=True, slots=True)
class OutboundContext:
    """Everything needed to render one delivery; loaded in bulk by the dispatcher."""

    delivery_id: int
    conversation_id: int | None   # None for invitations and sign-in links
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
    # Invitations and sign-in links: the magic link, when it stops working, and why it cannot be
    # sent any more (expired, used) if so.
    link: str | None = None
    link_expires_at: datetime | None = None
    link_problem: str | None = None
    recipient_name: str | None = None
    school_timezone: str = "UTC"
    # Any other e-mail to someone who has not joined yet: their /join/<token> link.
    join_link: str | None = None


def render(ctx: OutboundContext, settings: Settings) -> OutboundItem:
    translations = translations_for(ctx.locale)
    reset = current_translations.set(translations)
    try:
        if ctx.kind in LINK_KINDS:
            if ctx.link_problem or not ctx.link:
                raise LinkUnusable(f"the link was not sent: {ctx.link_problem or 'no link'}")
            if ctx.channel == "sms":
                return _render_link_sms(ctx, settings)
            return _render_link_email(ctx, settings)
        if ctx.channel == "sms":
            return _render_sms(ctx, settings)
        return _render_email(ctx, settings)
    finally:
        current_translations.reset(reset)


def _t(message: str, **values: object) -> str:
    text = current_translations.get().gettext(message)
    return text % values if values else text


def _n(singular: str, plural: str, num: int, **values: object) -> str:
    return current_translations.get().ngettext(singular, plural, num) % {"num": num, **values}


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
        join_url=ctx.join_link,
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


# ---------------------------------------------------------------- invitations and sign-in links


def _status_callback(settings: Settings, ctx: OutboundContext) -> str:
    return f"{settings.public_url}/webhooks/twilio/status?delivery={ctx.delivery_id}"


def _minutes_left(ctx: OutboundContext) -> int:
    if ctx.link_expires_at is None:
        return 15
    return max(1, math.ceil((ctx.link_expires_at - datetime.now(timezone.utc)).total_seconds() / 60))


def _expiry_date(ctx: OutboundContext) -> str:
    if ctx.link_expires_at is None:
        return ""
    try:
        zone = ZoneInfo(ctx.school_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return format_date(ctx.link_expires_at.astimezone(zone), "long", locale=babel_locale(ctx.locale))


def fit_one_segment(build: Callable[[str], str], name: str, *, shortest: int = 12) -> str:
    """`build(name)`, in one SMS segment if shortening `name` (the school's) gets it there.

    A long school name is cut with "..." rather than paying for a second segment. When no cut fits
    (a name or link outside GSM-7 makes the whole text UCS-2, 70 characters a segment, and the link
    alone takes most of that) the full text goes out in two or more segments.
    """
    full = build(name)
    count = count_segments(full)
    if count.segments <= 1 or count.encoding != "GSM-7":
        return full  # cutting a name only to drop its accented letter would garble it
    for keep in range(len(name) - 1, shortest - 1, -1):
        text = build(name[:keep].rstrip() + "...")
        if count_segments(text).segments <= 1:
            return text
    return full


def _render_link_sms(ctx: OutboundContext, settings: Settings) -> OutboundSms:
    link = ctx.link or ""
    if ctx.kind == "invitation":
        # Written for GSM-7 in every language (no accented letters outside the GSM table), so the
        # invitation stays one segment; bulk texts carry how to opt out.
        def build(school: str) -> str:
            return "\n".join([_t("%(school)s invites you to set up your account: %(link)s", school=school, link=link),
                              _t("Reply STOP to opt out.")])
    else:
        minutes = _minutes_left(ctx)

        def build(school: str) -> str:
            return "\n".join([_t("Your %(school)s sign-in link: %(link)s", school=school, link=link),
                              _n("It works once, for %(num)s minute.", "It works once, for %(num)s minutes.", minutes)])
    return OutboundSms(
        to=ctx.to, from_=ctx.sms_sender or "", body=fit_one_segment(build, ctx.school_name),
        status_callback=_status_callback(settings, ctx), reference=str(ctx.delivery_id),
    )


def _render_link_email(ctx: OutboundContext, settings: Settings) -> OutboundEmail:
    locale = babel_locale(ctx.locale)
    if ctx.kind == "invitation":
        subject = _t("Set up your %(school)s account", school=ctx.school_name)
    else:
        subject = _t("Your %(school)s sign-in link", school=ctx.school_name)
    values = dict(
        subject=subject,
        link=ctx.link,
        recipient_name=ctx.recipient_name,
        school_name=ctx.school_name,
        expires=_expiry_date(ctx),
        minutes=_minutes_left(ctx),
        lang=str(locale).replace("_", "-"),
        direction=locale.text_direction,
    )
    text, html = _LINK_TEMPLATES[ctx.kind]
    return OutboundEmail(
        to=ctx.to,
        from_=str(Address(display_name=ctx.school_name, addr_spec=settings.smtp_from)),
        subject=subject,
        text=text.render(values),
        html=html.render(values),
        message_id=delivery_message_id(settings.secret_key, ctx.delivery_id, ctx.reply_domain),
        headers=(("Auto-Submitted", "auto-generated"),),  # RFC 3834: written by no person
        reference=str(ctx.delivery_id),
    )
