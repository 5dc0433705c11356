"""A student's report with a note finding (and a confirmed suspicion with a clearing proposal pending),
downloaded through the dashboard by logged-in staff: report.html, the PDF (WeasyPrint, read back with
pdftotext, its findings page rasterised with pdftoppm) and the exam board's export zip."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile

import pytest
import reviewclients
import reviewexam
from PIL import Image, ImageStat

review_template = reviewexam.review_template  # fixtures, shared with the other review tests
review_app = reviewclients.review_app

NOTE = "Student asked for a glass of water; nothing to do with the exam"


@pytest.fixture(scope="module")
def noted(review_app):
    """s0001 with a note, and a confirmed suspicion that a second reviewer proposed to clear."""
    users = review_app.setup.users
    rita, rob = review_app.staff(users[("reviewer", "a")]), review_app.staff("reviewer_a2")
    bea = review_app.staff(users[("exam_board", "a")])
    session_id = review_app.session_of("s0001")
    [(enrolled,)] = review_app.query("SELECT enrolled_at FROM agent_session WHERE id = ?", [session_id])
    [(later,)] = review_app.query("SELECT MAX(agent_time) FROM capture WHERE session_id = ?", [session_id])
    findings = f"/dashboard/review/exams/{review_app.setup.exam_a}/sessions/{session_id}/findings"
    assert (
        rita.post(findings, {"kind": "note", "start": enrolled, "end": later, "text": NOTE}).status_code
        == 201
    )
    body = {"kind": "suspected_irregularity", "start": later, "text": "a formula sheet on screen"}
    suspicion = rita.post(findings, body).get_json()["id"]
    assert bea.post(f"{findings}/{suspicion}/confirm", {}).status_code == 201
    clearing = {
        "kind": "no_irregularity",
        "start": later,
        "supersedes": suspicion,
        "text": "the sheet is allowed",
    }
    assert rob.post(findings, clearing).get_json()["pending"] is True
    return rita, bea


def _pdftotext(pdf: bytes, tmp_path, page: int | None = None) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    answer = subprocess.run(["pdftotext", *pages, str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(answer.stdout.split())


def test_the_report_of_a_student_with_a_note_downloads_as_html_and_pdf(
    review_app, noted, tmp_path, screenshots
):
    assert shutil.which("pdftotext") and shutil.which("pdftoppm"), "needs poppler-utils (pdftotext, pdftoppm)"
    rita, _ = noted
    base = f"/dashboard/review/exams/{review_app.setup.exam_a}/students/s0001"
    page = rita.get(f"{base}/report.html")
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    html = page.get_data(as_text=True)
    assert NOTE in html and "note (not a verdict)" in html and 'class="finding note"' in html
    assert "clearing (no irregularity) proposed by reviewer_a2" in html

    answer = rita.get(f"{base}/report.pdf")
    assert answer.status_code == 200 and answer.data[:5] == b"%PDF-"
    text = _pdftotext(answer.data, tmp_path)
    for expected in (NOTE, "note (not a verdict)", "suspected irregularity: confirmed", "awaiting a second"):
        assert expected in text, expected
    pages = int(
        subprocess.run(["pdfinfo", str(tmp_path / "report.pdf")], capture_output=True, text=True, check=True)
        .stdout.split("Pages:")[1]
        .split()[0]
    )
    texts = {n: _pdftotext(answer.data, tmp_path, n) for n in range(1, pages + 1)}
    shown = {"note": NOTE, "pending": "Pending (entry"}  # the note's row; the clearing that waits
    for name, words in shown.items():
        page_number = min(n for n, page_text in texts.items() if words in page_text)
        prefix = tmp_path / f"page-{name}"
        subprocess.run(
            ["pdftoppm", "-r", "80", "-f", str(page_number), "-l", str(page_number), "-png",
             str(tmp_path / "report.pdf"), str(prefix)],
            check=True,
        )  # fmt: skip
        [raster] = list(tmp_path.glob(f"page-{name}*.png"))
        with Image.open(raster) as image:
            assert image.width > 400 and ImageStat.Stat(image.convert("L")).stddev[0] > 10  # drawn, not blank
        shutil.copy(raster, screenshots / f"report-{name}-finding.png")  # to look at: INVIGIL_SCREENSHOTS=DIR


def test_the_exam_export_holds_the_report_with_the_note(review_app, noted):
    _, bea = noted
    answer = bea.get(f"/dashboard/review/exams/{review_app.setup.exam_a}/export.zip")
    assert answer.status_code == 200 and answer.data[:2] == b"PK"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as bundle:
        page = bundle.read("students/s0001/report.html").decode()
    assert NOTE in page and "note (not a verdict)" in page
