"""Normalising addresses and locales, and redacting addresses for logs."""
from __future__ import annotations

import pytest

from gateway.directory.contacts import (
    InvalidAddress,
    normalize_email,
    normalize_phone,
    redact,
)
from gateway.directory.user_input import normalize_locale


@pytest.mark.parametrize("raw,region,expected", [
    ("(415) 555-2671", "US", "+14155552671"),
    ("+1 415-555-2671", "US", "+14155552671"),
    ("415.555.2671", "US", "+14155552671"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("0912 345 678", "VN", "+84912345678"),
])
def test_phones_become_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["12345", "not a phone", "", "+1 415 555", "+999 1234567"])
def test_bad_phones_are_refused(raw):
    with pytest.raises(InvalidAddress):
        normalize_phone(raw, "US")


@pytest.mark.parametrize("raw,expected", [
    ("Ana@Example.COM", "ana@example.com"),
    ("  ana@example.com ", "ana@example.com"),
    ("jose@Bücher.example", "jose@xn--bcher-kva.example"),
    ("José@bücher.example", "josé@xn--bcher-kva.example"),
])
def test_emails_are_lower_cased_and_idna(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["ana", "ana@", "@example.com", "ana@@example.com", "ana@example", "a b@example.com"])
def test_bad_emails_are_refused(raw):
    with pytest.raises(InvalidAddress):
        normalize_email(raw)


@pytest.mark.parametrize("raw,expected", [("es-MX", "es_MX"), ("es_mx", "es_MX"), ("EN", "en"), ("vi", "vi"),
                                          ("zh-Hant-TW", "zh_Hant_TW"), ("es-419", "es_419")])
def test_locales(raw, expected):
    assert normalize_locale(raw) == expected


@pytest.mark.parametrize("raw", ["xx-invalid", "en-nonsense", "en-ZZ", "", "e", "klingon"])
def test_bad_locales(raw):
    with pytest.raises(ValueError):
        normalize_locale(raw)


def test_redact_keeps_no_usable_address():
    assert redact("ana@family.example") == "a***@family.example"
    assert redact("+14155550142") == "+14***42"
    assert redact(None) == "-" and redact("12345") == "***"
