"""The review queue page in Debian's Chromium against the real server (gunicorn) and the seeded review exam:
the exam's expected state shown, moments across students ordered by kind, keyboard next/previous, "nothing
here" moving the progress, the selected moment's screens loaded, every opened moment audited, the timeline
opened at the moment (and with the finding form on its span), taking the next students and giving them
back, who holds whom, and 404 for a reviewer of another exam. Screenshot at 1366×768."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sqlite3
from datetime import timedelta

import pytest
import reviewexam
from pages import image_width, login
from PIL import Image

from hall_server.app import create_app
from hall_server.review import expected, screentext
from hall_server.store import db
from hall_server.store.screens import Screens
from invigil import tiles
from invigil.payloads import CaptureMeta, Enrolment
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, text_screen
from support import sha256

review_template = reviewexam.review_template
review_server = reviewexam.review_server

expect = pytest.importorskip("playwright.sync_api").expect

STATE = expected.ExpectedState(
    platform_apps=("firefox",),
    platform_titles=("Moodle",),
    platform_hosts=("exam.uni.example",),
    allowed_apps=("gnome-calculator",),
)


@pytest.fixture(scope="module")
def queue_server(review_server):
    setup, server = review_server
    store = db.connect(setup.data_dir)
    expected.save(store, setup.exam_a, STATE)
    store.close()
    return setup, server


def _queue_page(browser, server, setup, username):
    page = login(browser, server.url, username)
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}/queue")
    page.wait_for_selector("#queue[data-loaded]")
    return page


def _progress(page) -> tuple[int, int]:
    text = page.locator("#progress").inner_text()
    found = re.fullmatch(r"(\d+) of 8 students cleared, (\d+) moments open", text)
    assert found, text
    return int(found[1]), int(found[2])


def test_queue_by_keyboard_with_progress_and_audited_opens(browser, queue_server, screenshots):
    setup, server = queue_server
    page = login(browser, server.url, setup.users[("reviewer", "a")])
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}")
    expect(page.locator(".expected")).to_contain_text("allowed: gnome-calculator")  # on the exam page
    page.click("text=Review queue")
    page.wait_for_selector("#queue[data-loaded]")
    expect(page.locator(".expected")).to_contain_text("firefox")
    expect(page.locator(".expected")).to_contain_text("gnome-calculator")
    rows = page.locator("tr.moment")
    # the chat window in the exam browser comes first; the PDF, the editor, the gap and the tools follow
    expect(rows.first).to_contain_text("s0002")
    expect(rows.first).to_contain_text("assistant named")
    texts = rows.all_inner_texts()
    assert any("s0001" in t and "off-exam focus" in t for t in texts)  # the formula sheet (evince)
    assert any("s0004" in t and "no data (gap)" in t for t in texts)
    assert any("s0005" in t and "remote/VM tool" in t for t in texts)
    assert not any("s0006" in t for t in texts)  # only the exam all along: nothing to look at
    cleared, open_before = _progress(page)
    assert cleared == 3 and open_before == rows.count()  # s0006 and the two who never enrolled

    queue = page.locator("#queue")
    first = queue.get_attribute("data-selected")
    screens = page.locator("#screens img")
    assert screens.count() >= 2
    assert image_width(screens.first) == 640
    page.screenshot(path=str(screenshots / "review-queue.png"))
    with Image.open(screenshots / "review-queue.png") as shot:
        assert shot.size == (1366, 768)

    page.keyboard.press("j")
    expect(queue).not_to_have_attribute("data-selected", first)
    page.keyboard.press("k")
    expect(queue).to_have_attribute("data-selected", first)
    page.keyboard.press("x")  # nothing here: cleared, the next open moment selected
    expect(rows.first).to_have_class(re.compile("nothing_here"))
    expect(page.locator("#progress")).to_contain_text(f"{open_before - 1} moments open")
    page.keyboard.press("k")
    page.keyboard.press("x")  # again: reopened
    expect(page.locator("#progress")).to_contain_text(f"{open_before} moments open")

    with sqlite3.connect(setup.data_dir / "invigil.db") as con:
        rows_audited = con.execute(
            "SELECT detail FROM audit_log WHERE action = 'capture_view' AND detail LIKE '%queue_moment%'"
        ).fetchall()
        marks = [
            r[0] for r in con.execute("SELECT action FROM audit_log WHERE action LIKE 'queue_%' ORDER BY id")
        ]
    assert first in {json.loads(r[0])["moment"] for r in rows_audited}
    assert [m for m in marks if m != "queue_view"] == ["queue_nothing_here", "queue_reopened"]
    assert marks[0] == "queue_view"  # every load of the queue is a view in the audit log

    page.keyboard.press("t")  # the timeline at that moment
    page.wait_for_selector("#review[data-loaded]")
    expect(page).to_have_url(re.compile(r"/students/s0002\?session=\d+#t="))
    expect(page.locator("#preview-meta")).to_contain_text("ChatGPT")
    page.go_back()
    page.wait_for_selector("#queue[data-loaded]")
    page.keyboard.press("f")  # the finding form on the moment's span, on the timeline
    page.wait_for_selector("#review[data-loaded]")
    expect(page.locator("#findings-panel")).to_be_visible()
    start = page.locator("#finding-form [name=start]").input_value()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", start) and first.startswith(
        page.evaluate("() => new URLSearchParams(decodeURIComponent(location.hash).slice(1)).get('t')")[:10]
    )
    page.context.close()


def test_taking_the_next_students_and_access(browser, queue_server):
    setup, server = queue_server
    page = _queue_page(browser, server, setup, setup.users[("reviewer", "a")])
    page.click("#claim")
    expect(page.locator("#notice")).to_contain_text("You took")
    expect(page.locator("#mine")).to_be_checked()
    reviewer = setup.users[("reviewer", "a")]
    expect(page.locator("tr.moment").first).to_contain_text(f"· {reviewer}")
    for text in page.locator("tr.moment").all_inner_texts():
        assert reviewer in text
    other = _queue_page(browser, server, setup, "reviewer_a2")
    other.click("#claim")
    expect(other.locator("#notice")).to_contain_text("No unassigned student has open moments.")
    other.keyboard.press("m")  # everyone's: each row says whose student it is
    expect(other.locator("tr.moment").first).to_contain_text(reviewer)
    expect(page.locator("#reviewers")).to_contain_text("you: ")  # who holds whom, with what is open
    expect(other.locator("#reviewers")).to_contain_text(f"{reviewer}: ")
    page.click("#release")  # given back: the students are there for the next reviewer to take
    expect(page.locator("#notice")).to_contain_text("You gave back")
    expect(page.locator("#reviewers")).to_contain_text("nobody yet: ")
    expect(page.locator("#reviewers")).not_to_contain_text("you: ")
    other.click("#claim")
    expect(other.locator("#notice")).to_contain_text("You took")
    other.click("#release")
    expect(other.locator("#notice")).to_contain_text("You gave back")
    with sqlite3.connect(setup.data_dir / "invigil.db") as con:
        held = con.execute("SELECT count(*) FROM queue_claim").fetchone()[0]
        released = con.execute("SELECT count(*) FROM audit_log WHERE action = 'queue_released'").fetchone()[0]
    assert held == 0 and released == 2
    for p in (page, other):
        p.context.close()

    outsider = login(browser, server.url, setup.users[("reviewer", "b")])
    for path in ("queue", "queue.json"):
        answer = outsider.request.get(f"{server.url}/dashboard/review/exams/{setup.exam_a}/{path}")
        assert answer.status == 404
    outsider.context.close()


def _gray(body: bytes) -> bytes:
    """As the agent sends screens: gray PNGs (tile updates build only on those)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(body)).convert("L").save(out, "PNG")
    return out.getvalue()


def _seed_repeats(setup) -> None:
    """s0007 (not enrolled in the template) enrols through the real API and shows one question page six
    times over (the same image again after focus changes), then a tile update of one tile (a blinking
    cursor), then a new page."""
    client = create_app({"data_dir": str(setup.data_dir), "clock_skew_max_s": 3 * 3600}).test_client()
    hall = FlaskHall(client, "10.0.0.17")
    start = utc_now()
    hall.enrol(Enrolment("s0007", "HALLA234", "agent-s0007", start, "0.1", "Linux"))
    page_png = _gray(reviewexam.screen_png("moodle", 700))
    title = reviewexam.APPS["moodle"][1]
    for n in range(6):
        meta = CaptureMeta(
            0, start + timedelta(seconds=30 * n), sha256(page_png), 640, 400, "focus", "firefox", title
        )
        hall.put_capture(f"rep-s0007-{n:04d}", meta, page_png, "image/png")
    rows, cols = tiles.grid(640, 400, 64)
    cursor = io.BytesIO()
    Image.new("L", tiles.packed_size(1, cols, 64), 0).save(cursor, "PNG")
    update = CaptureMeta(
        0,
        start + timedelta(seconds=180),
        sha256(cursor.getvalue()),
        640,
        400,
        "interval",
        "firefox",
        title,
        base="rep-s0007-0005",
        tile=64,
        tiles=tiles.encode_map([12], rows, cols),
    )
    hall.put_capture("rep-s0007-0006", update, cursor.getvalue(), "image/png")
    other = _gray(reviewexam.screen_png("moodle", 701))
    meta = CaptureMeta(0, start + timedelta(seconds=210), sha256(other), 640, 400, "focus", "firefox", title)
    hall.put_capture("rep-s0007-0007", meta, other, "image/png")


def test_near_identical_screens_are_one_filmstrip_item(browser, queue_server):
    setup, server = queue_server
    _seed_repeats(setup)
    page = login(browser, server.url, setup.users[("reviewer", "a")])
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}/students/s0007")
    page.wait_for_selector("#review[data-loaded]")
    items = page.locator("#strip .item")
    expect(items).to_have_count(
        2
    )  # seven copies of the page (and the cursor blink) as one, then the next page
    expect(items.first.locator(".reps")).to_have_text("×7 3m00s")
    root = page.locator("#review")
    expect(root).to_have_attribute("data-selected", "rep-s0007-0000")
    page.keyboard.press("ArrowRight")  # over the repeats, straight to the next page
    expect(root).to_have_attribute("data-selected", "rep-s0007-0007")
    page.keyboard.press("ArrowLeft")
    expect(root).to_have_attribute("data-selected", "rep-s0007-0000")
    page.context.close()


def test_screen_text_search_in_the_exam_overview(browser, queue_server):
    """s0008 enrols and shows a readable page; the real tesseract reads it (invigil-server screen-text) and a
    reviewer's search finds the student by the text on the screen."""
    setup, server = queue_server
    store = db.connect(setup.data_dir)
    expected.save(
        store, setup.exam_a, dataclasses.replace(STATE, read_screen_text=True, watch_words=("chatgpt",))
    )
    store.close()
    client = create_app({"data_dir": str(setup.data_dir), "clock_skew_max_s": 3 * 3600}).test_client()
    hall = FlaskHall(client, "10.0.0.18")
    start = utc_now()
    hall.enrol(Enrolment("s0008", "HALLA234", "agent-s0008", start, "0.1", "Linux"))
    body = text_screen(["Question 3: the determinant", "Ask ChatGPT for the answer"])
    meta = CaptureMeta(0, start, sha256(body), 800, 500, "focus", "gnome-calculator", "Calculator")
    hall.put_capture("txt-s0008-0001", meta, body, "image/png")
    # Only s0008's screens (the seeded exam has hundreds more; tests/hall_server/review/test_screentext.py
    # runs the whole pass through the command): the real tesseract reads it.
    store = db.connect(setup.data_dir)
    session = store.execute(
        "SELECT s.id FROM agent_session s JOIN roster r ON r.id = s.roster_id "
        "WHERE r.student_number = 's0008'"
    ).fetchone()[0]
    screens = Screens.of_data_dir(setup.data_dir).exam(store, setup.exam_a)
    assert screentext.run(store, screens, setup.exam_a, sessions={session}).read == 1
    store.close()

    page = login(browser, server.url, setup.users[("reviewer", "a")])
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}")
    page.fill("#search", "determinant")
    page.keyboard.press("Enter")
    hit = page.locator("tr.text-hit")
    expect(hit).to_have_count(1)
    expect(hit).to_contain_text("s0008")
    expect(hit).to_contain_text("determinant")
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}/queue")
    page.wait_for_selector("#queue[data-loaded]")
    expect(page.locator("tr.moment", has_text="s0008")).to_contain_text("watch word on screen")
    page.context.close()
