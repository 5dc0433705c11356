"""The invigilator's live hall in a real browser (Debian's Chromium) against the real server, with
simulated agents speaking the real agent client over HTTP."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from pages import VIEWPORT, image_width, login
from simagents import SimAgent

from hall_server.store.db import db_path

expect = pytest.importorskip("playwright.sync_api").expect


def tile(page, student_number: str):
    return page.locator(f'.tile[data-no="{student_number}"]')


def enrol(server, hall, numbers: list[str]) -> list[SimAgent]:
    agents = [SimAgent(server.url, number, hall.join_code).enrol() for number in numbers]
    for agent in agents:
        agent.heartbeat()
    return agents


def test_login_then_the_grid_fills_and_a_new_capture_appears_on_its_tile(browser, server, halls, screenshots):
    hall_a, _ = halls
    page = login(browser, server.url, "anna", "wrong password!")
    expect(page.locator(".error")).to_contain_text("wrong username or password")
    page.context.close()

    page = login(browser, server.url, "anna")
    expect(page).to_have_url(f"{server.url}/dashboard/exams/{hall_a.exam_id}")
    expect(page.locator(".tile")).to_have_count(30)  # the whole roster, before anyone enrolled
    expect(page.locator(".tile.s-expected")).to_have_count(30)

    agents = enrol(server, hall_a, hall_a.students[:6])
    first_ids = [agent.capture() for agent in agents]
    expect(page.locator(".tile.s-live")).to_have_count(6)
    for number, capture_id in zip(hall_a.students[:6], first_ids, strict=True):
        expect(tile(page, number).locator("img")).to_have_attribute("data-capture", capture_id)

    newer = agents[0].capture()
    expect(tile(page, hall_a.students[0]).locator("img")).to_have_attribute("data-capture", newer)
    loaded = page.evaluate("() => window.invigilTileLoads.map(entry => entry[0])")
    assert newer in loaded  # the browser fetched the thumbnail over HTTP and drew it
    assert page.evaluate("() => document.documentElement.scrollHeight") <= VIEWPORT["height"]
    page.screenshot(path=str(screenshots / "hall.png"))

    # Thumbnail views reach the audit log in batches, within about a second: one row per answer of the
    # thumbnail batch, naming the screens it showed and their students (not one row per thumbnail).
    shown: set[str] = set()
    for _ in range(50):
        with sqlite3.connect(db_path(hall_a.data_dir)) as store:
            rows = store.execute(
                "SELECT a.detail FROM audit_log a JOIN user u ON u.id = a.user_id "
                "WHERE u.username = 'anna' AND a.action IN ('view_thumbnails', 'view_thumbnail')"
            ).fetchall()
            halls_viewed = store.execute(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'view_hall' AND exam_id = ?", [hall_a.exam_id]
            ).fetchone()[0]
        shown = {c.split(".", 1)[1] for (d,) in rows for c in json.loads(d).get("captures", [])}
        shown |= {json.loads(d)["capture"] for (d,) in rows if "capture" in json.loads(d)}
        if {*first_ids, newer} <= shown:
            break
        time.sleep(0.1)
    assert {*first_ids, newer} <= shown
    assert len(rows) < len(shown)  # grouped
    assert halls_viewed >= 1
    for agent in agents:
        agent.close()
    page.context.close()


def test_a_silent_agent_turns_stale_while_a_beating_one_stays_live(anna_page, server, halls):
    hall_a, _ = halls
    silent, beating = enrol(server, hall_a, hall_a.students[:2])
    expect(anna_page.locator(".tile.s-live")).to_have_count(2)
    # capture interval 1 s: no heartbeat for 2 intervals is stale
    for _ in range(40):
        beating.heartbeat()
        if tile(anna_page, silent.student_number).get_attribute("data-state") == "stale":
            break
        anna_page.wait_for_timeout(250)
    expect(tile(anna_page, silent.student_number)).to_have_attribute("data-state", "stale")
    expect(tile(anna_page, beating.student_number)).to_have_attribute("data-state", "live")
    anna_page.click("#attention")  # the "needs attention" filter shows the stale seat only
    expect(anna_page.locator(".tile:not([hidden])")).to_have_count(1)
    expect(anna_page.locator(".tile:not([hidden])")).to_have_attribute("data-no", silent.student_number)


def test_a_help_request_pops_up_and_is_acknowledged(anna_page, server, halls):
    hall_a, _ = halls
    (agent,) = enrol(server, hall_a, [hall_a.students[4]])
    agent.device_event("help_request")
    toast = anna_page.locator(".toast")
    expect(toast).to_contain_text(hall_a.seats[agent.student_number])
    expect(tile(anna_page, agent.student_number).locator(".badge")).to_have_text("HELP")
    toast.get_by_role("button", name="Acknowledge").click()
    expect(toast).to_have_count(0)
    expect(anna_page.locator("#feed li.acked")).to_have_count(1)
    expect(tile(anna_page, agent.student_number).locator(".badge")).to_be_hidden()
    with sqlite3.connect(db_path(hall_a.data_dir)) as store:
        acked = store.execute(
            "SELECT u.username FROM observation o JOIN user u ON u.id = o.acknowledged_by "
            "WHERE o.kind = 'help_request'"
        ).fetchall()
    assert acked == [("anna",)]


def test_seat_detail_by_keyboard_with_capture_now_and_id_check(anna_page, server, halls, screenshots):
    hall_a, _ = halls
    agents = enrol(server, hall_a, hall_a.students[:3])
    capture_ids = [agent.capture() for agent in agents]
    agents[1].device_event("monitors", count=2)
    expect(tile(anna_page, agents[1].student_number).locator("img")).to_have_attribute(
        "data-capture", capture_ids[1]
    )
    tile(anna_page, agents[0].student_number).focus()
    anna_page.keyboard.press("ArrowRight")
    anna_page.keyboard.press("Enter")
    detail = anna_page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail.locator("#detail-title")).to_contain_text(hall_a.seats[agents[1].student_number])
    expect(detail.locator("#detail-obs")).to_contain_text("Second monitor")
    expect(detail.locator("#detail-full")).to_have_attribute(
        "src", f"/dashboard/captures/{agents[1].session_id}/{capture_ids[1]}/full"
    )
    assert image_width(detail.locator("#detail-full")) == 320
    anna_page.keyboard.press("c")
    expect(detail.locator("#detail-capture-msg")).to_contain_text("next heartbeat")
    assert [i["kind"] for i in agents[1].heartbeat()] == ["capture_now"]
    anna_page.keyboard.press("i")
    expect(detail.locator("#detail-id-by")).to_contain_text("anna")
    anna_page.screenshot(path=str(screenshots / "seat.png"))
    anna_page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    expect(tile(anna_page, agents[1].student_number).locator(".idok")).to_be_visible()
    with sqlite3.connect(db_path(hall_a.data_dir)) as store:
        actions = {row[0] for row in store.execute("SELECT action FROM audit_log WHERE user_id IS NOT NULL")}
    assert {"login", "view_seat", "view_capture", "capture_now", "attendance"} <= actions


def test_end_exam_tells_every_live_agent(anna_page, server, halls):
    hall_a, _ = halls
    agents = enrol(server, hall_a, hall_a.students[:3])
    expect(anna_page.locator(".tile.s-live")).to_have_count(3)
    anna_page.once("dialog", lambda dialog: dialog.accept())
    anna_page.click("#end-exam")
    expect(anna_page.locator("#clock-state")).to_have_text("Ended")
    for agent in agents:
        assert [i["kind"] for i in agent.heartbeat()] == ["end_exam"]
