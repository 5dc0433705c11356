"""The reviewer's pages in Debian's Chromium against the real server and a seeded exam: the overview by
unreviewed observations, search, a student's timeline by keyboard, the full-size viewer, a suspected
finding that a second person confirms, and the PDF report downloaded through the browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import reviewexam
from pages import image_width, login
from PIL import Image, ImageStat

review_template = reviewexam.review_template  # fixtures, shared with the other review tests
review_server = reviewexam.review_server

expect = pytest.importorskip("playwright.sync_api").expect


def _student_page(browser, server, setup, username: str, number: str = "s0002"):
    page = login(browser, server.url, username)
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}/students/{number}")
    page.wait_for_selector("#review[data-loaded]")
    return page


def test_overview_orders_students_by_unreviewed_observations_and_search_finds_a_site(
    browser, review_server, screenshots
):
    setup, server = review_server
    page = login(browser, server.url, setup.users[("reviewer", "a")])
    expect(page).to_have_url(f"{server.url}/dashboard/review/")  # a reviewer has no live hall
    page.click("text=Linear Algebra")
    rows = page.locator("tr.student")
    expect(rows).to_have_count(8)
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.student)")
    counts = [int(c or 0) for c in page.locator("td.unreviewed").all_inner_texts()]
    assert order[:3] == ["s0002", "s0003", "s0005"] and counts[:3] == [3, 2, 1]
    assert counts == sorted(counts, reverse=True)
    expect(rows.first.locator(".chip.kind")).to_have_text(["blocked site 3/3"])
    expect(page.locator("tr[data-student=s0008]")).to_contain_text("no data: never enrolled")
    assert "score" not in page.content().lower()
    page.screenshot(path=str(screenshots / "review-exam.png"))

    page.fill("#search", "openai")
    page.keyboard.press("Enter")
    hits = page.locator("tr.hit")
    expect(hits).to_have_count(2)  # two visits of chat.openai.com eleven minutes apart
    expect(hits.first).to_contain_text("s0002")
    expect(hits.first).to_contain_text("chat.openai.com")
    page.fill("#search", "chatgpt")  # an application's window title
    page.keyboard.press("Enter")
    expect(hits.first).to_contain_text("ChatGPT")
    assert set(hits.locator("td:first-child a").all_inner_texts()) == {"s0002"}
    hits.first.locator("a").click()
    page.wait_for_selector("#review[data-loaded]")
    expect(page.locator("#preview-meta")).to_contain_text("ChatGPT")
    page.context.close()


def test_timeline_keyboard_viewer_and_a_confirmed_finding(browser, review_server, screenshots):
    setup, server = review_server
    page = _student_page(browser, server, setup, setup.users[("reviewer", "a")])
    expect(page.locator("#axis .lane")).to_have_count(
        6
    )  # ruler, screen, sites, device, observations, findings
    expect(page.locator("#strip .same").first).to_contain_text("=")  # unchanged stretches drawn as spans
    root = page.locator("#review")
    first = root.get_attribute("data-selected")
    page.keyboard.press("ArrowRight")
    expect(root).not_to_have_attribute("data-selected", first)
    second = root.get_attribute("data-selected")
    expect(page.locator(f"#strip .item.sel[data-capture='{second}']")).to_have_count(1)
    page.keyboard.press("ArrowLeft")
    expect(root).to_have_attribute("data-selected", first)

    page.keyboard.press("n")  # the first observation: a blocked site
    expect(page.locator("#events li.now")).to_contain_text("blocked site")
    expect(page.locator("#form-obs")).to_contain_text("blocked site")
    page.screenshot(path=str(screenshots / "review-student.png"))

    page.keyboard.press("Enter")
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    assert image_width(page.locator("#viewer-body img").first) > 0
    fit = float(viewer.get_attribute("data-scale"))
    page.keyboard.press("+")
    page.keyboard.press("+")
    assert float(viewer.get_attribute("data-scale")) == pytest.approx(fit * 1.5625, rel=0.01)
    page.keyboard.press("0")
    assert float(viewer.get_attribute("data-scale")) == pytest.approx(fit, rel=0.01)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    page.keyboard.press("r")
    page.select_option("#finding-form select[name=kind]", "suspected_irregularity")
    page.fill("#finding-form textarea[name=text]", "Tried to open a chat site during the exam")
    page.click("#finding-form button[type=submit]")
    finding = page.locator("#findings li.finding")
    expect(finding).to_contain_text("suspected (unconfirmed)")
    expect(finding).to_contain_text(setup.users[("reviewer", "a")])
    expect(finding.locator("[data-act=confirm]")).to_have_count(0)  # never by its own author
    page.context.close()

    board = _student_page(browser, server, setup, setup.users[("exam_board", "a")])
    board.click(".tabs [data-tab=findings]")
    board.click("#findings li.finding [data-act=confirm]")
    expect(board.locator("#findings li.finding")).to_contain_text(
        f"suspected (confirmed by {setup.users[('exam_board', 'a')]})"
    )
    board.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}")
    expect(board.locator("tr[data-student=s0002] td.unreviewed")).to_have_text("2")  # it named one
    board.context.close()


def test_the_pdf_report_downloaded_in_the_browser_states_the_facts(
    browser, review_server, tmp_path, screenshots
):
    if not shutil.which("pdftotext") or not shutil.which("pdftoppm"):
        pytest.skip("needs poppler-utils (pdftotext, pdftoppm)")
    setup, server = review_server
    page = login(browser, server.url, setup.users[("exam_board", "a")])
    page.goto(f"{server.url}/dashboard/review/exams/{setup.exam_a}")
    with page.expect_download(timeout=60_000) as download:
        page.click("tr[data-student=s0003] >> text=PDF")
    pdf = tmp_path / "s0003.pdf"
    download.value.save_as(pdf)
    page.context.close()
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
    for fact in ("Linear Algebra", "s0003", "Hall A", "discord.com", "exam.uni.example", "second monitor"):
        assert fact.lower() in text.lower(), fact
    assert re.search(r"[0-9a-f]{16}", text)  # the hash-chain head
    subprocess.run(
        ["pdftoppm", "-r", "60", "-f", "1", "-l", "1", "-png", str(pdf), str(tmp_path / "page")], check=True
    )
    [raster] = list(tmp_path.glob("page*.png"))
    with Image.open(raster) as image:
        assert image.width > 400 and ImageStat.Stat(image.convert("L")).stddev[0] > 10  # not a blank page
    shutil.copy(raster, screenshots / "review-report-page1.png")  # to look at: INVIGIL_SCREENSHOTS=DIR
