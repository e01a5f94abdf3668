"""How many SMS segments a body costs, counted the way carriers and Twilio count them.

Two encodings exist for a text SMS:

* GSM-7 (3GPP TS 23.038, "GSM 03.38"): 7-bit septets. The basic table holds 128 characters; the
  extension table characters (``^ { } \\ [ ~ ] | €`` and form feed) are sent as ESC + char and cost
  two septets. A single SMS carries 160 septets; once concatenated, each part loses 7 septets to the
  UDH and carries 153.
* UCS-2: as soon as one character is outside both GSM tables the WHOLE message switches to 16-bit
  units. 70 units single, 67 per concatenated part. Characters outside the BMP (most emoji) are
  sent as UTF-16 surrogate pairs, so they cost 2 units.

A segment boundary never splits an escape pair or a surrogate pair: the handset could not
reassemble half a character, so the encoder moves the whole character to the next part, leaving
the previous part one unit short. That is why segments are counted by packing, not by dividing.

This runs once per delivery, so the tables are frozensets built at import and the common cases
(pure basic-table text, BMP-only UCS-2 text) take a set comparison and a division.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# GSM 03.38 default alphabet, in table order (0x00-0x7F). 0x1B is ESC, the escape to the extension
# table: it is not a character a composer can type, so it is left out (a literal U+001B in a body
# forces UCS-2, as it would have to).
# 0x09 is U+00C7 (capital C cedilla) per the Unicode consortium's mapping of the standard; a lower
# case "ç" is not in the table and forces UCS-2 (Twilio's Smart Encoding may substitute it, but we
# count what we send).
_GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnop"
    "qrstuvwxyzäöñüà"
)
GSM7_BASIC: frozenset[str] = frozenset(_GSM7_BASIC_TABLE) - {"\x1b"}

# Extension table (reached through ESC): form feed, ^ { } \ [ ~ ] | €. Each costs 2 septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\x0c^{}\\[~]|€")

GSM7_ALL: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE = 160
GSM7_PART = 153      # 160 septets minus the 6-byte concatenation UDH (7 septets with fill bits)
UCS2_SINGLE = 70
UCS2_PART = 67       # 140 bytes minus the 6-byte UDH = 134 bytes = 67 UTF-16 units


@dataclass(frozen=True)
class SegmentCount:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int          # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int       # 0 for an empty body: there is nothing to send


def non_gsm_characters(text: str) -> set[str]:
    """The characters in `text` that force the whole message into UCS-2 (for a composer hint)."""
    return set(text) - GSM7_ALL


def count_segments(text: str) -> SegmentCount:
    """Count encoding, units and segments of an SMS body as Twilio and the carriers do."""
    if not text:
        return SegmentCount("GSM-7", 0, 0)
    chars = set(text)
    if chars <= GSM7_BASIC:
        # Every character is one septet and cannot be split: plain arithmetic.
        return SegmentCount("GSM-7", len(text), _segments_uniform(len(text), GSM7_SINGLE, GSM7_PART))
    if chars <= GSM7_ALL:
        return _count_gsm7_with_escapes(text)
    return _count_ucs2(text)


def _segments_uniform(units: int, single: int, part: int) -> int:
    """Segments when every character costs exactly one unit (no pair to keep together)."""
    if units <= single:
        return 1
    return -(-units // part)


def _pack(costs: list[int] | tuple[int, ...], units: int, single: int, part: int) -> int:
    """Greedy packing of characters (1 or 2 units each) into parts of `part` units.

    A 2-unit character that does not fit in what is left of a part starts the next one; that is
    exactly what an encoder does, since an escape or surrogate pair must arrive in one PDU.
    """
    if units <= single:
        return 1
    segments = 1
    used = 0
    for cost in costs:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments


def _count_gsm7_with_escapes(text: str) -> SegmentCount:
    ext = GSM7_EXTENSION
    costs = [2 if ch in ext else 1 for ch in text]
    units = sum(costs)
    return SegmentCount("GSM-7", units, _pack(costs, units, GSM7_SINGLE, GSM7_PART))


def _count_ucs2(text: str) -> SegmentCount:
    # Python strings are code points; a code point above U+FFFF becomes a surrogate pair on the
    # wire. Counting them this way avoids encoding the whole body just to measure it.
    astral = sum(1 for ch in text if ord(ch) > 0xFFFF)
    units = len(text) + astral
    if not astral:
        return SegmentCount("UCS-2", units, _segments_uniform(units, UCS2_SINGLE, UCS2_PART))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SegmentCount("UCS-2", units, _pack(costs, units, UCS2_SINGLE, UCS2_PART))
