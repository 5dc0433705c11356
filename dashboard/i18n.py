"""The staff's language: every dashboard page in Dutch or English (Flask-Babel, gettext catalogues).

The language of a request is the one its user chose with the page header's EN | NL switch (a cookie, so it
outlives logins: the session is renewed at every login), else the best match of the browser's
``Accept-Language``, else English, the source language. The Dutch catalogue is
``dashboard/translations/nl/LC_MESSAGES/messages.mo``, compiled from the ``.po`` next to it
(``make dashboard-locale``). Scripts get their words from the page (``data-i18n``), never from gettext.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel, get_locale

from .auth import safe_next
from .blueprint import bp

#: The languages with a catalogue; the first is the source language and the default.
LANGUAGES = ("en", "nl")
#: The cookie that keeps a user's explicit choice.
COOKIE = "invigil_lang"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
TRANSLATIONS = Path(__file__).with_name("translations")

babel = Babel()


def select_language() -> str:
    """The user's choice, else the browser's best match of :data:`LANGUAGES`, else English."""
    chosen = request.cookies.get(COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0]) or LANGUAGES[0]


def current_language() -> str:
    """The two-letter language of this request's pages (``<html lang>``)."""
    locale = get_locale()
    return locale.language if locale is not None else LANGUAGES[0]


def init_app(app: Flask) -> None:
    babel.init_app(app, default_translation_directories=str(TRANSLATIONS), locale_selector=select_language)


@bp.app_context_processor
def _language_globals() -> dict[str, object]:
    return {"current_language": current_language, "languages": LANGUAGES}


@bp.post("/language")
def choose_language() -> ResponseReturnValue:
    """The header's switch: remember the language and show the same page again (a form with the CSRF token,
    checked by the blueprint like every other POST)."""
    response = redirect(safe_next(request.form.get("next")))
    chosen = request.form.get("lang", "")
    if chosen in LANGUAGES:
        response.set_cookie(
            COOKIE, chosen, max_age=COOKIE_MAX_AGE_S, secure=request.is_secure, httponly=True, samesite="Lax"
        )
    return response
