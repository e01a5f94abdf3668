"""`gateway extract-reply [FILE]`: the visible reply of an e-mail or plain text, from a file or stdin."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GATEWAY = [sys.executable, "-m", "gateway", "extract-reply"]

PLAIN = b"Thanks, see you Friday!\n\nOn Mon, Mar 3, 2025 at 9:00 AM Ms. Rivera <rivera@school.example> wrote:\n> Please sign the slip.\n"
MIME = (b"From: Ana <ana@family.example>\r\nTo: reply+abc@reply.example\r\nSubject: Re: Field trip\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"S=ED, la firmar=E9 ma=F1ana.\r\n\r\nEl lun, 3 mar 2025 a las 9:00, Ms. Rivera escribi=F3:\r\n> Please sign the slip.\r\n")


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*GATEWAY, *args], input=stdin, capture_output=True, timeout=30)


def test_plain_text_from_stdin():
    result = run(stdin=PLAIN)
    assert result.returncode == 0 and result.stdout.decode() == "Thanks, see you Friday!\n"


def test_a_mime_message_from_a_file_is_decoded_and_stripped(tmp_path: Path):
    path = tmp_path / "reply.eml"
    path.write_bytes(MIME)
    result = run(str(path))
    assert result.returncode == 0 and result.stdout.decode() == "Sí, la firmaré mañana.\n"


def test_a_missing_file_is_one_line_on_stderr_and_exit_2(tmp_path: Path):
    result = run(str(tmp_path / "nope.eml"))
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().count("\n") == 1 and "nope.eml" in result.stderr.decode()
