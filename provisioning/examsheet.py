"""Many exams of a session from one table (a CSV file or a sheet), all or nothing.

Columns: ``title,hall,start,end[,policy][,invigilators][,reviewers][,interval][,retention_days]``. Every row
gets the checks ``exam create`` makes (``provisioning.exams``), and only when no row has a problem are
the exams created. A row naming an exam that exists with the same hall, title and start is unchanged, as
``exam create`` does it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import sqlite_utils

from hall_server.store import users
from invigil.timeutil import to_wire
from provisioning import exams
from provisioning.csvtable import Problem, Row
from provisioning.errors import LineErrors, ProvisioningError
from provisioning.halls import get_hall
from provisioning.tablefile import Table, decode_text, read_file

EXAM_COLUMNS = (
    ("title", "hall", "start", "end"),
    ("policy", "invigilators", "reviewers", "interval", "retention_days"),
)
#: The columns that hold each attribute, for messages and for pointing at the cell.
COLUMN_OF = {
    "title": "title",
    "starts_at": "start",
    "ends_at": "end",
    "capture_interval_s": "interval",
    "retention_days": "retention_days",
}
STAFF_SEPARATORS = re.compile(r"[,;]")


@dataclass(frozen=True)
class PlannedExam:
    """One row, checked: what ``exams.ensure_exam`` will be given."""

    line: int
    hall: str
    fields: dict[str, Any]
    staff: list[tuple[str, str]]


def usernames(text: str) -> list[str]:
    """``"jdoe, asmith;bvos"`` as ``["jdoe", "asmith", "bvos"]``."""
    return [name.strip() for name in STAFF_SEPARATORS.split(text) if name.strip()]


def _time(row: Row, column: str) -> Any:
    text = row.values[column]
    if not text:
        raise ProvisioningError(f"empty {column}")
    if column in row.date_cells:
        # A spreadsheet's date-time has no time zone, and a hall has none to lend it.
        raise ProvisioningError(
            f"{column} {text} is a date-time cell without a UTC offset; write it as text with an offset, "
            "e.g. 2026-06-12T09:00+02:00 (type an apostrophe first, or format the column as text)"
        )
    return exams.parse_time(text, column)


def _whole_number(row: Row, column: str, default: int) -> int:
    text = row.values.get(column, "")
    if not text:
        return default
    if not text.isdigit():
        raise ProvisioningError(f"{column} {text!r} must be a whole number")
    return int(text)


def _policy(row: Row, folder: Path) -> str:
    name = row.values.get("policy", "")
    if not name:
        return ""
    path = folder / name
    if not path.is_file():
        raise ProvisioningError(
            f"policy file {name!r} is not in the sheet's folder (names are relative to it)"
        )
    try:
        return exams.check_policy(decode_text(read_file(path, "policy"), name, "policy"), name)
    except LineErrors as exc:
        bad = "; ".join(f"line {line}: {message}" for line, message in exc.errors)
        raise ProvisioningError(f"policy file {name} has {len(exc.errors)} bad line(s): {bad}") from None


def plan_exams(db: sqlite_utils.Database, table: Table, folder: Path) -> list[PlannedExam]:
    """Check every row as ``exam create`` would (``folder`` holds the policy files the rows name); raises
    ``LineErrors`` naming every bad row and cell, so nothing is created unless every row is good."""
    problems: list[Problem] = []
    planned: list[PlannedExam] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in table.rows:
        found: list[Problem] = []
        fields: dict[str, Any] = {"title": row.values["title"], "interception": False}
        readers: tuple[tuple[str, str, Callable[[], Any]], ...] = (
            ("starts_at", "start", partial(_time, row, "start")),
            ("ends_at", "end", partial(_time, row, "end")),
            (
                "capture_interval_s",
                "interval",
                partial(_whole_number, row, "interval", exams.DEFAULT_INTERVAL_S),
            ),
            (
                "retention_days",
                "retention_days",
                partial(_whole_number, row, "retention_days", exams.DEFAULT_RETENTION_DAYS),
            ),
            ("policy_text", "policy", partial(_policy, row, folder)),
        )
        for name, column, read in readers:
            try:
                fields[name] = read()
            except ProvisioningError as exc:
                found.append((row.line, column, str(exc)))
        hall = row.values["hall"]
        hall_row = None
        try:
            hall_row = get_hall(db, hall) if hall else None
            if hall_row is None:
                found.append((row.line, "hall", "empty hall"))
        except ProvisioningError as exc:
            found.append((row.line, "hall", str(exc)))
        staff = [(name, "invigilator") for name in usernames(row.values.get("invigilators", ""))] + [
            (name, "reviewer") for name in usernames(row.values.get("reviewers", ""))
        ]
        for username, role in staff:
            try:
                exams.check_staff(db, [(username, role)])
            except users.UserError as exc:
                found.append((row.line, f"{role}s", str(exc)))
        if {"starts_at", "ends_at", "capture_interval_s", "retention_days"} <= fields.keys():
            for name, message in exams.field_problems(fields, COLUMN_OF):
                found.append((row.line, COLUMN_OF[name], message))
        if not found and hall_row is not None:
            key = (hall, fields["title"], to_wire(fields["starts_at"]))
            if key in seen:
                message = f"the same exam (hall, title, start) as {table.place(seen[key])}"
                found.append((row.line, "title", message))
            else:
                seen[key] = row.line
                try:
                    exams.same_exam(db, hall_row, fields)
                except ProvisioningError as exc:
                    found.append((row.line, "title", str(exc)))
        problems += found
        if not found:
            planned.append(PlannedExam(row.line, hall, fields, staff))
    if not planned and not problems and not table.problems:
        problems.append((1, None, "the sheet has a header but no exams"))
    table.check(problems)
    return planned


def import_exams(
    db: sqlite_utils.Database, master_key: bytes, table: Table, folder: Path
) -> list[dict[str, Any]]:
    """Check every row (``plan_exams``), then create the exams; each exam with ``row`` and ``created``."""
    planned = plan_exams(db, table, folder)
    result = []
    for plan in planned:
        exam, created = exams.ensure_exam(
            db, master_key, hall=plan.hall, fields=plan.fields, staff=plan.staff
        )
        result.append({**exam, "row": plan.line, "created": created})
    return result
