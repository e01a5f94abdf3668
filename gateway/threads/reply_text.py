"""The visible text of a reply: only the words the sender newly wrote.

When a guardian answers a school e-mail, their client appends the history (quoted or not),
an attribution line, maybe a signature and a "Sent from my iPhone" footer. Threads show only
the new words, so this module strips the rest. Pure functions, standard library only.
Turning HTML into lines (and marking the quotes its structure shows) is ``reply_html``'s job.

Public API
==========
``extract_reply(text)``            plain-text body in, visible reply out.
``extract_reply_from_html(html)``  HTML body in, visible reply out as plain text.
``extract_reply_from_body(body, content_type)``  either of the above, by MIME type.
``html_to_text(html)``             generic HTML to text (blockquotes become "> " lines);
                                   defined in ``reply_html``, re-exported here.

Rules, in the order they apply
==============================
0. Clean-up. CRLF becomes LF; a body that still carries quoted-printable soft breaks and
   escapes (a mislabelled transfer encoding) is decoded first.
1. Quoted lines. Lines starting with ">" are history when an attribution introduces them,
   when the block has two or more lines, or when it sits at the top or the bottom of the
   message. A lone ">" line inside prose (">>> http://x <<<") stays text (talon's fixture).
   A URL piece squeezed between two quoted lines is a hard-wrapped part of the quote (a
   long link the client broke), not an answer; a plain word there ("Yes.") is an answer.
   In HTML the quote structure is known instead: blockquote[type=cite], Gmail's
   .gmail_quote, Thunderbird's .moz-cite-prefix, Yahoo's .yahoo_quoted, Outlook for Mac's
   #OLK_SRC_BODY_SECTION, AOL's AOLMsgPart... are history, and so is everything after
   Outlook's #divRplyFwdMsg / #appendonsend, Hotmail's hr#stopSpelling and Zimbra's
   hr#zwchr. A plain <blockquote> is history only if it is the last top-level one (talon's
   convention: earlier ones, and Gmail's "indent" blockquotes with border:none, are the
   sender's own formatting). Text lines starting with "&gt;" (Hotmail, AOL) are quoted
   lines as in plain text. <hr> and Outlook's border-top header divs become a separator
   line, as Outlook's own text rendering has them.
2. Splitters, scanned top to bottom over the unquoted lines:
   a. A forward marker ("---------- Forwarded message ----------", "Begin forwarded
      message:", localised) before any other history keeps everything from there on: the
      sender is sharing that content (talon does the same).
   b. An attribution ("On <date>, <name> wrote:" in ~20 languages, possibly wrapped over
      several lines or sharing a line with the reply) followed by quoted lines only
      introduces that quote: both are dropped and the text after it is kept, so inline and
      bottom-posted answers survive. Followed by unquoted text, it starts the history and
      everything below is cut.
   c. An Outlook header block (at least two of From/Sent/Date/To/Cc/Subject, one of them
      From or Sent/Date, localised, bold "*From:*" too), or a separator line followed by
      a From/Date line, or "-----Original Message-----" (localised) cuts everything below.
      A header block at the very top with no separator above it is the message's own
      header (mail-parser-reply's Polish fixtures) and is skipped instead.
   d. If history was already dropped under 2b and the sender had written something above
      it, a later 2b/2c cut means the quoting is mixed (a thread dump); the cut then moves
      up to the first attribution.
3. The end of the reply, repeated until nothing changes:
   a. Mobile/app footers ("Sent from my iPhone", "Enviado desde mi iPhone", "Von meinem
      iPhone gesendet", "Get Outlook for Android", ...) -- generated text, always dropped.
   b. A signature: after a sig-dash line ("-- ", RFC 3676 4.3; also "--", "---" when at
      most ten lines follow); a mailing-list footer after a long "____" rule; a formulaic
      closing ("Regards," "Med venlig hilsen", "Pozdrawiam,", ...) followed by at most four
      short lines; a lone "-Name" or "/Name" line. These are guesses, so one that would
      leave nothing is not applied ("--\nRoman" alone stays). Thanks-type closings
      ("Thanks,\nAlex") are kept: they are often the whole message.
4. Rule-only lines and blank lines at the ends are trimmed.

A body that is nothing but quoted history returns "" -- the sender added no words, and the
caller decides what an empty reply means (the history itself is already in the thread).

See ``reply_patterns`` for the multilingual word lists.
"""
from __future__ import annotations

import quopri
import re

from gateway.threads import reply_patterns as P
from gateway.threads.reply_html import html_to_lines, html_to_text, normalise_newlines

__all__ = ["extract_reply", "extract_reply_from_html", "html_to_text", "extract_reply_from_body"]

# Line flags: not quoted, quoted with ">" (a heuristic), quoted by HTML structure (certain).
_TEXT, _GT, _HTML = 0, 1, 2

# Splitter kinds.
_FORWARD, _ATTRIBUTION, _HEADER, _SEPARATED_HEADER, _ORIGINAL = range(5)

_ATTR_MAX_LINES = 6       # a wrapped attribution spans at most this many lines
_ATTR_MAX_CHARS = 400
_SIG_MAX_LINES = 10       # "--"/"---" (not the strict "-- ") opens a signature this short
_CLOSING_MAX_LINES = 4    # lines allowed after "Regards," (name, title, phone...)
_CLOSING_MAX_CHARS = 60
_MAX_SIGNATURE_CUTS = 8  # closings/footers stacked at the end; more is not a signature
_BLANK_RUN = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


# =========================================================================== public API

def extract_reply(text: str) -> str:
    """The words newly written in a plain-text e-mail body (see the module rules)."""
    if not text:
        return ""
    text = _repair_quoted_printable(normalise_newlines(text))
    lines = text.split("\n")
    flags = [_GT if P.QUOTE_LINE.match(line) else _TEXT for line in lines]
    return _extract(lines, flags)


def extract_reply_from_html(html: str) -> str:
    """The words newly written in an HTML e-mail body, as plain text."""
    if not html:
        return ""
    lines, quoted = html_to_lines(html)
    # a line the HTML does not mark may still be a Hotmail/AOL quote with literal "&gt; " text
    flags = [_HTML if q else _GT if P.QUOTE_LINE.match(line) else _TEXT
             for line, q in zip(lines, quoted)]
    return _extract(lines, flags)


def extract_reply_from_body(body: str, content_type: str = "text/plain") -> str:
    """Dispatch on the body's MIME type (what ``/work/shared/tools/reply_eval.py`` calls)."""
    if content_type.lower().startswith("text/html"):
        return extract_reply_from_html(body)
    return extract_reply(body)


extract_reply_from_body.accepts_html = True  # type: ignore[attr-defined]  # scorer: raw HTML


# =========================================================================== clean-up

def _repair_quoted_printable(text: str) -> str:
    """Decode a body whose quoted-printable transfer encoding was never undone.

    Seen when a gateway stores the raw part (mail-parser-reply's begins_with_signature: an
    attribution broken as "w=\\nrote:" and "12:53=E2=80=AFAM"). Needs both soft line breaks
    and escaped bytes, and must decode to valid UTF-8; anything else is left alone."""
    if "=\n" not in text or not P.QP_ESCAPE.search(text):
        return text
    try:
        return quopri.decodestring(text.encode("utf-8")).decode("utf-8")
    except (UnicodeError, ValueError):
        return text


# =========================================================================== the algorithm

class _Body:
    """The lines of a body, their quote flags, and each line's header-key role (memoised:
    the header regex is large and a header block is probed from each of its lines)."""

    __slots__ = ("lines", "flags", "_roles")
    _UNSET = "\0"

    def __init__(self, lines: list[str], flags: list[int]) -> None:
        self.lines = lines
        self.flags = flags
        self._roles: list[str | None] = [self._UNSET] * len(lines)

    def role(self, k: int) -> str | None:
        """"from"/"date"/"to"/"cc"/"subject" if line k is a "Key: value" header line."""
        r = self._roles[k]
        if r is self._UNSET:
            line = self.lines[k]
            m = P.HEADER_LINE.match(line) if (":" in line[:60] or "：" in line[:60]) else None
            r = None
            if m:
                key = " ".join(m.group("key").split()).casefold()
                r = P.HEADER_KEY_ROLE.get(key, "?")
            self._roles[k] = r
        return r


def _extract(lines: list[str], flags: list[int]) -> str:
    body = _Body(lines, flags)
    n = len(lines)
    _absorb_wrapped_quote_fragments(lines, flags)
    bounds = _text_bounds(lines, flags)
    kept: list[str] = []
    forwarded: list[str] = []
    first_attribution_at: int | None = None   # len(kept) when the first quote was dropped
    seen_history = False
    i = 0
    while i < n:
        if flags[i]:
            j = i
            while j < n and flags[j]:
                j += 1
            if flags[i] == _HTML and not seen_history and _first_text_is_forward(lines, i, j):
                forwarded = lines[i:]          # an HTML quote container holding a forward
                break
            if flags[i] == _HTML or seen_history or _is_history_block(lines, i, j, bounds):
                seen_history = True
            else:
                kept.extend(lines[i:j])        # a lone ">" line inside prose
            i = j
            continue
        if not lines[i].strip():
            kept.append(lines[i])
            i += 1
            continue
        hit = _splitter_at(body, i)
        if hit is None:
            kept.append(lines[i])
            i += 1
            continue
        kind, end, before = hit
        if before:
            kept.append(before)
        if kind == _FORWARD and not seen_history:
            forwarded = lines[i:]
            break
        if kind == _HEADER and not seen_history and not _has_text(kept):
            i = end                            # the message's own header block: skip it
            continue
        if kind == _ATTRIBUTION and _quote_follows(lines, flags, end):
            if first_attribution_at is None:
                first_attribution_at = len(kept)
            seen_history = True
            i = end
            continue
        if first_attribution_at is not None and _has_text(kept[:first_attribution_at]):
            del kept[first_attribution_at:]    # rule 2d: mixed quoting below a top-post
        break

    reply = [line.rstrip() for line in _strip_trailer(kept)]
    if forwarded:
        reply = reply + ([""] if reply else []) + [line.rstrip() for line in forwarded]
    # blank runs left where quotes were cut collapse to one blank line
    return _BLANK_RUN.sub("\n\n", "\n".join(reply)).strip("\n")


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _absorb_wrapped_quote_fragments(lines: list[str], flags: list[int]) -> None:
    """A URL piece squeezed between two ">" lines is the quote's own text that a client
    hard-wrapped (talon's broken-link fixtures: " (http://x/c/Yz) >", "_nonce=3dd518)").
    A plain word there ("Yes.") is a terse inline answer and stays."""
    for i in range(1, len(lines) - 1):
        if flags[i] or flags[i - 1] != _GT or flags[i + 1] != _GT:
            continue
        s = lines[i].strip()
        if s and (P.URLISH.search(s) or (" " not in s and not P.PLAIN_WORD.match(s))):
            flags[i] = _GT


def _text_bounds(lines: list[str], flags: list[int]) -> tuple[int, int]:
    """(first non-blank line, last non-blank unquoted line); (len, -1) when absent."""
    first = next((k for k, line in enumerate(lines) if line.strip()), len(lines))
    last = next((k for k in range(len(lines) - 1, -1, -1)
                 if not flags[k] and lines[k].strip()), -1)
    return first, last


def _is_history_block(lines: list[str], i: int, j: int, bounds: tuple[int, int]) -> bool:
    """Is the unattributed ">" block lines[i:j] quoted history? Two or more lines, or
    nothing written above it, or nothing written below it."""
    if sum(1 for k in range(i, j) if lines[k].strip(" \t>")) >= 2:
        return True
    first_text, last_unquoted_text = bounds
    return first_text >= i or last_unquoted_text < j


def _quote_follows(lines: list[str], flags: list[int], start: int) -> bool:
    """Is the first non-blank line from ``start`` quoted (and is there one)?"""
    for k in range(start, len(lines)):
        if flags[k]:
            return True
        if lines[k].strip():
            return False
    return False


def _first_text_is_forward(lines: list[str], i: int, j: int) -> bool:
    for k in range(i, j):
        if lines[k].strip():
            return bool(P.FORWARD_LINE.match(lines[k]))
    return False


# --------------------------------------------------------------------------- splitters

def _splitter_at(body: _Body, i: int) -> tuple[int, int, str] | None:
    """(kind, index after the splitter, reply text sharing its line) or None."""
    line = body.lines[i]
    if P.FORWARD_LINE.match(line):
        return _FORWARD, i + 1, ""
    if P.ORIGINAL_MESSAGE_LINE.match(line):
        return _ORIGINAL, i + 1, ""
    if P.SEPARATOR_LINE.match(line) and _separator_heads_header(body, i):
        return _SEPARATED_HEADER, i + 1, ""
    if body.role(i):
        end = _header_block_end(body, i)
        if end is not None:
            return _HEADER, end, ""
    if not P.ATTR_START.match(line):
        shared = _midline_attribution(line, i)   # "reply On ... wrote:" keeps "reply"
        if shared is not None:
            return shared
    end = _attribution_end(body.lines, i)
    if end is not None:
        return _ATTRIBUTION, end, ""
    return None


def _separator_heads_header(body: _Body, i: int) -> bool:
    """"____" / "-----" / <hr> followed by a From: or Date: line (talon's HTML fixtures
    print "From: a Date: b" on one line, so one key is enough after a separator)."""
    for k in range(i + 1, min(i + 3, len(body.lines))):
        if body.flags[k]:
            return False
        if body.lines[k].strip():
            return body.role(k) in ("from", "date")
    return False


def _header_block_end(body: _Body, i: int) -> int | None:
    """End of an Outlook-style header block starting at line i, if it is one: at least
    two roles among From/Sent-Date/To/Cc/Subject, one of them From or Sent/Date."""
    roles: set[str] = set()
    continuation = 0
    k = i
    lines, flags = body.lines, body.flags
    while k < len(lines) and k < i + 14 and not flags[k] and lines[k].strip():
        role = body.role(k)
        if role:
            roles.add(role)
            continuation = 0
        else:
            continuation += 1                  # a wrapped value ("Subject: Two\nline subject")
            if continuation > 2:
                break
        k += 1
    if len(roles) >= 2 and roles & {"from", "date"}:
        return k
    return None


def _attribution_end(lines: list[str], i: int) -> int | None:
    """End of an attribution starting at line i (one line, or wrapped over a few)."""
    first = lines[i].strip()
    if _is_attribution(first):
        return i + 1
    if not P.ATTR_START.match(first) or first[-1] in ".!?":
        return None
    parts = [first]
    size = len(first)
    blanks = 0
    for k in range(i + 1, min(i + _ATTR_MAX_LINES, len(lines))):
        s = lines[k].strip()
        if not s:
            blanks += 1                        # Polymail puts a blank line inside it
            if blanks > 1:
                return None
            continue
        parts.append(s)
        size += len(s) + 1
        if size > _ATTR_MAX_CHARS:
            return None
        if _is_attribution(" ".join(parts)):
            return k + 1
        if s[-1] in ".!?":
            return None
    return None


def _is_attribution(text: str) -> bool:
    if len(text) < 8 or len(text) > _ATTR_MAX_CHARS:
        return False
    last = text[-1]
    if last in ":：":
        if P.ATTR_VERB_COLON.search(text):
            # a date or address, and the shape of a generated line, not "I wrote:"
            return bool(P.HAS_DATE_OR_ADDR.search(text)) and bool(
                P.ATTR_START.match(text) or P.HAS_ADDR.search(text))
        if P.ATTR_VERB_SENDER_COLON.search(text):
            return bool(P.HAS_DATE_OR_ADDR.search(text))
        return bool(P.ATTR_DATE_SENDER.match(text))
    if last == "-":
        return bool(P.ATTR_DASH_FRAMED.match(text))
    if last == ">":
        return bool(P.ATTR_NUMERIC_DATE_SENDER.match(text))
    return False


def _midline_attribution(line: str, i: int) -> tuple[int, int, str] | None:
    """"reply On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:" -> keep "reply"."""
    s = line.rstrip()
    if not s or s[-1] not in ":：-":
        return None
    # only the last _ATTR_MAX_CHARS can hold it: do not rescan a huge line per match
    for m in P.ATTR_LEAD_IN_MIDLINE.finditer(s, max(0, len(s) - _ATTR_MAX_CHARS - 2)):
        rest = s[m.end():]
        if _is_attribution(rest):
            before = s[:m.start()].rstrip(" -")
            if before.strip():
                return _ATTRIBUTION, i + 1, before
    return None


# --------------------------------------------------------------------------- the tail

def _strip_trailer(lines: list[str]) -> list[str]:
    """Drop footers and signatures from the end of the reply (rule 3). Lines keep their
    trailing blanks here: "-- " with its space is the RFC 3676 sig-dash."""
    lines = list(lines)
    _trim(lines)
    signature_cuts = 0
    while lines:
        if len(lines[-1]) <= 160 and P.MOBILE_FOOTER.match(lines[-1].strip()):
            lines.pop()
            _trim(lines)
            continue
        signature_cuts += 1
        if signature_cuts > _MAX_SIGNATURE_CUTS:
            break
        cut = _signature_start(lines)
        if cut is None or not _has_text(lines[:cut]):
            break
        del lines[cut:]
        _trim(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def _trim(lines: list[str]) -> None:
    while lines and (not lines[-1].strip() or P.RULE_ONLY_LINE.match(lines[-1])):
        lines.pop()


def _signature_start(lines: list[str]) -> int | None:
    """Index where a signature starts at the end of ``lines``, or None (rule 3b)."""
    nonblank = [k for k, line in enumerate(lines) if line.strip()]
    if len(nonblank) < 2:
        return None
    candidates: list[int] = []

    # The sig-dash: strict "-- " always, the sloppy forms only before a short block.
    for k in nonblank[1:]:
        if P.SIG_DASH_LINE.match(lines[k]):
            after = sum(1 for x in nonblank if x > k)
            if lines[k] == P.SIG_DASH_STRICT or after <= _SIG_MAX_LINES:
                candidates.append(k)
                break

    tail = nonblank[-(_CLOSING_MAX_LINES + 4):]
    # Mailman / list footers open with a long underscore rule.
    for k in tail:
        if P.LIST_FOOTER_RULE.match(lines[k]) and k != nonblank[0]:
            candidates.append(k)
            break

    # A formulaic closing followed by a short name block.
    for pos in range(len(nonblank) - 1, max(-1, len(nonblank) - _CLOSING_MAX_LINES - 2), -1):
        k = nonblank[pos]
        if P.VALEDICTION_LINE.match(lines[k]):
            after = [lines[x].strip() for x in nonblank[pos + 1:]]
            if all(len(a) <= _CLOSING_MAX_CHARS and not P.POSTSCRIPT.match(a) for a in after):
                candidates.append(k)
            break

    # "-Name" / "/Name" alone on the last line, unless it ends a bullet list.
    last = nonblank[-1]
    prev = lines[nonblank[-2]]
    if (P.DASH_NAME_LINE.match(lines[last]) and not P.BULLET_LINE.match(prev)
            and not prev.rstrip().endswith(":")):
        candidates.append(last)

    return min(candidates) if candidates else None
