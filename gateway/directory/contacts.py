"""Normalising phone numbers and e-mail addresses, and redacting them for logs."""
from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The text is not a usable phone number or e-mail address."""


def normalize_phone(raw: str, region: str) -> str:
    """Return E.164 for `raw`, read in `region` when it has no country code.

    phonenumbers.parse accepts things like "12345" (it returns +112345), so validity is checked
    separately (STACK.md).
    """
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddress("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Return the address lower-cased with its domain in IDNA form (ASCII), or raise InvalidAddress.

    Local parts are case-sensitive in theory (RFC 5321 section 2.4) but not in any mailbox a school
    family uses; lower-casing lets one household address match however it was typed.
    """
    try:
        info = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    domain = info.ascii_domain or info.domain
    return f"{info.local_part}@{domain}".lower()


def redact(address: str | None) -> str:
    """Keep enough of an address to recognise it in a log, not enough to contact anyone."""
    if not address:
        return "-"
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{address[:3]}***{address[-2:]}" if len(address) > 6 else "***"
