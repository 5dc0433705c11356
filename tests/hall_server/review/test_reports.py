"""Reports: one student's PDF and self-contained HTML, the whole-exam zip and a student's own data, all
from data the real agent client uploaded."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hall_server.review import findings
from hall_server.review.reports import integrity
from hall_server.review.reports.timeline import Frame, UnchangedSpan, timeline
from hall_server.store import db
from invigil.timeutil import utc_now

from reviewseed import add_staff, seed_exam


def _server(*args: str) -> subprocess.CompletedProcess[str]:
    from support import BIN

    answer = subprocess.run([str(BIN / "invigil-server"), *args], capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr
    return answer


@pytest.fixture
def reviewed(exam, client):
    seeded = seed_exam(client, exam, students=2, changes=6)
    store = db.connect(exam.data_dir)
    rita, bea = add_staff(store, "rita", "reviewer"), add_staff(store, "bea", "exam_board")
    session_id = store.execute("SELECT MIN(id) FROM agent_session").fetchone()[0]
    blocked_at = store.execute("SELECT at FROM observation WHERE kind = 'blocked_site'").fetchone()[0]
    from invigil.timeutil import from_wire

    suspected = findings.record(
        store,
        session_id=session_id,
        author_id=rita,
        verdict="suspected_irregularity",
        span_start=from_wire(blocked_at),
        text="Opened a chat site during the exam",
        now=utc_now(),
    )
    findings.confirm(store, suspected, bea, utc_now(), "Confirmed by the board")
    return store, seeded, session_id


def test_timeline_has_frames_spans_sites_events_and_observations(reviewed):
    store, _, session_id = reviewed
    view = timeline(store, session_id)
    assert [type(entry) for entry in view.entries[:2]] == [Frame, UnchangedSpan]
    assert len(view.frames) == 6 and view.capture_records == 18
    assert all(span.count == 2 for span in view.entries if isinstance(span, UnchangedSpan))
    assert {site["host"] for site in view.sites} == {
        "exam.uni.example",
        "chat.example.com",
        "vpn.example.net",
    }
    assert [event["kind"] for event in view.device_events] == ["monitors", "process_category"]
    assert {o["kind"] for o in view.observations} >= {
        "second_monitor",
        "remote_tool",
        "blocked_site",
        "bypass_site",
    }
    assert view.gaps == [] and view.session.chain_length == 23
    assert view.findings[0].counts


def test_pdf_report_reads_like_the_record(exam, reviewed, tmp_path):
    store, _, session_id = reviewed
    out = tmp_path / "s0001.pdf"
    answer = _server(
        "report",
        "--data-dir",
        str(exam.data_dir),
        "--exam",
        str(exam.exam_id),
        "--student",
        "s0001",
        "--format",
        "pdf",
        "--out",
        str(out),
        "--by",
        "bea",
    )
    head = store.execute("SELECT chain_head FROM agent_session WHERE id = ?", [session_id]).fetchone()[0]
    assert head[:16] in answer.stdout
    assert shutil.which("pdftotext"), "pdftotext is missing: apt-get install poppler-utils"
    text = subprocess.run(
        ["pdftotext", "-raw", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = "".join(text.split())
    for expected in (
        "Linear Algebra",
        "s0001",
        "chat.example.com",
        "Observation: blocked site",
        "Opened a chat site",
        "confirmed",
        "bea",
        "rita",
        head,
    ):
        assert "".join(expected.split()) in flat, expected
    pages = tmp_path / "page"
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "2", "-l", "2", str(out), str(pages)], check=True)
    with Image.open(next(tmp_path.glob("page*.png"))) as page:  # the screenshots are drawn, not blank
        assert len(page.convert("L").getcolors(1 << 16) or []) > 8
    row = store.execute(
        "SELECT u.username, a.detail FROM audit_log a JOIN user u ON u.id = a.user_id "
        "WHERE a.action = 'report_export'"
    ).fetchone()
    assert row[0] == "bea" and json.loads(row[1])["student_number"] == "s0001"


def test_html_report_is_self_contained(exam, reviewed, tmp_path):
    out = tmp_path / "s0002.html"
    _server(
        "report",
        "--data-dir",
        str(exam.data_dir),
        "--exam",
        str(exam.exam_id),
        "--student",
        "s0002",
        "--format",
        "html",
        "--out",
        str(out),
    )
    page = out.read_text()
    assert "<svg" in page and "data:image/png;base64," in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.replace("https://chat.example.com/", "")
    assert integrity.verify_export(out).ok


def test_exam_export_zip(exam, reviewed, tmp_path):
    out = tmp_path / "exam.zip"
    answer = _server(
        "export",
        "--data-dir",
        str(exam.data_dir),
        "--exam",
        str(exam.exam_id),
        "--out",
        str(out),
        "--jobs",
        "2",
    )
    assert "2 student report(s), 3 on the roster never enrolled" in answer.stdout
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert {
            "manifest.json",
            "site-log.csv",
            "students/s0001/report.pdf",
            "students/s0002/report.html",
        } <= names
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["students"]["s0003"] == {"enrolled": False}
        assert manifest["students"]["s0001"]["sessions"][0]["length"] == 23
        site_log = archive.read("site-log.csv").decode()
        assert "s0001" in site_log and "chat.example.com" in site_log
    assert integrity.verify_export(out).ok
    assert _server("verify", str(out)).stdout.endswith("all chains intact\n")


def test_gdpr_export_holds_the_students_own_data(exam, reviewed, tmp_path):
    store, seeded, _ = reviewed
    out = tmp_path / "s0001-data.zip"
    _server(
        "gdpr-export",
        "--data-dir",
        str(exam.data_dir),
        "--exam",
        str(exam.exam_id),
        "--student",
        "s0001",
        "--out",
        str(out),
    )
    with zipfile.ZipFile(out) as archive:
        content = json.loads(archive.read("data.json"))
        [session] = content["sessions"]
        files = [c["file"] for c in session["captures"] if c["changed"]]
        assert len(files) == 6 and len(session["captures"]) == 18
        for capture in session["captures"]:
            if capture["changed"]:
                body = archive.read(capture["file"])
                with Image.open(io.BytesIO(body)) as image:
                    assert image.format == "PNG"
                assert body == seeded[0].captures[capture["capture_id"]]
        assert {s["host"] for s in session["site_events"]} >= {"chat.example.com"}
        assert session["findings"][0]["confirmations"][0]["author"] == "bea"
        assert "s0002" not in json.dumps(content)  # nobody else's data
    assert store.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'gdpr_export'").fetchone()[0] == 1


def test_report_of_unknown_student_is_a_clear_error(exam, reviewed, tmp_path: Path):
    from support import BIN

    answer = subprocess.run(
        [
            str(BIN / "invigil-server"),
            "report",
            "--data-dir",
            str(exam.data_dir),
            "--exam",
            str(exam.exam_id),
            "--student",
            "s9999",
            "--out",
            str(tmp_path / "x.pdf"),
        ],
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 1 and "s9999 is not on the roster" in answer.stderr
