"""Clearing a confirmed suspicion in Debian's Chromium against the real server: one reviewer proposes it
on the timeline page, the page shows the suspicion still confirmed with the proposal pending, and a second
reviewer confirms the clearing."""

from __future__ import annotations

import pytest
import reviewexam
from pages import login
from staffclient import staff_session

review_template = reviewexam.review_template  # fixtures, shared with the other review tests
review_server = reviewexam.review_server

expect = pytest.importorskip("playwright.sync_api").expect


def _confirmed_suspicion(server, setup, student: str) -> int:
    """A suspected irregularity raised by one reviewer and confirmed by the exam board, over the API."""
    rita = staff_session(server.url, setup.users[("reviewer", "a")])
    bea = staff_session(server.url, setup.users[("exam_board", "a")])
    try:
        exam = f"{server.url}/dashboard/review/exams/{setup.exam_a}"
        timeline = rita.get(f"{exam}/students/{student}/timeline.json", timeout=30).json()
        findings = f"{exam}/sessions/{timeline['session']['id']}/findings"
        body = {"kind": "suspected_irregularity", "start": timeline["start"], "text": "a second screen"}
        suspicion = rita.post(findings, json=body, timeout=10).json()["id"]
        assert bea.post(f"{findings}/{suspicion}/confirm", json={}, timeout=10).status_code == 201
        return int(suspicion)
    finally:
        rita.close()
        bea.close()


def _findings_tab(browser, server, setup, username: str, student: str):
    page = login(browser, server.url, username)
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}/students/{student}")
    page.wait_for_selector("#review[data-loaded]")
    page.click(".tabs [data-tab=findings]")
    return page


def test_a_second_reviewer_confirms_the_clearing_of_a_confirmed_suspicion(
    browser, review_server, screenshots
):
    setup, server = review_server
    suspicion = _confirmed_suspicion(server, setup, "s0006")
    board = setup.users[("exam_board", "a")]

    rob = _findings_tab(browser, server, setup, "reviewer_a2", "s0006")
    finding = rob.locator(f"#findings li.finding[data-id='{suspicion}']")
    rob.once("dialog", lambda dialog: dialog.accept("the second screen is the hall's clock"))
    finding.locator("[data-act=clear]").click()
    expect(rob.locator("#notice")).to_contain_text("a second person confirms it")
    pending = finding.locator(".pending")
    expect(pending).to_contain_text("clearing (no irregularity) proposed by reviewer_a2")
    expect(pending).to_contain_text("awaiting a second person")
    expect(pending).to_contain_text("the second screen is the hall's clock")
    expect(finding.locator(".status")).to_have_text(f"suspected (confirmed by {board})")  # it still stands
    expect(pending.locator("[data-act=confirm-pending]")).to_have_count(0)  # never by its own author
    expect(finding.locator("[data-act=clear]")).to_have_count(0)  # one proposal at a time
    rob.screenshot(path=str(screenshots / "review-clearing-pending.png"))
    rob.context.close()

    rita_name = setup.users[("reviewer", "a")]
    rita = _findings_tab(browser, server, setup, rita_name, "s0006")
    rita.locator(f"#findings li.finding[data-id='{suspicion}'] .pending [data-act=confirm-pending]").click()
    cleared = rita.locator("#findings li.finding")
    expect(cleared).to_have_count(1)
    expect(cleared.locator(".status")).to_have_text(f"no irregularity (confirmed by {rita_name})")
    expect(cleared).to_contain_text(f"corrects #{suspicion}: suspected irregularity by {rita_name}")
    expect(cleared.locator(".pending")).to_have_count(0)
    rita.screenshot(path=str(screenshots / "review-clearing-confirmed.png"))
    rita.context.close()
