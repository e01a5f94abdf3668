"""Throughput of the visible-reply extractor over the email-replies corpus.

Runs ``gateway.threads.reply_text`` over every corpus case, repeatedly, for a few seconds and
prints messages per second. In the same run it times a baseline on the same inputs and
prints the ratio. The baseline is talon if it is importable (talon's own HTML path for HTML
inputs), else ``email_reply_parser``, else a trivial "cut at the first '>' line" split.
Peers are never project dependencies: install one into the venv to compare with it.

Inputs are prepared once, before timing, the way the tests feed them: .txt as is; .eml
through ``decode_bodies`` (text/plain preferred, HTML-only through the HTML path); .html
through the HTML path. Only extraction is timed, not MIME decoding.

    .venv/bin/python benchmarks/reply_text.py [--seconds 3] [--corpus PATH]

The corpus is $GATEWAY_REPLY_CORPUS, else ../shared/corpora/email-replies beside the repo.
Target: at least 5,000 messages/s for ours.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.channels.email_parse import decode_bodies  # noqa: E402
from gateway.threads.reply_text import (  # noqa: E402
    extract_reply,
    extract_reply_from_html,
    html_to_text,
)

# (body, is_html)
Inputs = list[tuple[str, bool]]
Extractor = Callable[[str, bool], str]


def corpus_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("GATEWAY_REPLY_CORPUS")
    return Path(env) if env else REPO.parent / "shared" / "corpora" / "email-replies"


def load_inputs(root: Path) -> Inputs:
    inputs: Inputs = []
    with (root / "MANIFEST.tsv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            path = root / row["input_file"]
            data = path.read_bytes()
            if path.suffix == ".eml":
                text, html = decode_bodies(data)
                inputs.append((text, False) if text is not None else (html or "", True))
            else:
                inputs.append((data.decode("utf-8", errors="replace"), path.suffix == ".html"))
    return inputs


def ours(body: str, is_html: bool) -> str:
    return extract_reply_from_html(body) if is_html else extract_reply(body)


def baseline() -> tuple[str, Extractor]:
    """The best peer that imports here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from talon import quotations
            from talon import utils as talon_utils
        quotations.register_xpath_extensions()

        def talon(body: str, is_html: bool) -> str:
            if not is_html:
                return quotations.extract_from_plain(body)
            out = talon_utils.html_to_text(quotations.extract_from_html(body))
            return out.decode("utf-8") if isinstance(out, bytes) else (out or "")

        return "talon (extract_from_plain / extract_from_html)", talon
    except Exception:  # noqa: BLE001 -- not installed or broken: next candidate
        pass
    try:
        from email_reply_parser import EmailReplyParser

        def erp(body: str, is_html: bool) -> str:
            return EmailReplyParser.parse_reply(html_to_text(body) if is_html else body)

        return "email_reply_parser (parse_reply)", erp
    except Exception:  # noqa: BLE001
        pass

    def first_quote(body: str, is_html: bool) -> str:
        text = html_to_text(body) if is_html else body
        out = []
        for line in text.splitlines():
            if line.lstrip().startswith(">"):
                break
            out.append(line)
        return "\n".join(out).strip()

    return "trivial split at the first '>' line", first_quote


def rate(fn: Extractor, inputs: Inputs, seconds: float) -> tuple[float, int]:
    """Messages per second over whole passes of the corpus for about ``seconds``."""
    for body, is_html in inputs:            # warm-up: imports, regex caches
        fn(body, is_html)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for body, is_html in inputs:
            fn(body, is_html)
        count += len(inputs)
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start), count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per extractor (default 3)")
    ap.add_argument("--corpus", help="corpus folder (default: see module docstring)")
    args = ap.parse_args(argv)

    root = corpus_dir(args.corpus)
    if not (root / "MANIFEST.tsv").is_file():
        print(f"corpus not found: {root} (set GATEWAY_REPLY_CORPUS)", file=sys.stderr)
        return 2
    inputs = load_inputs(root)
    html_cases = sum(is_html for _, is_html in inputs)
    print(f"corpus: {root} ({len(inputs)} cases, {html_cases} HTML)")

    our_rate, our_n = rate(ours, inputs, args.seconds)
    print(f"ours      {our_rate:10,.0f} msg/s  ({our_n:,} messages)"
          f"  {'OK' if our_rate >= 5000 else 'BELOW'} target 5,000 msg/s")
    name, fn = baseline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base_rate, base_n = rate(fn, inputs, args.seconds)
    print(f"baseline  {base_rate:10,.0f} msg/s  ({base_n:,} messages)  {name}")
    print(f"ratio     {our_rate / base_rate:10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
