"""HTML e-mail bodies as lines of text, for reading and for reply extraction.

``html.parser`` builds a forgiving tree (unknown end tags ignored, unclosed elements closed
with their parent, nesting capped); the tree is then rendered one line per block, with
whitespace collapsed outside <pre>, links as their text, script/style/head dropped, <br> a
line break, <li> a "• " item, and <hr> a "____" rule (Outlook's plain-text separator).
Standard library only.

Public API
==========
``html_to_text(html)``   readable text; each blockquote level prefixes its lines with "> ".
``html_to_lines(html)``  the lines plus, per line, whether the HTML marks it as quoted
                         history -- the input of ``reply_text.extract_reply_from_html``.
``normalise_newlines(text)``  CRLF/CR to LF, byte-order marks removed (both modules use it).

What ``html_to_lines`` marks as history (rule 1 of ``reply_text``): quote containers
(blockquote[type=cite], .gmail_quote, .moz-cite-prefix, .yahoo_quoted,
#OLK_SRC_BODY_SECTION, AOLMsgPart...), everything from a history marker on (#divRplyFwdMsg,
#appendonsend, hr#stopSpelling, hr#zwchr...), and a plain <blockquote> only if it is the
last top-level one and not Gmail's border:none "indent". It also drops Gmail/Thunderbird
signature blocks and puts a "____" rule line above Outlook's border-top header divs, as
Outlook's own text rendering has them. The class/id lists are in ``reply_patterns``.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from gateway.threads import reply_patterns as P

__all__ = ["html_to_text", "html_to_lines", "normalise_newlines"]


# =========================================================================== public API

def html_to_text(html: str) -> str:
    """Readable text of an HTML document: one line per block, "> " per blockquote level,
    links as their text, script/style/head dropped, whitespace collapsed outside <pre>."""
    if not html:
        return ""
    lines, depths = _HtmlRenderer(for_extraction=False).render(normalise_newlines(html))
    text = "\n".join(("> " * d + line) if d else line for line, d in zip(lines, depths))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_to_lines(html: str) -> tuple[list[str], list[int]]:
    """The lines of an HTML e-mail body and, per line, 1 if its HTML structure marks it as
    quoted history (see the module docstring), else 0."""
    return _HtmlRenderer(for_extraction=True).render(normalise_newlines(html))


def normalise_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\ufeff", "")


# =========================================================================== rendering

_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "body", "center", "dd", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "html", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
    "thead", "tfoot", "tr", "ul",
})
_SKIP = frozenset({"script", "style", "head", "title", "xml", "template", "noscript"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_SELF_CLOSING_SIBLINGS = frozenset({"p", "li", "tr", "td", "th", "dt", "dd", "option"})
_MAX_DEPTH = 256
_WS = re.compile(r"[ \t\n\r\f\u00a0\u200b]+")
_RULE = "_" * 32                       # Outlook's plain-text rendering of its separator


class _Node:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []


class _TreeBuilder(HTMLParser):
    """A forgiving DOM-ish tree from html.parser: unknown end tags are ignored, unclosed
    elements close with their parent, nesting is capped (pathological mail)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {})
        self.stack = [self.root]
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag == "body":
            self.skip = 0                      # an unclosed <head> must not hide the body
        if self.skip:
            return
        node = _Node(tag, {k: (v or "") for k, v in attrs})
        if tag in _SELF_CLOSING_SIBLINGS and self.stack[-1].tag == tag and len(self.stack) > 1:
            self.stack.pop()                   # <p>a<p>b, <li>a<li>b
        self.stack[-1].children.append(node)
        if tag not in _VOID and len(self.stack) < _MAX_DEPTH:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP or self.skip:
            return
        self.stack[-1].children.append(_Node(tag, {k: (v or "") for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "br":                        # "</br>" is a <br> to browsers
            self.stack[-1].children.append(_Node("br", {}))
            return
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skip and data:
            self.stack[-1].children.append(data)


class _HtmlRenderer:
    """Tree to lines. For extraction each line carries a quote mark (1 = history, 0 = not);
    otherwise the blockquote depth (for ``html_to_text``)."""

    def __init__(self, for_extraction: bool) -> None:
        self.extract = for_extraction
        self.lines: list[str] = []
        self.marks: list[int] = []
        self.parts: list[str] = []
        self.part_mark = 0
        self.quoted = 0
        self.depth = 0
        self.history = False
        self.pre = 0
        self.last_quote: _Node | None = None

    def render(self, html: str) -> tuple[list[str], list[int]]:
        builder = _TreeBuilder()
        try:
            builder.feed(html)
            builder.close()
        except Exception:                     # html.parser is lenient; belt and braces
            pass
        if self.extract:
            self.last_quote = _last_top_level_blockquote(builder.root)
        self._walk(builder.root)
        self._flush()
        return self.lines, self.marks

    def _mark(self) -> int:
        if not self.extract:
            return self.depth
        return 1 if (self.quoted or self.history) else 0

    def _flush(self, keep_empty: bool = False) -> None:
        text = "".join(self.parts)
        if not self.pre:
            text = text.strip(" ")
        if text or keep_empty:
            self.lines.append(text)
            self.marks.append(self.part_mark if text else self._mark())
        self.parts = []

    def _text(self, data: str) -> None:
        if not self.pre:
            data = _WS.sub(" ", data)
            if not self.parts and data.startswith(" "):
                data = data.lstrip(" ")
            if not data:
                return
            if self.parts and self.parts[-1].endswith(" ") and data.startswith(" "):
                data = data[1:]
        else:
            data = data.replace("\u00a0", " ")
            chunks = data.split("\n")
            for c in chunks[:-1]:
                self._add(c)
                self._flush(keep_empty=True)
            data = chunks[-1]
        if data:
            self._add(data)

    def _add(self, data: str) -> None:
        if not self.parts:
            self.part_mark = self._mark()
        self.parts.append(data)

    def _walk(self, node: _Node) -> None:
        for child in node.children:
            if isinstance(child, str):
                self._text(child)
            else:
                self._element(child)

    def _element(self, el: _Node) -> None:
        tag = el.tag
        if tag == "br":
            self._flush(keep_empty=True)
            return
        if tag == "hr":
            self._flush()
            if self.extract and _tokens(el) & P.HTML_HISTORY_MARKERS:
                self.history = True
            self._add(_RULE)
            self._flush()
            return
        if tag in ("img", "input", "meta", "link"):
            return
        tokens = _tokens(el) if self.extract else frozenset()
        if self.extract and tokens & P.HTML_SIGNATURE_TOKENS:
            return                            # Gmail/Thunderbird mark the signature block
        if self.extract and tokens & P.HTML_HISTORY_MARKERS:
            self.history = True
        quote = self.extract and (_is_quote_container(tokens)
                                  or (tag == "blockquote" and self._is_quote_blockquote(el)))
        block = tag in _BLOCK or quote
        if block:
            self._flush()
        if self.extract and tag == "div" and "border-top" in el.attrs.get("style", ""):
            self._add(_RULE)                  # Outlook's header divs: a separator, as in its text
            self._flush()
        if tag == "li":
            self._add("• ")
        elif tag in ("td", "th") and self.parts:
            self._add(" ")
        if quote:
            self.quoted += 1
        if tag == "blockquote" and not self.extract:
            self.depth += 1
        if tag == "pre":
            self.pre += 1
        self._walk(el)
        if block:
            self._flush()
        if tag == "pre":
            self.pre -= 1
        if quote:
            self.quoted -= 1
        if tag == "blockquote" and not self.extract:
            self.depth -= 1

    def _is_quote_blockquote(self, el: _Node) -> bool:
        if el.attrs.get("type", "").lower() == "cite":
            return True                       # Apple Mail, Thunderbird
        style = el.attrs.get("style", "").replace(" ", "").lower()
        if "border:none" in style:
            return False                      # Gmail's "indent more"
        return el is self.last_quote


def _tokens(el: _Node) -> frozenset[str]:
    cls = el.attrs.get("class", "")
    ident = el.attrs.get("id", "")
    if not cls and not ident:
        return frozenset()
    return frozenset((cls + " " + ident).lower().split())


def _is_quote_container(tokens: frozenset[str]) -> bool:
    if not tokens:
        return False
    if tokens & P.HTML_QUOTE_CONTAINERS:
        return True
    return any(s in t for t in tokens for s in P.HTML_QUOTE_CONTAINER_PARTS)


def _last_top_level_blockquote(root: _Node) -> _Node | None:
    """The last <blockquote> not nested in another one (talon's cut_blockquote)."""
    last: _Node | None = None
    stack = [iter(root.children)]
    while stack:
        for child in stack[-1]:
            if isinstance(child, _Node):
                if child.tag == "blockquote":
                    last = child
                else:
                    stack.append(iter(child.children))
                    break
        else:
            stack.pop()
    return last
