"""Which channel(s) a message goes out on, per recipient: the one outbound routing decision.

Precedence (DESIGN section 5), applied in this order:

1. What the message kind wants:
   - invitation: e-mail when there is a usable address, else SMS;
   - conversation: the channel the recipient last wrote to us on in this conversation, if any,
     else their preference (`both` means both);
   - announcement: their preference (`both` means both);
   - newsletter: e-mail only; a recipient who prefers SMS gets an SMS with a short link instead.
2. A wanted channel whose contact point is unusable (opted out, bouncing, unreachable, missing)
   falls back to the other channel, if that one is usable.
3. With no usable channel at all, one `suppressed` delivery records why, so the sender can see it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from gateway.directory.models import ChannelPreference, ContactKind

SMS, EMAIL = "sms", "email"
KIND_OF_CHANNEL = {SMS: ContactKind.PHONE, EMAIL: ContactKind.EMAIL}
OTHER = {SMS: EMAIL, EMAIL: SMS}


@dataclass(frozen=True, slots=True)
class Contact:
    kind: ContactKind
    address: str
    problem: str | None = None     # opted_out | bouncing | unreachable, or None when usable


@dataclass(frozen=True, slots=True)
class Route:
    channel: str                    # sms | email
    address: str | None             # None when suppressed
    suppressed_reason: str | None = None
    fallback: bool = False          # chosen because the wanted channel was unusable
    short_link: bool = False        # a newsletter announced by SMS with a link

    @property
    def suppressed(self) -> bool:
        return self.suppressed_reason is not None


def _wanted(kind: str, preference: ChannelPreference, last_channel: str | None) -> list[str]:
    if kind == "newsletter":
        return [SMS] if preference is ChannelPreference.SMS else [EMAIL]
    if kind == "conversation" and last_channel in (SMS, EMAIL):
        return [last_channel]
    if preference is ChannelPreference.BOTH:
        return [EMAIL, SMS]
    return [SMS] if preference is ChannelPreference.SMS else [EMAIL]


def usable_address(contacts: Sequence[Contact], channel: str) -> str | None:
    """The first address of the recipient that `channel` can use now, or None."""
    contact = _usable(contacts, channel)
    return contact.address if contact else None


def _usable(contacts: Sequence[Contact], channel: str) -> Contact | None:
    kind = KIND_OF_CHANNEL[channel]
    return next((c for c in contacts if c.kind is kind and c.problem is None), None)


def _why_not(contacts: Sequence[Contact], channel: str) -> str:
    kind = KIND_OF_CHANNEL[channel]
    problems = [c.problem for c in contacts if c.kind is kind and c.problem]
    return problems[0] if problems else f"no_{'phone' if channel == SMS else 'email'}"


def choose_routes(
    kind: str,
    preference: ChannelPreference,
    contacts: Iterable[Contact],
    *,
    last_channel: str | None = None,
    sms_available: bool = True,
) -> list[Route]:
    """The deliveries to create for one recipient; never empty (a suppressed Route at worst).

    `sms_available` is False when the school has no number to send from.
    """
    contacts = list(contacts)
    if not sms_available:
        contacts = [c for c in contacts if c.kind is not ContactKind.PHONE]
    if kind == "invitation":
        wanted = [EMAIL]
    else:
        wanted = _wanted(kind, preference, last_channel)

    routes: list[Route] = []
    chosen: set[str] = set()
    for channel in wanted:
        contact = _usable(contacts, channel)
        fallback = False
        if contact is None:
            channel, fallback = OTHER[channel], True
            contact = _usable(contacts, channel)
        if contact is None or channel in chosen:
            continue
        chosen.add(channel)
        short_link = kind == "newsletter" and channel == SMS
        routes.append(Route(channel, contact.address, fallback=fallback, short_link=short_link))
    if routes:
        return routes
    first = wanted[0]
    reason = "no_sms_number" if first == SMS and not sms_available else _why_not(contacts, first)
    return [Route(first, None, suppressed_reason=reason)]
