"""Provisioning for the dashboard tests: a hall with a seat map, an exam running now, a seated roster,
and staff accounts with assignments, all through the store library (as ``invigil-provision`` does)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from hall_server.store import crypto, db, exams, users
from invigil.timeutil import utc_now

PASSWORD = "correct horse battery"


@dataclass
class Hall:
    data_dir: Path
    hall_id: int
    exam_id: int
    join_code: str
    students: list[str]
    seats: dict[str, str]  # student number -> seat label


def seat_map(seats: int, per_row: int = 24, aisle_every: int = 8) -> list[dict[str, object]]:
    """Rows A, B, ... of ``per_row`` seats with an empty aisle column after every ``aisle_every`` seats."""
    entries = []
    for index in range(seats):
        row, place = divmod(index, per_row)
        col = place + 1 + place // aisle_every
        entries.append(
            {"seat": f"{string.ascii_uppercase[row % 26]}{place + 1:02d}", "row": row + 1, "col": col}
        )
    return entries


def provision_hall(
    data_dir: Path,
    *,
    hall: str = "Hall A",
    title: str = "Linear Algebra",
    students: int = 30,
    join_code: str = "HALLA234",
    with_seat_map: bool = True,
    capture_interval_s: int = 5,
    extra_time: dict[int, int] | None = None,
    prefix: str = "s",
) -> Hall:
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        master = crypto.load_or_create_master_key(data_dir)
        layout = seat_map(students) if with_seat_map else []
        hall_id = exams.create_hall(store, hall, seat_map=layout)
        start = utc_now() - timedelta(minutes=10)
        exam_id = exams.create_exam(
            store,
            master,
            hall_id=hall_id,
            title=title,
            starts_at=start,
            ends_at=start + timedelta(minutes=180),
            join_code=join_code,
            capture_interval_s=capture_interval_s,
        )
        numbers = [f"{prefix}{i:04d}" for i in range(1, students + 1)]
        seats = {n: str(layout[i]["seat"]) for i, n in enumerate(numbers)} if layout else {}
        exams.add_roster(
            store,
            exam_id,
            [
                exams.RosterEntry(n, f"Student {n}", (extra_time or {}).get(i, 0), seats.get(n))
                for i, n in enumerate(numbers)
            ],
        )
    finally:
        store.close()
    return Hall(data_dir, hall_id, exam_id, join_code, numbers, seats)


def add_staff(
    data_dir: Path, username: str, *, hall_id: int | None = None, exam_id: int | None = None
) -> str:
    store = db.connect(data_dir)
    try:
        users.create_user(store, username, PASSWORD, ["invigilator"])
        if hall_id is not None or exam_id is not None:
            users.assign(store, username, "invigilator", hall_id=hall_id, exam_id=exam_id)
    finally:
        store.close()
    return username
