"""A hall, an exam running now and a roster, made through the store library: the benchmarks' common start.

Called by ``bench/ingest.py``, ``bench/agent.py`` and ``bench/frames.py`` (the tests have their own in
``tests/support.py``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hall_server.store import crypto, db, exams
from invigil.timeutil import utc_now

JOIN_CODE = "BENCH234"


def provision_exam(data_dir: Path, students: int = 1) -> tuple[int, list[str]]:
    """(exam id, student numbers s00001..sNNNNN) of a new exam in ``data_dir`` that began 10 minutes ago."""
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        master = crypto.load_or_create_master_key(data_dir)
        hall_id = exams.create_hall(store, "Bench hall")
        start = utc_now() - timedelta(minutes=10)
        exam_id = exams.create_exam(
            store,
            master,
            hall_id=hall_id,
            title="Bench exam",
            starts_at=start,
            ends_at=start + timedelta(minutes=240),
            join_code=JOIN_CODE,
        )
        numbers = [f"s{i:05d}" for i in range(1, students + 1)]
        exams.add_roster(store, exam_id, [exams.RosterEntry(n, f"Student {n}") for n in numbers])
    finally:
        store.close()
    return exam_id, numbers
