"""The student's language: gettext catalogues (Dutch, English) for every message the agent shows.

``_`` looks the message up in the catalogue chosen by :func:`set_language`: ``--lang``, else the system
locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``, and on Windows the user's UI language), else
English (the source language). The Dutch catalogue is ``agent/locale/nl/LC_MESSAGES/invigil-agent.mo``,
compiled from the ``.po`` next to it (``make agent-locale``).
"""

from __future__ import annotations

import gettext
import locale
import os
import sys
from pathlib import Path

DOMAIN = "invigil-agent"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("en", "nl")

_translation: gettext.NullTranslations = gettext.NullTranslations()


def system_language() -> str:
    """The two-letter language of the user's locale, or ``en`` (Windows: the UI language)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value and value not in ("C", "POSIX") and not value.startswith("C."):
            return value.split(":")[0][:2].lower()
    if sys.platform == "win32":
        import ctypes

        lang_id = ctypes.windll.kernel32.GetUserDefaultUILanguage()  # type: ignore[attr-defined,unused-ignore]
        return (locale.windows_locale.get(int(lang_id), "en")[:2]).lower()
    found = locale.getlocale()[0] or ""
    return found[:2].lower() or "en"


def set_language(lang: str | None = None) -> str:
    """Use ``lang`` (or the system's language); a language without a catalogue falls back to English."""
    global _translation
    chosen = (lang or system_language())[:2].lower()
    if chosen not in LANGUAGES:
        chosen = "en"
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[chosen], fallback=True)
    return chosen


def _(message: str) -> str:
    """``message`` in the student's language."""
    return _translation.gettext(message)
