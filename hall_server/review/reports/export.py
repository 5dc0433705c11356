"""Exports: one student's report file, the whole exam as a zip, and a student's own data (GDPR access).

The exam zip holds, per student, ``students/<number>/report.pdf`` and ``report.html`` (which carries the
chained records), ``site-log.csv`` for the whole exam, and ``manifest.json`` with every session's chain head
and the SHA-256 of every file. Reports are rendered in worker processes (WeasyPrint is single-threaded
CPU work); the zip is written by the calling process. Every export writes an audit row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from hall_server.review import findings
from hall_server.review.reports import data, pdf, render
from hall_server.review.reports.csvcells import SITE_LOG_COLUMNS, inert
from hall_server.review.reports.timeline import timeline
from hall_server.store import audit, chain, db, private_files
from hall_server.store.exams import ExamFacts
from hall_server.store.screens import Screens, as_png
from invigil.timeutil import to_wire, utc_now

FORMATS = ("html", "pdf")


def gather(
    store: sqlite_utils.Database, data_dir: str | Path, exam_id: int, student_number: str, generated_by: str
) -> data.ReportData:
    exam_screens = data.open_screens(store, Screens.of_data_dir(data_dir), exam_id)
    return data.student_report(store, exam_screens, exam_id, student_number, generated_by=generated_by)


def pdf_bytes(report: data.ReportData) -> bytes:
    return pdf.html_to_pdf(render.render_html(report, embed_chain=False))


def write_report(
    store: sqlite_utils.Database,
    data_dir: str | Path,
    exam_id: int,
    student_number: str,
    fmt: str,
    out: Path,
    *,
    user_id: int | None,
    actor: str,
) -> data.ReportData:
    """One student's report as HTML or PDF at ``out``; audited as ``report_export``."""
    if fmt not in FORMATS:
        raise ValueError(f"format is one of {', '.join(FORMATS)}")
    report = gather(store, data_dir, exam_id, student_number, actor)
    private_files.write_file(out, pdf_bytes(report) if fmt == "pdf" else render.render_html(report).encode())
    audit.record(
        store,
        user_id,
        "report_export",
        exam_id,
        report.sessions[-1].chain.session_id if report.sessions else None,
        {**_actor_detail(actor), "student_number": student_number, "format": fmt, "file": out.name},
    )
    return report


def _exam_json(exam: ExamFacts) -> dict[str, Any]:
    """The exam as an export's manifest names it."""
    return {
        "id": exam.id,
        "title": exam.title,
        "hall": exam.hall,
        "starts_at": to_wire(exam.starts_at),
        "ends_at": to_wire(exam.ends_at),
    }


def _actor_detail(actor: str) -> dict[str, str]:
    return {"by": actor, **audit.cli_actor()}


# --- the whole exam -------------------------------------------------------------------------------------

_worker_store: sqlite_utils.Database | None = None
_worker_data_dir: str = ""


def _worker_init(data_dir: str) -> None:
    global _worker_store, _worker_data_dir
    _worker_data_dir = data_dir
    _worker_store = db.connect(data_dir)


@dataclass(frozen=True)
class StudentFiles:
    student_number: str
    html: bytes
    pdf: bytes | None
    heads: list[dict[str, Any]]


def _render_one(args: tuple[int, str, str, bool]) -> StudentFiles:
    exam_id, student_number, generated_by, with_pdf = args
    assert _worker_store is not None
    report = gather(_worker_store, _worker_data_dir, exam_id, student_number, generated_by)
    return StudentFiles(
        student_number,
        render.render_html(report).encode(),
        pdf_bytes(report) if with_pdf else None,
        report.chain_heads,
    )


def _rendered(
    data_dir: str, exam_id: int, students: list[str], actor: str, jobs: int, with_pdf: bool
) -> Iterator[StudentFiles]:
    tasks = [(exam_id, number, actor, with_pdf) for number in students]
    if jobs <= 1:
        _worker_init(data_dir)
        yield from map(_render_one, tasks)
        return
    with ProcessPoolExecutor(jobs, initializer=_worker_init, initargs=(data_dir,)) as pool:
        yield from pool.map(_render_one, tasks, chunksize=1)


def site_log_csv(store: sqlite_utils.Database, exam_id: int) -> bytes:
    """The exam's site events as CSV, every cell quoted and none that a spreadsheet would run as a
    formula (hosts, URLs and reasons come from the laptops' traffic)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(SITE_LOG_COLUMNS)
    writer.writerows(
        [inert(cell) for cell in row]
        for row in store.execute(
            "SELECT e.time, e.received_at, r.student_number, e.session_id, unseal(e.exam_id, e.client_ip), "
            "e.source, unseal(e.exam_id, e.host), unseal(e.exam_id, e.url), e.decision, e.reason "
            "FROM site_event e LEFT JOIN agent_session s ON s.id = e.session_id "
            "LEFT JOIN roster r ON r.id = s.roster_id WHERE e.exam_id = ? ORDER BY e.time",
            [exam_id],
        )
    )
    return out.getvalue().encode()


def export_exam(
    store: sqlite_utils.Database,
    data_dir: str | Path,
    exam_id: int,
    out: Path,
    *,
    user_id: int | None,
    actor: str,
    jobs: int | None = None,
    with_pdf: bool = True,
    progress: Callable[[str], None] = lambda _number: None,
) -> dict[str, Any]:
    """Write the exam's zip; ``progress`` is called once per student as their files are added. Returns
    the manifest. Students who never enrolled are listed in the manifest without files."""
    exam = data.report_exam(store, exam_id)
    data.open_screens(store, Screens.of_data_dir(data_dir), exam_id)  # fail early when the key is gone
    roster = [
        row[0]
        for row in store.execute(
            "SELECT student_number FROM roster WHERE exam_id = ? ORDER BY student_number", [exam_id]
        )
    ]
    enrolled = {
        row[0]
        for row in store.execute(
            "SELECT DISTINCT r.student_number FROM agent_session s JOIN roster r ON r.id = s.roster_id "
            "WHERE s.exam_id = ?",
            [exam_id],
        )
    }
    manifest: dict[str, Any] = {
        "format": "invigil-exam-export-1",
        "exam": _exam_json(exam),
        "generated_at": to_wire(utc_now()),
        "generated_by": actor,
        "students": {number: {"enrolled": False} for number in roster if number not in enrolled},
        "files": {},
    }

    def add(archive: zipfile.ZipFile, name: str, body: bytes, compress: bool = True) -> None:
        archive.writestr(name, body, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        manifest["files"][name] = hashlib.sha256(body).hexdigest()

    students = [number for number in roster if number in enrolled]
    with private_files.replacing(out) as file, zipfile.ZipFile(file, "w") as archive:
        for files in _rendered(
            str(data_dir), exam_id, students, actor, jobs or os.cpu_count() or 1, with_pdf
        ):
            folder = f"students/{files.student_number}"
            add(archive, f"{folder}/report.html", files.html)
            if files.pdf is not None:
                add(archive, f"{folder}/report.pdf", files.pdf, compress=False)
            manifest["students"][files.student_number] = {"enrolled": True, "sessions": files.heads}
            progress(files.student_number)
        add(archive, "site-log.csv", site_log_csv(store, exam_id))
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    audit.record(
        store,
        user_id,
        "exam_export",
        exam_id,
        None,
        {**_actor_detail(actor), "file": out.name, "students": len(students), "pdf": with_pdf},
    )
    return manifest


# --- a student's own data (GDPR access request) ---------------------------------------------------------


def export_student_data(
    store: sqlite_utils.Database,
    data_dir: str | Path,
    exam_id: int,
    student_number: str,
    out: Path,
    *,
    user_id: int | None,
    actor: str,
) -> dict[str, Any]:
    """Everything stored about one student in one exam: ``data.json`` (exam, roster entry, sessions,
    capture records, device events, site events, observations, findings) and ``captures/*.png`` (every
    changed capture, decrypted). Returns data.json's content."""
    exam = data.report_exam(store, exam_id)
    exam_screens = data.open_screens(store, Screens.of_data_dir(data_dir), exam_id)
    student = data.report_student(store, exam_id, student_number)
    content: dict[str, Any] = {
        "format": "invigil-subject-access-1",
        "exam": {**_exam_json(exam), "retention_days": exam.retention_days},
        "student": student,
        "generated_at": to_wire(utc_now()),
        "sessions": [],
    }
    with private_files.replacing(out) as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
        for session_id in data.student_sessions(store, exam_id, student_number):
            facts = timeline(store, session_id)
            captures = []
            for capture in store.execute(
                "SELECT capture_id, monitor, agent_time, received_at, changed, sha256, width, height, "
                "format, trigger, unseal(exam_id, focused_app), unseal(exam_id, window_title), "
                "since_capture_id, base_capture_id FROM capture "
                "WHERE session_id = ? "
                "ORDER BY agent_time, capture_id",
                [session_id],
            ).fetchall():
                record = dict(
                    zip(
                        (
                            "capture_id",
                            "monitor",
                            "agent_time",
                            "received_at",
                            "changed",
                            "sha256",
                            "width",
                            "height",
                            "format",
                            "trigger",
                            "focused_app",
                            "window_title",
                            "since_capture_id",
                            "base_capture_id",
                        ),
                        capture,
                        strict=True,
                    )
                )
                if record["changed"]:
                    body = exam_screens.find_screen(session_id, record["capture_id"])
                    if body is not None:
                        name = f"captures/session-{session_id}/{record['capture_id']}.png"
                        archive.writestr(name, as_png(body), zipfile.ZIP_STORED)
                        record["file"] = name
                captures.append(record)
            session_chain = chain.session_chain(store, session_id)
            content["sessions"].append(
                {
                    "session_id": session_id,
                    "agent_id": facts.session.agent_id,
                    "agent_version": facts.session.agent_version,
                    "os": facts.session.os,
                    "client_ip": facts.session.client_ip,
                    "enrolled_at": to_wire(facts.session.enrolled_at),
                    "ended_at": to_wire(facts.session.ended_at) if facts.session.ended_at else None,
                    "captures": captures,
                    "device_events": [{**e, "at": to_wire(e["at"])} for e in facts.device_events],
                    "site_events": [{**e, "time": to_wire(e["time"])} for e in facts.sites],
                    "observations": [{**o, "at": to_wire(o["at"])} for o in facts.observations],
                    "findings": [findings.as_json(f) for f in facts.findings],
                    "chain_head": session_chain.head,
                    "chain_length": session_chain.length,
                }
            )
        archive.writestr("data.json", json.dumps(content, indent=2, ensure_ascii=False))
        archive.writestr("README.txt", _GDPR_README.format(title=exam.title, student=student_number))
    audit.record(
        store,
        user_id,
        "gdpr_export",
        exam_id,
        None,
        {**_actor_detail(actor), "student_number": student_number, "file": out.name},
    )
    return content


_GDPR_README = """Invigil: the data stored about student {student} in the exam "{title}".

data.json       the exam, your roster entry, every agent session with its capture records (changed screens
                and "unchanged since" records), device events, visited sites, observations raised by rules,
                findings recorded by staff (with their authors), and each session's hash-chain head.
captures/       every changed screen image, decrypted, as PNG; data.json names the file of each capture.

Nothing else was recorded: no webcam, microphone, keystrokes or clipboard.
"""
