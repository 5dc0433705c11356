"""Staff read the dashboard in Dutch or English: the shipped catalogue is complete and compiled from its
.po, the browser's Accept-Language picks the language, the header's switch overrides it, and <html lang>
says it."""

from __future__ import annotations

import io
import json
import re
from html import unescape

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from halls import PASSWORD
from pages import login

from dashboard import script_texts
from dashboard.i18n import TRANSLATIONS
from hall_server.app import create_app
from hall_server.store import db, users

NL = TRANSLATIONS / "nl" / "LC_MESSAGES"
BABEL_CFG = TRANSLATIONS.parent.parent / "babel.cfg"
PLACEHOLDER = re.compile(r"\{(\w+)\}|%\((\w+)\)s")


def marked_messages() -> set[str]:
    """Every message the dashboard marks for translation, found the way make dashboard-locale finds them."""
    from babel.messages.frontend import parse_mapping_cfg

    with open(BABEL_CFG) as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {"_": None, "_l": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}
    found = extract_from_dir(TRANSLATIONS.parent, method_map, options_map, keywords=keywords)
    return {message if isinstance(message, str) else message[0] for _f, _l, message, _c, _x in found}


def read_catalogue() -> dict[str, str]:
    with open(NL / "messages.po", "rb") as po_file:
        # A plural entry by its singular, with its Dutch plural form.
        return {
            (m.id if isinstance(m.id, str) else m.id[0]): (
                m.string if isinstance(m.string, str) else m.string[1]
            )
            for m in read_po(po_file)
            if m.id
        }


def placeholders(text: str) -> list[str]:
    return sorted(a or b for a, b in PLACEHOLDER.findall(text))


def test_every_string_of_the_dashboard_has_a_dutch_translation():
    translated = read_catalogue()
    marked = marked_messages()
    assert len(marked) > 250
    assert marked <= set(translated), f"run make dashboard-locale: {sorted(marked - set(translated))[:5]}"
    untranslated = sorted(m for m in marked if not translated[m].strip())
    assert not untranslated, untranslated[:5]
    for message, dutch in translated.items():  # the same placeholders on both sides
        assert placeholders(message) == placeholders(dutch), message
        assert '"' not in dutch, message  # many land inside a double-quoted HTML attribute


def test_the_shipped_mo_is_the_compiled_po():
    def entries(catalogue) -> dict[object, object]:
        # Plural entries: read_po gives tuples, read_mo lists.
        def plain(value):
            return value if isinstance(value, str) else tuple(value)

        return {plain(m.id): plain(m.string) for m in catalogue if m.id}

    with open(NL / "messages.po", "rb") as po_file:
        po = entries(read_po(po_file))
    mo = entries(read_mo(io.BytesIO((NL / "messages.mo").read_bytes())))
    assert mo == po, "run make dashboard-locale"


def _client(halls, username: str, headers: dict[str, str]):
    client = create_app({"data_dir": str(halls[0].data_dir)}).test_client()
    form = client.get("/dashboard/login", headers=headers).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    client.post("/dashboard/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    return client, form, token


def _lang(page: str) -> str:
    return re.search(r'<html lang="(\w+)">', page).group(1)


def _add_reviewer(halls) -> str:
    store = db.connect(halls[0].data_dir)
    try:
        users.create_user(store, "rita", PASSWORD, ["reviewer"])
        users.assign(store, "rita", "reviewer", exam_id=halls[0].exam_id)
    finally:
        store.close()
    return "rita"


def test_accept_language_picks_dutch_or_english_and_html_lang_follows(halls):
    dutch = {"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.8"}
    client, login_page, _token = _client(halls, "anna", dutch)
    assert _lang(login_page) == "nl"
    assert "Inloggen voor medewerkers van deze zaal." in login_page and "Wachtwoord" in login_page
    hall = client.get(f"/dashboard/exams/{halls[0].exam_id}", headers=dutch).get_data(as_text=True)
    assert _lang(hall) == "nl"
    assert "Tentamen beëindigen" in hall and "Waarnemingen" in hall and "End exam" not in hall
    # The script's words and the observation labels come in Dutch too.
    texts = json.loads(unescape(re.search(r'data-i18n="([^"]*)"', hall).group(1)))
    assert texts["confirm_start"] == "Het tentamen nu starten?"
    labels = json.loads(unescape(re.search(r"data-labels='([^']*)'", hall).group(1)))
    assert labels["help_request"] == "hulpvraag"

    english_client, english_login, _ = _client(halls, "anna", {"Accept-Language": "en-GB,en;q=0.9"})
    assert _lang(english_login) == "en" and "Staff login for this hall." in english_login
    english_hall = english_client.get(f"/dashboard/exams/{halls[0].exam_id}").get_data(as_text=True)
    assert _lang(english_hall) == "en" and "End exam" in english_hall

    # A language without a catalogue, or none at all: English.
    for headers in ({"Accept-Language": "fr-FR,fr;q=0.9"}, {}):
        fresh = create_app({"data_dir": str(halls[0].data_dir)}).test_client()
        assert _lang(fresh.get("/dashboard/login", headers=headers).get_data(as_text=True)) == "en"


def test_the_review_queue_in_dutch(halls):
    reviewer = _add_reviewer(halls)
    dutch = {"Accept-Language": "nl"}
    client, _login, _token = _client(halls, reviewer, dutch)
    queue = f"/dashboard/review/exams/{halls[0].exam_id}/queue"
    page = client.get(queue, headers=dutch).get_data(as_text=True)
    assert _lang(page) == "nl"
    assert "Niets aan de hand" in page and "Bevinding vastleggen" in page and "Nothing here" not in page
    kinds = json.loads(unescape(re.search(r'data-labels="([^"]*)"', page).group(1)))
    assert kinds["off_exam_focus"] == "focus buiten het tentamen"
    overview = client.get(f"/dashboard/review/exams/{halls[0].exam_id}", headers=dutch).get_data(as_text=True)
    assert "Beoordelingswachtrij" in overview and "Onbeoordeeld" in overview


def test_the_switch_overrides_the_browser_and_outlives_the_login(halls):
    dutch = {"Accept-Language": "nl"}
    client, _login, _token = _client(halls, "anna", dutch)
    hall_path = f"/dashboard/exams/{halls[0].exam_id}"
    hall = client.get(hall_path, headers=dutch).get_data(as_text=True)
    assert _lang(hall) == "nl"
    token = re.search(r'name="csrf_token" value="([^"]+)"', hall).group(1)  # the login's own token
    answer = client.post("/dashboard/language", data={"csrf_token": token, "lang": "en", "next": hall_path})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(hall_path)
    page = client.get(hall_path, headers=dutch).get_data(as_text=True)
    assert _lang(page) == "en" and "End exam" in page
    assert 'value="en" class="link" lang="en" aria-pressed="true"' in page
    # The choice is the user's, not the session's: it stays after logging out.
    client.post("/dashboard/logout", data={"csrf_token": token})
    assert _lang(client.get("/dashboard/login", headers=dutch).get_data(as_text=True)) == "en"

    # Without the CSRF token the switch changes nothing; it never redirects off the dashboard.
    assert client.post("/dashboard/language", data={"lang": "nl"}).status_code == 400
    fresh = create_app({"data_dir": str(halls[0].data_dir)}).test_client()
    form = fresh.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    away = fresh.post(
        "/dashboard/language", data={"csrf_token": token, "lang": "nl", "next": "//elsewhere.example/"}
    )
    assert away.headers["Location"].endswith("/dashboard/")
    page = fresh.get("/dashboard/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert _lang(page) == "nl" and "Gebruikersnaam" in page


def test_every_script_word_keeps_its_placeholders_in_dutch(halls):
    app = create_app({"data_dir": str(halls[0].data_dir)})
    for texts in (script_texts.hall, script_texts.review_queue, script_texts.review_timeline):
        with app.test_request_context(headers={"Accept-Language": "en"}):
            english = texts()
        with app.test_request_context(headers={"Accept-Language": "nl"}):
            dutch = texts()
        assert english.keys() == dutch.keys()
        changed = [key for key in english if english[key] != dutch[key]]
        assert len(changed) > len(english) / 2
        for key in english:
            assert placeholders(english[key]) == placeholders(dutch[key]), key


def test_the_live_hall_in_dutch_in_chromium(browser, server, screenshots):
    page = login(browser, server.url, "anna", locale="nl-NL")
    page.wait_for_selector("#hall[data-loaded]")
    assert page.get_attribute("html", "lang") == "nl"
    assert page.inner_text("#end-exam") == "Tentamen beëindigen"
    assert page.inner_text("#attention").startswith("Aandacht")
    assert "live" in page.inner_text("#counts")
    tile = page.locator(".tile").first
    assert tile.get_attribute("title").startswith("Plaats ")
    page.keyboard.press("?")
    assert "tussen plaatsen bewegen" in page.inner_text("#keys")
    page.keyboard.press("Escape")
    page.screenshot(path=str(screenshots / "hall-nl.png"))
    # Nothing in the header runs past the window or onto a second line.
    overflow = page.evaluate(
        "() => { const bar = document.querySelector('.bar'); return [bar.scrollWidth, bar.clientWidth,"
        " bar.getBoundingClientRect().height]; }"
    )
    assert overflow[0] <= overflow[1] and overflow[2] < 60, overflow
    page.click(".lang-switch button[value=en]")
    page.wait_for_selector("#hall[data-loaded]")
    assert page.inner_text("#end-exam") == "End exam"
    page.context.close()
