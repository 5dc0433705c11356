"""The agent speaks Dutch and English: the shipped catalogue is complete and compiled from its .po, the
system locale or --lang picks it, and the real command answers in Dutch."""

from __future__ import annotations

import io
import os
import subprocess

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from agent.i18n import LOCALE_DIR, _, set_language, system_language
from agent.status import recorded_text

from support import BIN

NL = LOCALE_DIR / "nl" / "LC_MESSAGES"


def marked_messages() -> set[str]:
    return {message for _file, _line, message, _comments, _context in extract_from_dir(LOCALE_DIR.parent)}


def test_every_message_the_agent_shows_has_a_dutch_translation():
    with open(NL / "invigil-agent.po", "rb") as po_file:
        catalogue = read_po(po_file)
    translated = {message.id: message.string for message in catalogue if message.id}
    assert marked_messages() <= set(translated), "run make agent-locale"
    assert all(translated[message] for message in marked_messages())
    for message, dutch in translated.items():  # the same {placeholders} on both sides
        assert sorted(part.split("}")[0] for part in message.split("{")[1:]) == sorted(
            part.split("}")[0] for part in dutch.split("{")[1:]
        ), message


def test_the_shipped_mo_is_the_compiled_po():
    with open(NL / "invigil-agent.po", "rb") as po_file:
        po = {m.id: m.string for m in read_po(po_file) if m.id}
    mo = {m.id: m.string for m in read_mo(io.BytesIO((NL / "invigil-agent.mo").read_bytes())) if m.id}
    assert mo == po, "run make agent-locale"


def test_lang_and_the_system_locale_choose_the_language(monkeypatch):
    try:
        assert set_language("nl") == "nl"
        assert (
            recorded_text(5)
            == "Opgenomen: je schermen elke 5 s; geen camera, geen microfoon, geen toetsaanslagen."
        )
        assert set_language("fr") == "en" and _("Raise hand") == "Raise hand"  # no French: English
        monkeypatch.setenv("LANGUAGE", "nl_BE:en")
        assert system_language() == "nl"
        monkeypatch.delenv("LANGUAGE")
        monkeypatch.setenv("LC_ALL", "C.UTF-8")
        monkeypatch.setenv("LANG", "en_GB.UTF-8")
        assert system_language() == "en"
    finally:
        set_language("en")


def test_the_practice_check_answers_in_dutch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env["LANGUAGE"] = "nl"
    done = subprocess.run(
        [str(BIN / "invigil-agent"), "check", "--out", str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "[FAIL] Invigil kan je schermen niet opnemen." in done.stdout
    assert done.stdout.rstrip().endswith(
        "NIET KLAAR: los de punten met [FAIL] op en doe de controle opnieuw."
    )
    english = subprocess.run(
        [str(BIN / "invigil-agent"), "check", "--out", str(tmp_path), "--lang", "en"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "[FAIL] Invigil cannot capture your screens." in english.stdout
