"""`invigil-server verify` on what a reader of an export sees: every visible row that shows a chained record
(window titles, site hosts, times, the heads) is compared with that record, in a report's HTML and in the
exam zip (whose manifest also pins every file's hash). The PDF, which carries no chain, says how to check it.
Everything is generated from data the real agent client uploaded."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from hall_server.app import create_app
from hall_server.store import db
from invigil.payloads import SiteEvent

from reviewseed import post_site_events, seed_exam
from support import BIN, provision_exam

CHAIN_SCRIPT = '<script type="application/json" id="invigil-chain">'


@dataclass(frozen=True)
class Exported:
    html: Path
    pdf: Path
    zip: Path
    heads: dict[int, str]


def _server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "invigil-server"), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """One exam recorded by the real agent client, one student's report as HTML and PDF, the exam zip."""
    root = tmp_path_factory.mktemp("exported")
    exam = provision_exam(root / "data")
    client = create_app({"data_dir": str(exam.data_dir)}).test_client()
    seeded = seed_exam(client, exam, students=2, changes=6)
    # A reason a spreadsheet would run as a formula: the site log writes it inert, verify reads it so.
    post_site_events(
        client,
        [
            SiteEvent(
                "px-s0002-9",
                seeded[1].start + timedelta(seconds=20),
                seeded[1].client_ip,
                "forum.example.org",
                "blocked",
                "proxy",
                '=HYPERLINK("http://evil.example")',
            )
        ],
    )
    common = ["--data-dir", str(exam.data_dir), "--exam", str(exam.exam_id)]
    for fmt in ("html", "pdf"):
        answer = _server(
            "report", *common, "--student", "s0001", "--format", fmt, "--out", str(root / f"s1.{fmt}")
        )
        assert answer.returncode == 0, answer.stderr
    answer = _server("export", *common, "--out", str(root / "exam.zip"), "--no-pdf", "--jobs", "1")
    assert answer.returncode == 0, answer.stderr
    store = db.connect(exam.data_dir)
    heads = dict(store.execute("SELECT id, chain_head FROM agent_session").fetchall())
    store.close()
    return Exported(root / "s1.html", root / "s1.pdf", root / "exam.zip", heads)


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return _server("verify", str(path))


def visible_edit(page: str, pattern: str, replace: Callable[[re.Match[str]], str]) -> str:
    """``page`` with the first match of ``pattern`` in the visible part (before the embedded chain) edited,
    as someone with a text editor would."""
    visible, chain_part = page.split(CHAIN_SCRIPT, 1)
    edited, count = re.subn(pattern, replace, visible, count=1)
    assert count == 1, pattern
    return edited + CHAIN_SCRIPT + chain_part


def _later(match: re.Match[str]) -> str:
    hours, rest = match.group("time").split(":", 1)
    return match.group(0).replace(match.group("time"), f"{(int(hours) + 1) % 24:02d}:{rest}")


#: (what is edited, pattern, replacement, what the report must then say besides the line)
VISIBLE_EDITS = [
    pytest.param(
        r"Exam question 4",
        lambda _m: "Lunch menu",
        ["window title", "'Lunch menu'", "'Exam question 4'", "capture cap-s0001-0003"],
        id="window-title",
    ),
    pytest.param(
        r">chat\.example\.com<",
        lambda _m: ">books.example.com<",
        ["host", "'books.example.com'", "'chat.example.com'", "site log", "site_event proxy/px-s0001-2"],
        id="site-host",
    ),
    pytest.param(
        r"<td[^>]*>(?P<time>\d\d:\d\d:\d\d)</td><td[^>]*>proxy</td><td[^>]*>chat\.example\.com</td>",
        _later,
        ["time", "site log", "site_event proxy/px-s0001-2"],
        id="site-time",
    ),
    pytest.param(
        r"captured (<[^>]+>)?(?P<time>\d\d:\d\d:\d\d)(?:(?!</div>).)*?cap-s0001-0003",
        _later,
        ["time", "capture cap-s0001-0003"],
        id="capture-time",
    ),
    pytest.param(
        r"<td[^>]*>(?P<time>\d\d:\d\d:\d\d)</td><td[^>]*>\d\d:\d\d:\d\d</td><td[^>]*>process category",
        _later,
        ["time", "device events", "device_event dev-s0001-2"],
        id="device-event-time",
    ),
    pytest.param(
        r"(<td[^>]*>)?blocked(</td>)",
        lambda m: m.group(0).replace("blocked", "allowed"),
        ["decision", "'allowed'", "'blocked'", "site_event proxy/px-s0001-2"],
        id="site-decision",
    ),
]


def test_an_untouched_report_verifies_and_prints_its_heads(exported):
    answer = verify(exported.html)
    assert answer.returncode == 0, answer.stderr
    assert answer.stderr == ""
    assert answer.stdout.endswith("all chains intact\n")
    assert "row(s) shown checked" in answer.stdout
    session_id = min(exported.heads)
    assert f"session {session_id}" in answer.stdout and exported.heads[session_id] in answer.stdout


@pytest.mark.parametrize(("pattern", "replace", "expected"), VISIBLE_EDITS)
def test_an_edited_visible_row_is_named_with_what_and_where(exported, tmp_path, pattern, replace, expected):
    page = tmp_path / "edited.html"
    page.write_text(visible_edit(exported.html.read_text(), pattern, replace))
    answer = verify(page)
    assert answer.returncode == 1, answer.stdout
    assert "all chains intact" not in answer.stdout
    report = answer.stderr
    assert re.search(r"edited\.html line \d+", report), report
    for words in expected:
        assert words in report, (words, report)


def test_an_edited_visible_head_is_named(exported, tmp_path):
    head = exported.heads[min(exported.heads)]
    page = exported.html.read_text()
    visible, chain_part = page.split(CHAIN_SCRIPT, 1)
    assert visible.count(head) == 2  # the title block and the integrity section
    edited = tmp_path / "edited.html"
    edited.write_text(visible.replace(head, "0" * 64, 1) + CHAIN_SCRIPT + chain_part)
    answer = verify(edited)
    assert answer.returncode == 1
    assert "head" in answer.stderr and "0" * 64 in answer.stderr and head in answer.stderr


def test_a_deleted_site_log_row_is_named(exported, tmp_path):
    edited = tmp_path / "edited.html"
    edited.write_text(
        visible_edit(
            exported.html.read_text(),
            r"(?s)<tr[^>]*><td[^>]*>\d\d:\d\d:\d\d</td><td[^>]*>sentinel</td>.*?</tr>",
            lambda _m: "",
        )
    )
    answer = verify(edited)
    assert answer.returncode == 1
    assert "site_event sentinel/sn-s0001-3" in answer.stderr and "not shown" in answer.stderr


def test_a_row_whose_link_was_removed_is_named(exported, tmp_path):
    page = exported.html.read_text()
    row = re.search(r'<tr data-chain="[^"]+">(?:(?!</tr>).)*?chat\.example\.com</td>', page)
    assert row is not None
    unlinked = row.group(0).replace(re.search(r' data-chain="[^"]+"', row.group(0)).group(0), "")  # type: ignore[union-attr]
    edited = tmp_path / "edited.html"
    edited.write_text(
        page.replace(row.group(0), unlinked.replace("chat.example.com", "books.example.com"), 1)
    )
    answer = verify(edited)
    assert answer.returncode == 1
    assert "site_event proxy/px-s0001-2" in answer.stderr and "not shown" in answer.stderr
    assert "no chained record" in answer.stderr and "site log" in answer.stderr


def test_a_replaced_screenshot_is_named(exported, tmp_path):
    """A screenshot of a whole screen is shown byte for byte as stored: its SHA-256 is chained."""
    page = exported.html.read_text()
    images = re.findall(r'<img src="(data:image/[a-z]+;base64,[^"]+)" alt="capture cap-s0001-0003">', page)
    other = re.search(r'<img src="(data:image/[a-z]+;base64,[^"]+)" alt="capture cap-s0001-0004">', page)
    assert images and other is not None
    edited = tmp_path / "edited.html"
    edited.write_text(page.replace(images[0], other.group(1), 1))
    answer = verify(edited)
    assert answer.returncode == 1
    assert (
        "capture cap-s0001-0003" in answer.stderr
        and "screenshot shown is not the chained image" in answer.stderr
    )


def test_an_edited_embedded_record_is_named(exported, tmp_path):
    page = exported.html.read_text()
    assert page.count('"window_title":"Exam question 2"') == 1
    edited = tmp_path / "edited.html"
    edited.write_text(page.replace('"window_title":"Exam question 2"', '"window_title":"Lunch menu"'))
    answer = verify(edited)
    assert answer.returncode == 1
    assert "embedded" in answer.stderr and "edited.html" in answer.stderr
    assert "capture cap-s0001-0001" in answer.stderr and "differs from what was chained" in answer.stderr


# --- the exam zip ----------------------------------------------------------------------------------------


def rewrite_zip(source: Path, target: Path, edit: Callable[[str, bytes], bytes]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, edit(info.filename, old.read(info.filename)))


def test_an_untouched_exam_zip_verifies(exported):
    answer = verify(exported.zip)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.endswith("all chains intact\n")
    for head in exported.heads.values():
        assert head in answer.stdout
    assert "s0001" in answer.stdout and "s0002" in answer.stdout
    with zipfile.ZipFile(exported.zip) as archive:
        assert "'=HYPERLINK" in archive.read("site-log.csv").decode()  # written inert, still verified


def test_an_edited_report_in_the_zip_is_named_by_its_member(exported, tmp_path):
    target = tmp_path / "edited.zip"

    def edit(name: str, body: bytes) -> bytes:
        if name != "students/s0002/report.html":
            return body
        return visible_edit(body.decode(), r">chat\.example\.com<", lambda _m: ">books.example.com<").encode()

    rewrite_zip(exported.zip, target, edit)
    answer = verify(target)
    assert answer.returncode == 1
    assert re.search(r"students/s0002/report\.html line \d+", answer.stderr), answer.stderr
    assert "'books.example.com'" in answer.stderr
    assert "students/s0002/report.html: its SHA-256 differs from the manifest's" in answer.stderr
    assert "s0001/report.html" not in answer.stderr


def test_an_edited_report_with_a_matching_manifest_is_still_named(exported, tmp_path):
    """Someone who edits a page and rewrites its hash in the manifest is still caught by the rows."""
    target = tmp_path / "edited.zip"
    bodies: dict[str, bytes] = {}

    def edit(name: str, body: bytes) -> bytes:
        if name == "students/s0001/report.html":
            body = visible_edit(body.decode(), r"Exam question 4", lambda _m: "Lunch menu").encode()
            bodies[name] = body
        elif name == "manifest.json":
            manifest = json.loads(body)
            for member, edited in bodies.items():
                manifest["files"][member] = hashlib.sha256(edited).hexdigest()
            body = json.dumps(manifest).encode()
        return body

    rewrite_zip(exported.zip, target, edit)
    answer = verify(target)
    assert answer.returncode == 1
    assert "SHA-256" not in answer.stderr
    assert "'Lunch menu'" in answer.stderr and "students/s0001/report.html line" in answer.stderr


def test_an_edited_site_log_csv_is_named(exported, tmp_path):
    target = tmp_path / "edited.zip"

    def edit(name: str, body: bytes) -> bytes:
        return body.replace(b"chat.example.com", b"books.example.com", 1) if name == "site-log.csv" else body

    rewrite_zip(exported.zip, target, edit)
    answer = verify(target)
    assert answer.returncode == 1
    assert "site-log.csv: its SHA-256 differs from the manifest's" in answer.stderr
    assert re.search(r"site-log\.csv line \d+", answer.stderr), answer.stderr
    assert "books.example.com" in answer.stderr


def test_a_file_missing_from_the_zip_is_named(exported, tmp_path):
    target = tmp_path / "edited.zip"
    with zipfile.ZipFile(exported.zip) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename != "site-log.csv":
                new.writestr(info.filename, old.read(info.filename))
    answer = verify(target)
    assert answer.returncode == 1
    assert "site-log.csv" in answer.stderr and "missing" in answer.stderr


# --- the PDF -----------------------------------------------------------------------------------------------


def test_the_pdf_says_how_to_verify_it_and_prints_the_heads(exported):
    assert shutil.which("pdftotext"), "pdftotext is missing: apt-get install poppler-utils"
    text = subprocess.run(
        ["pdftotext", "-raw", str(exported.pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    assert "invigil-server verify" in flat
    assert "This PDF carries no chained records" in flat
    assert "must match" in flat
    head = exported.heads[min(exported.heads)]
    assert head in "".join(text.split())
    # The heads the PDF prints are the ones `verify` prints for the HTML form and the zip.
    assert head in verify(exported.html).stdout and head in verify(exported.zip).stdout


def test_the_html_report_reads_as_before(exported):
    """The rows carry their links invisibly: the text a reader sees is unchanged."""
    page = exported.html.read_text()
    visible = re.sub(r"<[^>]+>", "", page.split(CHAIN_SCRIPT, 1)[0])
    assert "firefox — Exam question 4 · cap-s0001-0003" in " ".join(visible.split())
    assert "captured" in visible and "Site log (complete)" in visible
    assert io.StringIO(page).read().count('data-chain="') >= 3 + 2 + 6
