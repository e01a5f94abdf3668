"""Message catalogs (babel) and the per-recipient / per-request language.

Catalogs are the .po files in locales/; they are compiled in memory at start-up (no .mo files to
keep in step). There is never a global language: outbound text uses the recipient's locale and pages
use the request's, through `translations_for`.
"""
from __future__ import annotations

import contextvars
import io
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LOCALE = "en"


def _find_locales_dir() -> Path:
    # Installed as a package (non-editable), the catalogs ship inside gateway/locales.
    packaged = Path(__file__).resolve().parent / "locales"
    return LOCALES_DIR if LOCALES_DIR.is_dir() else packaged


@lru_cache(maxsize=1)
def _catalogs() -> dict[str, Translations]:
    found: dict[str, Translations] = {}
    for po in sorted(_find_locales_dir().glob("*/LC_MESSAGES/messages.po")):
        code = po.parts[-3]
        with po.open("rb") as f:
            catalog = read_po(f, locale=code)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        found[code] = Translations(fp=buf)
    return found


def available_locales() -> list[str]:
    """The languages we ship, English first."""
    return [DEFAULT_LOCALE] + sorted(code for code in _catalogs() if code != DEFAULT_LOCALE)


def best_locale(*candidates: str | None) -> str:
    """The first candidate we ship (or whose language we ship), else English."""
    shipped = set(available_locales())
    for candidate in candidates:
        if not candidate:
            continue
        code = candidate.replace("-", "_")
        if code in shipped:
            return code
        language = code.split("_", 1)[0].lower()
        if language in shipped:
            return language
    return DEFAULT_LOCALE


def translations_for(locale: str | None) -> NullTranslations:
    code = best_locale(locale)
    return _catalogs().get(code) or NullTranslations()


def babel_locale(locale: str | None) -> Locale:
    try:
        return Locale.parse(best_locale(locale))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


# The language of the current web request or of the message being rendered.
current_translations: contextvars.ContextVar[NullTranslations] = contextvars.ContextVar(
    "current_translations", default=NullTranslations()
)


def gettext(message: str) -> str:
    return current_translations.get().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return current_translations.get().ngettext(singular, plural, n)


_ = gettext


def text_direction(locale: str | None) -> str:
    """"rtl" for right-to-left languages (Arabic), else "ltr": the page's `dir` attribute."""
    return "rtl" if babel_locale(locale).character_order == "right-to-left" else "ltr"
