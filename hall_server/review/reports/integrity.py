"""Checking an export without the appliance's database: a rendered report page (HTML, which embeds its
chained records) or a whole-exam zip (every student's page, the site log, and the manifest with every
session's head and every file's SHA-256).

Each page's chains are recomputed and every row it shows is compared with them
(``hall_server.review.reports.pagecheck``); a zip's files must match its manifest and its site log the
chained site events. What the chain cannot prove on its own: an export whose records, hashes and heads
were all rewritten consistently. The heads printed by ``invigil-server verify`` must then match those
printed elsewhere (the PDF, the appliance, an earlier export).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from hall_server.review.reports.csvcells import SITE_LOG_COLUMNS, inert
from hall_server.review.reports.pagecheck import ExportCheck, Problem, check_page
from hall_server.store import chain

MANIFEST = "manifest.json"
SITE_LOG = "site-log.csv"


def verify_export(path: Path) -> ExportCheck:
    """Recompute every chain in an exported report (``.html``) or exam export (``.zip``) and compare what
    the pages show with it."""
    if zipfile.is_zipfile(path):
        return _verify_zip(path)
    return check_page(path.read_text(encoding="utf-8"), path.name).check


# --- the exam zip -------------------------------------------------------------------------------------------


def _verify_zip(path: Path) -> ExportCheck:
    result = ExportCheck()
    with zipfile.ZipFile(path) as archive:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except KeyError:
            raise ValueError(f"{path} is not an Invigil exam export (no {MANIFEST})") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"{path}: {MANIFEST} is not a JSON object")
        members = set(archive.namelist())
        _check_files(archive, members, manifest.get("files", {}), result)
        chains: dict[int, chain.SessionChain] = {}
        for number, entry in sorted(manifest.get("students", {}).items()):
            if not entry.get("enrolled"):
                continue
            name = f"students/{number}/report.html"
            if name not in members:
                result.problems.append(Problem(name, f"missing: the manifest says student {number} enrolled"))
                continue
            page = check_page(archive.read(name).decode(), name)
            _merge(result, page.check)
            chains.update({c.session_id: c for c in page.chains if c.session_id not in page.broken})
            if page.student_number != number:
                result.problems.append(
                    Problem(name, f"the report is about student {page.student_number!r}, not {number}")
                )
            claimed = {head["session_id"]: head["head"] for head in entry.get("sessions", [])}
            for session_chain in page.chains:
                if claimed.get(session_chain.session_id) != session_chain.head:
                    result.problems.append(
                        Problem(
                            MANIFEST,
                            f"student {number}, session {session_chain.session_id}: the manifest's head "
                            f"{claimed.get(session_chain.session_id)} differs from the report's "
                            f"{session_chain.head}",
                        )
                    )
        if SITE_LOG in members:
            _check_site_log(archive.read(SITE_LOG).decode(), chains, result)
        else:
            result.problems.append(Problem(SITE_LOG, "missing from the zip (every exam export has one)"))
    return result


def _merge(result: ExportCheck, page: ExportCheck) -> None:
    result.sessions += page.sessions
    result.records += page.records
    result.rows += page.rows
    result.unchained_rows += page.unchained_rows
    result.heads += page.heads
    result.problems += page.problems


def _check_files(archive: zipfile.ZipFile, members: set[str], files: Any, result: ExportCheck) -> None:
    if not isinstance(files, dict):
        result.problems.append(Problem(MANIFEST, "has no list of files and their SHA-256"))
        return
    for name, digest in sorted(files.items()):
        if name not in members:
            result.problems.append(Problem(name, "listed in the manifest but missing from the zip"))
        elif hashlib.sha256(archive.read(name)).hexdigest() != digest:
            result.problems.append(
                Problem(name, "its SHA-256 differs from the manifest's (changed after the export)")
            )
    for name in sorted(members - set(files) - {MANIFEST}):
        result.problems.append(
            Problem(name, "is in the zip but not in the manifest (added after the export)")
        )


#: The site log's columns a chained site event vouches for (the student number comes from the roster).
_SITE_COLUMNS = tuple(name for name in SITE_LOG_COLUMNS if name != "student_number")


def _csv_cells(fields: dict[str, Any]) -> tuple[str, ...]:
    """The cells the export writes for a chained site event (made inert as it writes them)."""
    return tuple("" if fields.get(name) is None else str(inert(fields[name])) for name in _SITE_COLUMNS)


def _read_cells(row: dict[str, str | None]) -> tuple[str, ...]:
    return tuple(row.get(name) or "" for name in _SITE_COLUMNS)


def _check_site_log(text: str, chains: dict[int, chain.SessionChain], result: ExportCheck) -> None:
    """Every row of the site log that names a session must be one of that session's chained site events,
    and every chained site event must be in it. Rows without a session were never attributed, so never
    chained."""
    unseen: dict[tuple[str, ...], list[chain.ChainRecord]] = {}
    for session_chain in chains.values():
        for record in session_chain.records:
            if record.kind == "site_event":
                key = _csv_cells({**record.fields, "session_id": session_chain.session_id})
                unseen.setdefault(key, []).append(record)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for values in reader:
        session_text = values.get("session_id") or ""
        if not session_text:
            continue
        place = f"{SITE_LOG} line {reader.line_num}"
        result.rows += 1
        if not session_text.isdigit() or int(session_text) not in chains:
            result.problems.append(
                Problem(place, f"names session {session_text!r}, which no report here verifies")
            )
            continue
        records = unseen.get(_read_cells(values))
        if records:
            records.pop(0)
            continue
        result.problems.append(
            Problem(
                place,
                f"the site event {values.get('host')!r} at {values.get('time')} of session {session_text} is "
                "not one of that session's chained site events (edited or added)",
            )
        )
    for records in unseen.values():
        for record in records:
            result.problems.append(Problem(SITE_LOG, f"lacks the chained {record.label}"))
