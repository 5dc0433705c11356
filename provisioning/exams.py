"""Exams, their staff, rosters and join codes in the store.

Everything is checked before anything is written, so a refused command leaves the store as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.review import expected
from hall_server.store import exams, users
from hall_server.store.db import write_transaction
from invigil.policy import PolicyError, parse_policy
from invigil.timeutil import from_wire, to_wire
from provisioning.errors import Conflict, LineErrors, NotFound, ProvisioningError
from provisioning.halls import get_hall
from provisioning.roster import check_roster
from provisioning.seatmap import seat_labels
from provisioning.tablefile import Table

MAX_RETENTION_DAYS = 3650
DEFAULT_INTERVAL_S = 5
DEFAULT_RETENTION_DAYS = 30
#: Exam columns an organiser may change with ``exam update``, with how to compare them.
EDITABLE = (
    "title",
    "starts_at",
    "ends_at",
    "capture_interval_s",
    "retention_days",
    "policy_text",
    "interception",
)


def parse_time(text: str, what: str) -> datetime:
    try:
        return from_wire(text)
    except ValueError:
        raise ProvisioningError(
            f"{what} {text!r} is not an ISO 8601 time with a UTC offset; "
            "write e.g. 2026-06-12T09:00+02:00 or 2026-06-12T07:00Z"
        ) from None


def check_policy(text: str, source: str) -> str:
    """The policy text if every line parses (docs/policy.md); else ``LineErrors`` for every bad line."""
    try:
        parse_policy(text)
    except PolicyError as exc:
        raise LineErrors(source, list(exc.errors)) from None
    return text


#: How ``exam create`` names each attribute in its messages; a sheet names its columns instead.
OPTION_NAMES = {
    "title": "--title",
    "starts_at": "--start",
    "ends_at": "--end",
    "capture_interval_s": "--interval",
    "retention_days": "--retention-days",
}


def field_problems(fields: dict[str, Any], names: dict[str, str] = OPTION_NAMES) -> list[tuple[str, str]]:
    """Every problem with an exam's attributes, as ``(attribute, what to fix)``, naming each as ``names``
    says (the CLI's options, or a sheet's columns)."""
    problems: list[tuple[str, str]] = []
    if not str(fields["title"]).strip():
        problems.append(("title", "an exam needs a title"))
    else:
        try:
            # The title reaches the proxy's policy file, report headers and export names.
            exams.check_text(str(fields["title"]), names["title"])
        except exams.BadText as exc:
            problems.append(("title", str(exc)))
    if fields["ends_at"] <= fields["starts_at"]:
        problems.append(
            (
                "ends_at",
                f"an exam must end after it starts: check {names['starts_at']} and {names['ends_at']}",
            )
        )
    if not 1 <= fields["capture_interval_s"] <= 600:
        problems.append(
            ("capture_interval_s", f"{names['capture_interval_s']} must be between 1 and 600 seconds")
        )
    if not 1 <= fields["retention_days"] <= MAX_RETENTION_DAYS:
        problems.append(
            ("retention_days", f"{names['retention_days']} must be between 1 and {MAX_RETENTION_DAYS}")
        )
    return problems


def _check_fields(fields: dict[str, Any]) -> None:
    problems = field_problems(fields)
    if problems:
        raise ProvisioningError(problems[0][1])


def check_staff(db: sqlite_utils.Database, staff: list[tuple[str, str]]) -> None:
    for username, _role in staff:
        users.user_id(db, username)  # raises UnknownUser before anything is written


def _assign_staff(db: sqlite_utils.Database, exam_id: int, staff: list[tuple[str, str]]) -> None:
    for username, role in staff:
        users.assign(db, username, role, exam_id=exam_id)


_EXAM_KEYS = (
    *("id", "hall", "hall_id", "title", "starts_at", "ends_at", "capture_interval_s", "retention_days"),
    *("interception", "policy_text", "join_code", "started_at", "ended_at", "created_at", "roster"),
)


def get_exam(db: sqlite_utils.Database, exam_id: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT exam.id, hall.name, exam.hall_id, title, starts_at, ends_at, capture_interval_s, "
        "retention_days, interception, policy_text, join_code, started_at, ended_at, exam.created_at, "
        "(SELECT count(*) FROM roster WHERE roster.exam_id = exam.id) "
        "FROM exam JOIN hall ON hall.id = exam.hall_id WHERE exam.id = ?",
        [exam_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"no exam {exam_id}; see `invigil-provision exam list`")
    exam = dict(zip(_EXAM_KEYS, row, strict=True))
    exam["interception"] = bool(exam["interception"])
    exam["expected"] = expected.load(db, exam_id).to_json()
    exam["staff"] = [
        {"username": username, "role": role}
        for username, role in db.execute(
            "SELECT user.username, assignment.role FROM assignment JOIN user ON user.id = assignment.user_id "
            "WHERE assignment.exam_id = ? ORDER BY assignment.role, user.username",
            [exam_id],
        )
    ]
    return exam


def list_exams(db: sqlite_utils.Database, hall: str | None = None) -> list[dict[str, Any]]:
    hall_id = get_hall(db, hall)["id"] if hall else None
    ids = [
        row[0]
        for row in db.execute(
            "SELECT id FROM exam WHERE ? IS NULL OR hall_id = ? ORDER BY starts_at, id", [hall_id, hall_id]
        )
    ]
    return [get_exam(db, exam_id) for exam_id in ids]


def ensure_exam(
    db: sqlite_utils.Database,
    master_key: bytes,
    *,
    hall: str,
    fields: dict[str, Any],
    staff: list[tuple[str, str]],
) -> tuple[dict[str, Any], bool]:
    """Create an exam (and its key), or find the identical one; returns ``(exam, created)``.

    An exam is the same exam when hall, title and start match; if its other attributes differ this
    raises ``Conflict`` naming them. ``staff`` is ``(username, role)`` pairs assigned to the exam.
    """
    _check_fields(fields)
    hall_row = get_hall(db, hall)
    check_staff(db, staff)
    existing = same_exam(db, hall_row, fields)
    if existing is not None:
        _assign_staff(db, existing, staff)
        return get_exam(db, existing), False
    exam_id = exams.create_exam(db, master_key, hall_id=hall_row["id"], **fields)
    _assign_staff(db, exam_id, staff)
    return get_exam(db, exam_id), True


def same_exam(db: sqlite_utils.Database, hall_row: dict[str, Any], fields: dict[str, Any]) -> int | None:
    """The id of the exam with this hall, title and start, if any; ``Conflict`` if its attributes differ."""
    existing = db.execute(
        "SELECT id FROM exam WHERE hall_id = ? AND title = ? AND starts_at = ?",
        [hall_row["id"], fields["title"], to_wire(fields["starts_at"])],
    ).fetchone()
    if existing is None:
        return None
    exam = get_exam(db, existing[0])
    differences = _differences(exam, fields)
    if differences:
        raise Conflict(
            f"exam {exam['id']} ({fields['title']!r} at {exam['starts_at']} in {hall_row['name']!r}) exists "
            f"with other {', '.join(differences)}; change it with "
            f"`invigil-provision exam update {exam['id']}`"
        )
    return int(exam["id"])


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    """Field values as the exam row stores them, for comparison."""
    return {name: to_wire(value) if isinstance(value, datetime) else value for name, value in fields.items()}


def _differences(exam: dict[str, Any], fields: dict[str, Any]) -> list[str]:
    return [name for name, value in _stored(fields).items() if exam[name] != value]


def update_exam(
    db: sqlite_utils.Database, exam_id: int, changes: dict[str, Any], staff: list[tuple[str, str]]
) -> tuple[dict[str, Any], list[str]]:
    """Apply ``changes`` (a subset of ``EDITABLE``) and add ``staff``; returns the exam and changed names."""
    exam = get_exam(db, exam_id)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ProvisioningError(f"cannot change {', '.join(sorted(unknown))}")
    merged = {name: exam[name] for name in EDITABLE} | changes
    for name in ("starts_at", "ends_at"):
        if isinstance(merged[name], str):
            merged[name] = from_wire(merged[name])
    _check_fields(merged)
    check_staff(db, staff)
    changed = _differences(exam, changes)
    if changed:
        values = _stored({name: merged[name] for name in changed})
        if "interception" in values:
            values["interception"] = int(values["interception"])
        with write_transaction(db):
            db.execute(
                f"UPDATE exam SET {', '.join(f'{name} = ?' for name in values)} WHERE id = ?",  # noqa: S608
                [*values.values(), exam_id],
            )
    _assign_staff(db, exam_id, staff)
    return get_exam(db, exam_id), changed


def set_expected(db: sqlite_utils.Database, exam_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Replace the lists of the exam's expected state named in ``changes`` (``expected.OPTIONS`` keys,
    and ``read_screen_text``)."""
    get_exam(db, exam_id)
    current = expected.load(db, exam_id).to_json()
    merged: dict[str, Any] = {
        name: values if isinstance(values, bool) else tuple(values)
        for name, values in (current | changes).items()
    }
    try:
        expected.save(db, exam_id, expected.ExpectedState(**merged))
    except expected.BadExpectedState as exc:
        raise ProvisioningError(str(exc)) from None
    return get_exam(db, exam_id)


def rotate_join_code(db: sqlite_utils.Database, exam_id: int) -> str:
    """A fresh join code, unique among exams that have not ended (the server looks codes up among those)."""
    with write_transaction(db):
        get_exam(db, exam_id)
        in_use = {row[0] for row in db.execute("SELECT join_code FROM exam WHERE ended_at IS NULL")}
        code = exams.new_join_code()
        while code in in_use:
            code = exams.new_join_code()
        db.execute("UPDATE exam SET join_code = ? WHERE id = ?", [code, exam_id])
    return code


def import_roster(db: sqlite_utils.Database, exam_id: int, table: Table) -> int:
    """Check every row of a roster (a CSV file or a sheet), then store all entries in one transaction."""
    exam = get_exam(db, exam_id)
    hall = get_hall(db, exam["hall"])
    taken = dict(
        db.execute(
            "SELECT seat, student_number FROM roster WHERE exam_id = ? AND seat IS NOT NULL", [exam_id]
        )
    )
    entries = check_roster(table, seat_labels(hall["seat_map"]) or None, taken)
    return exams.add_roster(db, exam_id, entries)


def list_roster(db: sqlite_utils.Database, exam_id: int) -> list[dict[str, Any]]:
    get_exam(db, exam_id)
    rows = db.execute(
        "SELECT student_number, unseal(exam_id, name), extra_time_min, seat FROM roster WHERE exam_id = ? "
        "ORDER BY student_number",
        [exam_id],
    ).fetchall()
    return [dict(zip(("student_number", "name", "extra_time_min", "seat"), row, strict=True)) for row in rows]
