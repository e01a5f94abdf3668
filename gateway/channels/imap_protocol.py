"""Pure helpers for the IMAP reader: parsing aioimaplib's responses and writing IMAP arguments.

aioimaplib (2.0.x) hands back a response as a flat list: text lines as `bytes` (untagged lines
without their leading "* ") and each literal `{n}` as a `bytearray` of exactly n bytes. A literal's
bytes never go through the line parser, so a message that contains lines such as
"* 3 FETCH (UID 9 BODY[] {5}" or "A1 OK done" cannot be mistaken for protocol: we rely on the type
(bytearray) and the announced size, never on the literal's content.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

Line = bytes | bytearray

_FETCH_START = re.compile(rb"^(\d+) FETCH \(")
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
_BODY_BEFORE_LITERAL = re.compile(rb"BODY\[\](?:<\d+>)?\s*$", re.IGNORECASE)
_UID = re.compile(rb"(?:^|[ (])UID (\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"(?:^|[ (])RFC822\.SIZE (\d+)", re.IGNORECASE)
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)


class ImapProtocolError(Exception):
    """The server's answer did not have the shape RFC 3501 promises."""


@dataclass(frozen=True, slots=True)
class FetchedItem:
    """One FETCH response (RFC 3501 7.4.2): its UID, the body literal if one was sent, and the
    remaining attribute text with literals cut out (e.g. b'UID 7 FLAGS (\\Seen) BODY[] )')."""

    seq: int
    uid: int | None
    body: bytes | None
    attributes: bytes
    size: int | None = None


def parse_fetch(lines: Sequence[Line]) -> Iterator[FetchedItem]:
    """Yield every FETCH response in `lines`, in order, literals matched by type and size.

    Handles the attribute order servers choose (UID before or after the body), unsolicited FETCH
    responses without a literal (e.g. a flag change by another client), and literals of any content.
    """
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if isinstance(line, bytearray):
            continue  # a literal we did not ask for (belongs to nothing we parse)
        start = _FETCH_START.match(line)
        if start is None:
            continue
        pieces: list[bytes] = []
        body: bytes | None = None
        current = bytes(line[start.end():])
        while True:
            literal = _LITERAL_AT_END.search(current)
            if literal is None or i >= n or not isinstance(lines[i], bytearray):
                pieces.append(current)
                break
            if len(lines[i]) != int(literal.group(1)):
                raise ImapProtocolError(f"literal announced {literal.group(1).decode()} bytes, got {len(lines[i])}")
            head = current[: literal.start()]
            pieces.append(head)
            if _BODY_BEFORE_LITERAL.search(head):
                body = bytes(lines[i])
            i += 1
            # After a literal the response goes on in the next text line (at least the closing ")").
            if i < n and not isinstance(lines[i], bytearray) and not _FETCH_START.match(lines[i]):
                current = bytes(lines[i])
                i += 1
            else:
                break
        attributes = b"".join(pieces)
        uid = _UID.search(attributes)
        size = _SIZE.search(attributes)
        yield FetchedItem(
            seq=int(start.group(1)),
            uid=int(uid.group(1)) if uid else None,
            body=body,
            attributes=attributes,
            size=int(size.group(1)) if size else None,
        )


def parse_search(lines: Sequence[Line]) -> list[int]:
    """The numbers of a SEARCH response (RFC 3501 7.2.5); the tagged completion text is skipped."""
    numbers: list[int] = []
    for line in lines[:-1]:  # the last line is the tagged OK's text
        if isinstance(line, bytearray):
            continue
        text = bytes(line).strip()
        if text.upper().startswith(b"SEARCH"):
            text = text[6:].strip()
        if re.fullmatch(rb"[0-9 ]*", text):
            numbers.extend(int(x) for x in text.split())
    return numbers


def select_codes(lines: Sequence[Line]) -> tuple[int | None, int | None]:
    """UIDVALIDITY and UIDNEXT from a SELECT response's OK codes (RFC 3501 6.3.1)."""
    text = b"\n".join(bytes(x) for x in lines if not isinstance(x, bytearray))
    validity, uidnext = _UIDVALIDITY.search(text), _UIDNEXT.search(text)
    return (int(validity.group(1)) if validity else None, int(uidnext.group(1)) if uidnext else None)


def uid_set(uids: Iterable[int]) -> str:
    """A compact sequence set (RFC 3501 9, "sequence-set"): [1, 2, 3, 7, 9, 10] -> "1:3,7,9:10"."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty UID set cannot be written")
    ranges: list[str] = []
    first = last = ordered[0]
    for uid in ordered[1:]:
        if uid == last + 1:
            last = uid
            continue
        ranges.append(f"{first}:{last}" if first != last else str(first))
        first = last = uid
    ranges.append(f"{first}:{last}" if first != last else str(first))
    return ",".join(ranges)


def encode_mailbox(name: str) -> str:
    """Modified UTF-7 for mailbox names (RFC 3501 5.1.3): "Bandeja de entrada/Años" -> "...A&APE-os"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).rstrip(b"=").replace(b"/", b",")
            out.append("&" + encoded.decode("ascii") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    """A mailbox name as an IMAP quoted string, safe for names with spaces or quotes."""
    encoded = encode_mailbox(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'
