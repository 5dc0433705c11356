"""What an exam expects on screen: the exam platform (its browser, and the page titles and hosts that are the
exam) and the extra applications the exam allows. Everything else in focus is *off-exam*
(hall_server/review/signals.py).

Stored as JSON in ``exam.expected_state``; not personal (it names software, not students), so not sealed.
Application names are matched without regard to case and to a trailing ``.exe``, with ``*`` wildcards
(``libreoffice*``); titles and hosts are matched as substrings, without regard to case.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

from hall_server.store.db import write_transaction

#: At most this many names per list, each at most this long: the settings are typed by an organiser.
MAX_NAMES = 50
MAX_NAME_CHARS = 200


#: The ``invigil-provision exam`` option that sets each list.
OPTIONS = {
    "platform_apps": "--platform-app",
    "platform_titles": "--platform-title",
    "platform_hosts": "--platform-host",
    "allowed_apps": "--allow-app",
    "watch_words": "--watch-word",
}


class BadExpectedState(ValueError):
    """A name in the expected state that cannot be stored; the message says which and why."""


@dataclass(frozen=True)
class ExpectedState:
    #: The browser(s) the exam platform runs in (``firefox``, ``chrome*``, ``safe exam browser``).
    platform_apps: tuple[str, ...] = ()
    #: Window-title substrings of the exam platform's pages (``Ans Delft``, ``Exam question``).
    platform_titles: tuple[str, ...] = ()
    #: Hosts of the exam platform (``ans.app``): other allowed hosts a student opens are "new sites".
    platform_hosts: tuple[str, ...] = ()
    #: Further applications the exam allows in focus (a spreadsheet, a statistics package, a terminal).
    allowed_apps: tuple[str, ...] = field(default=())
    #: Words that raise a ``screen_text`` signal when the text read off a screen holds them.
    watch_words: tuple[str, ...] = ()
    #: Whether the text on this exam's screens is read (tesseract; hall_server/review/screentext.py).
    read_screen_text: bool = False

    @property
    def declared(self) -> bool:
        """Off-exam focus is only known once the platform or some allowed application is declared."""
        return bool(self.platform_apps or self.allowed_apps)

    def to_json(self) -> dict[str, Any]:
        return {
            name: values if isinstance(values, bool) else list(values)
            for name, values in asdict(self).items()
        }


def _norm_app(name: str) -> str:
    name = name.strip().casefold()
    return name.removesuffix(".exe")


def app_matches(app: str | None, patterns: tuple[str, ...]) -> bool:
    """Whether the focused application ``app`` is one of ``patterns`` (pure)."""
    if not app:
        return False
    normalised = _norm_app(app)
    return any(fnmatch.fnmatchcase(normalised, _norm_app(pattern)) for pattern in patterns)


def text_matches(text: str | None, substrings: tuple[str, ...]) -> bool:
    if not text:
        return False
    folded = text.casefold()
    return any(part.casefold() in folded for part in substrings)


def check(state: ExpectedState) -> ExpectedState:
    """The state with names trimmed and duplicates dropped; ``BadExpectedState`` for a name that is empty,
    too long or has control characters."""
    cleaned: dict[str, Any] = {"read_screen_text": bool(state.read_screen_text)}
    for name in OPTIONS:
        values = getattr(state, name)
        option = OPTIONS[name]
        kept: list[str] = []
        for value in values:
            text = str(value).strip()
            if not text:
                raise BadExpectedState(f"{option} needs a name, not an empty text")
            if len(text) > MAX_NAME_CHARS:
                raise BadExpectedState(f"{option} {text[:40]!r}… is longer than {MAX_NAME_CHARS} characters")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise BadExpectedState(
                    f"{option} {text!r} contains a control character; type the name plainly"
                )
            if text.casefold() not in (k.casefold() for k in kept):
                kept.append(text)
        if len(kept) > MAX_NAMES:
            raise BadExpectedState(f"at most {MAX_NAMES} names per {option}, not {len(kept)}")
        cleaned[name] = tuple(kept)
    return ExpectedState(**cleaned)


def parse(text: str | None) -> ExpectedState:
    """The stored JSON -> the state; an empty or unreadable value is "nothing declared"."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return ExpectedState()
    if not isinstance(value, dict):
        return ExpectedState()
    lists = {
        name: tuple(str(item) for item in items)
        for name, items in value.items()
        if name in OPTIONS and isinstance(items, list)
    }
    return ExpectedState(**lists, read_screen_text=value.get("read_screen_text") is True)


def load(db: sqlite_utils.Database, exam_id: int) -> ExpectedState:
    row = db.execute("SELECT expected_state FROM exam WHERE id = ?", [exam_id]).fetchone()
    if row is None:
        raise LookupError(f"no exam {exam_id}")
    return parse(row[0])


def save(db: sqlite_utils.Database, exam_id: int, state: ExpectedState) -> ExpectedState:
    """Check and store ``state`` as the exam's expected state (replacing the one before)."""
    state = check(state)
    with write_transaction(db):
        updated = db.execute(
            "UPDATE exam SET expected_state = ? WHERE id = ?", [json.dumps(state.to_json()), exam_id]
        ).rowcount
    if not updated:
        raise LookupError(f"no exam {exam_id}")
    return state
