"""English and German for the admin UI, from gettext catalogs (``locales/<lang>/LC_MESSAGES/*.po``).

The ``.po`` files are compiled in memory at start-up with Babel, so no binary ``.mo`` lives in the repo.
Every ``.po`` of a language is merged, so each area of the UI keeps its own catalog.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from functools import cache
from importlib import resources

from babel import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from mailroom.errors import MailroomError, Text

LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = "en"

_current: ContextVar[NullTranslations | None] = ContextVar("mailroom_translations", default=None)


@cache
def translations(language: str) -> NullTranslations:
    folder = resources.files("mailroom.web") / "locales" / language / "LC_MESSAGES"
    merged: NullTranslations | None = None
    if folder.is_dir():
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".po"):
                continue
            catalog = read_po(io.BytesIO(entry.read_bytes()), locale=Locale.parse(language))
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            loaded = Translations(buffer)
            if merged is None:
                merged = loaded
            else:
                assert isinstance(merged, Translations)
                merged.merge(loaded)
    return merged or NullTranslations()


@cache
def language_names() -> dict[str, str]:
    """Each UI language in its own words ("Deutsch"), as a user looks for it whatever the page's language."""
    return {language: (Locale.parse(language).get_display_name(language) or language).capitalize()
            for language in LANGUAGES}


def choose_language(preferred: str | None, accept_language: str | None) -> str:
    """The user's preferred language when the UI has it, else the browser's, else English."""
    candidates: list[str] = []
    if preferred:
        candidates.append(preferred.replace("-", "_"))
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip()
        if tag and tag != "*":
            candidates.append(tag.replace("-", "_"))
    return negotiate_locale(candidates, list(LANGUAGES), sep="_") or DEFAULT_LANGUAGE


def activate(language: str) -> None:
    _current.set(translations(language if language in LANGUAGES else DEFAULT_LANGUAGE))


def _active() -> NullTranslations:
    return _current.get() or translations(DEFAULT_LANGUAGE)


def gettext(message: str) -> str:
    return _active().ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active().ungettext(singular, plural, n)


def translate(text: Text | str) -> str:
    """A core :class:`Text` in the active language: its template is the message id, its params are filled in
    (Texts among them translated too). English where the catalog has no entry."""
    if isinstance(text, str):
        return gettext(text) if text else text
    return text.render(lambda template: gettext(template) if template else template)


def error_text(error: BaseException) -> str:
    """What a person reads about ``error``: a mailroom error in the active language, anything else as is."""
    return translate(error.text) if isinstance(error, MailroomError) else str(error)
