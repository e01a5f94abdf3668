"""The catalogs are complete and in step with the code; outbound text follows the recipient."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from gateway.i18n import available_locales, best_locale, translations_for

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"
CATALOGS = sorted(LOCALES.glob("*/LC_MESSAGES/messages.po"))
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\{ *\w+ *\}\}")


def load(path: Path):
    with path.open("rb") as f:
        return read_po(f, locale=path.parts[-3])


def test_english_and_spanish_ship():
    assert {"en", "es"} <= set(available_locales())


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.parts[-3])
def test_every_message_is_translated_in_every_plural_form(po: Path):
    catalog = load(po)
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        # Babel 2.19 gives Spanish 3 plural forms: an empty third form falls back to English (STACK.md).
        assert len(strings) == (catalog.num_plurals if message.pluralizable else 1), message.id
        assert all(s.strip() for s in strings), f"{po.parts[-3]}: untranslated {message.id!r}"
        source = message.id if isinstance(message.id, str) else message.id[0]
        for s in strings:
            assert sorted(PLACEHOLDER.findall(s)) == sorted(PLACEHOLDER.findall(source)), (message.id, s)


def test_the_template_is_in_step_with_the_code(tmp_path: Path):
    fresh = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(LOCALES / "babel.cfg"),
                    "-k", "_t", "-o", str(fresh), "--no-location", "."], cwd=ROOT, check=True,
                   capture_output=True)
    with fresh.open("rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    for po in CATALOGS:
        have = {m.id for m in load(po) if m.id}
        assert wanted - have == set(), f"{po.parts[-3]} lacks: {sorted(map(str, wanted - have))[:5]} (run pybabel update)"


def test_the_best_shipped_locale_is_chosen():
    assert best_locale("es_MX") == "es"
    assert best_locale("fr", "es") == "es"
    assert best_locale(None, "de") == "en"
    assert translations_for("es").gettext("Urgent") == "Urgente"
    assert translations_for("xx").gettext("Urgent") == "Urgent"
