"""SMS segment counting, as carriers and Twilio count (GSM 03.38 / UCS-2)."""
from __future__ import annotations

import time

import pytest

from gateway.channels.sms_segments import (
    SegmentCount,
    count_segments,
    non_gsm_characters,
)

EMOJI = "\U0001F600"   # 😀: outside the BMP, a surrogate pair (2 UTF-16 units)


# --- GSM-7, basic table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (153 * 3, 3), (153 * 3 + 1, 4)],
)
def test_plain_gsm_text_fits_160_in_one_and_153_per_part(length: int, segments: int) -> None:
    assert count_segments("a" * length) == SegmentCount("GSM-7", length, segments)


def test_the_whole_basic_table_is_gsm7_at_one_septet_each() -> None:
    text = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ÄÖÑÜ§¿äöñüà"
    assert count_segments(text) == SegmentCount("GSM-7", len(text), 1)
    assert non_gsm_characters(text) == set()


def test_empty_body_costs_nothing() -> None:
    assert count_segments("") == SegmentCount("GSM-7", 0, 0)


# --- GSM-7, extension table ---------------------------------------------------------------------


@pytest.mark.parametrize("char", list("^{}\\[~]|€") + ["\x0c"])
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count_segments(char) == SegmentCount("GSM-7", 2, 1)


def test_extension_characters_count_toward_the_160_limit() -> None:
    assert count_segments("€" * 80) == SegmentCount("GSM-7", 160, 1)
    assert count_segments("a" * 159 + "€") == SegmentCount("GSM-7", 161, 2)


def test_an_escape_pair_is_never_split_across_segments() -> None:
    # 152 septets, then "€" (2) would straddle the 153 boundary: it moves to part 2 whole,
    # and part 2 then holds 2 + 152 = 154 > 153 septets, so a third part is needed.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text) == SegmentCount("GSM-7", 306, 3)
    # The same septet total without the straddle fits in two parts.
    assert count_segments("€" + "a" * 304) == SegmentCount("GSM-7", 306, 2)


def test_exactly_two_full_parts_of_escapes() -> None:
    # 153 is odd, so a part of "€" holds 76 of them (152 septets): 153 "€" take 3 parts.
    assert count_segments("a" + "€" * 76 + "a" + "€" * 76) == SegmentCount("GSM-7", 306, 2)
    assert count_segments("€" * 153) == SegmentCount("GSM-7", 306, 3)


# --- UCS-2 --------------------------------------------------------------------------------------


def test_one_non_gsm_character_switches_the_whole_message_to_ucs2() -> None:
    text = "a" * 69 + "ç"          # lower-case c cedilla is not in the GSM table (Ç is)
    assert count_segments(text) == SegmentCount("UCS-2", 70, 1)
    assert count_segments(text + "a") == SegmentCount("UCS-2", 71, 2)
    assert non_gsm_characters(text) == {"ç"}


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_fits_70_in_one_and_67_per_part(length: int, segments: int) -> None:
    text = "Ж" * length
    assert count_segments(text) == SegmentCount("UCS-2", length, segments)


def test_an_emoji_costs_two_units_and_forces_ucs2() -> None:
    assert count_segments(EMOJI) == SegmentCount("UCS-2", 2, 1)
    assert count_segments("a" * 68 + EMOJI) == SegmentCount("UCS-2", 70, 1)
    assert count_segments("a" * 69 + EMOJI) == SegmentCount("UCS-2", 71, 2)
    assert count_segments(EMOJI * 35) == SegmentCount("UCS-2", 70, 1)


def test_a_surrogate_pair_is_never_split_across_segments() -> None:
    # 66 units, then an emoji (2) would straddle the 67 boundary: it moves to part 2 whole.
    text = "a" * 66 + EMOJI + "a" * 66
    assert count_segments(text) == SegmentCount("UCS-2", 134, 3)
    assert count_segments(EMOJI + "a" * 132) == SegmentCount("UCS-2", 134, 2)


def test_extension_characters_cost_one_unit_once_in_ucs2() -> None:
    assert count_segments("€" * 69 + "ç") == SegmentCount("UCS-2", 70, 1)


def test_non_gsm_characters_lists_what_forces_ucs2() -> None:
    assert non_gsm_characters("Hola, ¿cómo está? 👋 `x`") == {"ó", "á", "👋", "`"}
    assert non_gsm_characters("Chào bạn") == {"ạ"}      # à is in the GSM table, ạ is not
    assert non_gsm_characters("naïve – “quoted”") == {"ï", "–", "“", "”"}


def test_a_long_announcement_counts_quickly() -> None:
    # Runs once per delivery; a 1600-character body must be cheap even on the packing path
    # (about 0.1 s for these 1000 counts here; the bound leaves room for a busy CI machine).
    text = ("Reunión de padres el jueves 😀 " * 60)[:1600]
    start = time.perf_counter()
    for _ in range(1000):
        count_segments(text)
    assert time.perf_counter() - start < 1.0
