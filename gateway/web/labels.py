"""Translated names for our vocabulary (channels, delivery states, reasons), shared by the pages.

Each is a function of the current request language, so it is looked up when a page renders.
"""
from __future__ import annotations

from gateway.i18n import _


def channel_name(channel: str | None) -> str:
    return {
        "sms": _("Text message"), "email": _("E-mail"), "web": _("Web"), "api": _("School system"),
        "system": _("School system"),
    }.get(channel or "", channel or "")


def status_name(status: str) -> str:
    return {
        "queued": _("Waiting to be sent"), "sent": _("Sent"), "delivered": _("Delivered"),
        "undelivered": _("Not delivered"), "failed": _("Failed"), "suppressed": _("Not sent"),
    }.get(status, status)


def status_tone(status: str) -> str:
    """The colour class of a delivery state's tag."""
    return {"delivered": "good", "sent": "good", "queued": "", "undelivered": "bad", "failed": "bad",
            "suppressed": "warn"}.get(status, "")


def reason_name(reason: str | None) -> str:
    """Why someone will not (or did not) receive a message, in words for staff."""
    return {
        "opted_out": _("opted out of text messages"),
        "bouncing": _("e-mail address is bouncing"),
        "unreachable": _("the address cannot be reached"),
        "no_phone": _("no phone number"),
        "no_email": _("no e-mail address"),
        "no_sms_number": _("the school has no number to text from"),
        "unsubscribed": _("unsubscribed from newsletters"),
    }.get(reason or "", reason or "")


def routed_by_name(routed_by: str | None) -> str:
    """How a reply found its conversation (Message.routed_by)."""
    return {
        "reply_token": _("matched by its reply address"),
        "references": _("matched by the e-mail it answers"),
        "sms_pool": _("matched by the number it was sent to"),
        "sender_fallback": _("matched by the sender only"),
        "web": _("written on the website"),
        "triage": _("attached by staff"),
    }.get(routed_by or "", routed_by or "")


def kind_name(kind: str) -> str:
    return {"conversation": _("Conversation"), "announcement": _("Announcement"),
            "newsletter": _("Newsletter")}.get(kind, kind)


def role_name(role: str) -> str:
    return {"staff": _("Staff"), "guardian": _("Guardian"), "student": _("Student")}.get(role, role)


def route_name(channel: str, *, fallback: bool = False, short_link: bool = False) -> str:
    """How a message will reach someone (a channel_choice.Route), e.g. "E-mail (instead of text message)"."""
    if channel == "sms" and short_link:
        return _("Text message with a link (instead of e-mail)") if fallback else _("Text message with a link")
    if fallback:
        return {"sms": _("Text message (instead of e-mail)"),
                "email": _("E-mail (instead of text message)")}.get(channel, channel_name(channel))
    return channel_name(channel)


def problem_name(problem: str | None) -> str:
    """A contact point's state (ContactPoint.problem) for the directory."""
    return {"opted_out": _("Opted out"), "bouncing": _("Bouncing"), "unreachable": _("Unreachable")}.get(
        problem or "", problem or "")
