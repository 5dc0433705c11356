"""Review benchmark: a 3-hour exam at a 5 s capture interval (2,160 capture records per student, 2/3 of them
"unchanged since" records), then the three figures review depends on:

- the timeline query of one session (target < 1 s), next to the same query over a session whose personal
  columns are not sealed (a baseline in the same run: what opening sealed columns costs),
- one student's PDF report (target < 10 s),
- the whole-exam zip export of 421 students (in --quick: fewer students, extrapolated and labelled so).

Data is seeded directly through the store library in bulk (not through HTTP): real encrypted blobs (a pool
of distinct screenshot-like PNGs shared by the captures), chained records, site and device events,
observations. Run: .venv/bin/python bench/review.py [--quick] [--students N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw  # noqa: E402

from hall_server.review.reports import data, export, pdf, render  # noqa: E402
from hall_server.review.reports.timeline import timeline  # noqa: E402
from hall_server.store import chain, crypto, db, exams, sealed  # noqa: E402
from hall_server.store.blobs import BlobStore  # noqa: E402
from hall_server.store.db import write_transaction  # noqa: E402
from hall_server.store.screens import Screens  # noqa: E402
from invigil.timeutil import to_wire  # noqa: E402

INTERVAL_S = 5
DURATION_S = 3 * 3600
RECORDS = DURATION_S // INTERVAL_S  # 2160
IMAGE_POOL = 24
SITES_PER_STUDENT = 120
FULL_STUDENTS = 421


def screenshot(seed: int) -> tuple[bytes, bytes]:
    """A 1280x800 screen with lines of text (PNG, as the agent sends) and its 320 px thumbnail."""
    rng = random.Random(seed)
    image = Image.new("RGB", (1280, 800), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1280, 36), fill=(40, 60, 90))
    draw.text((12, 10), f"Exam portal - question {seed % 20 + 1}", fill=(255, 255, 255))
    for line in range(40):
        words = " ".join(
            rng.choice(["matrix", "vector", "basis", "kernel", "rank", "eigen", "span"])
            for _ in range(rng.randint(4, 14))
        )
        draw.text((24, 50 + line * 18), words, fill=(20, 20, 20))
    full, thumb = io.BytesIO(), io.BytesIO()
    image.save(full, "PNG", optimize=False)
    image.thumbnail((320, 320))
    image.save(thumb, "JPEG", quality=75)
    return full.getvalue(), thumb.getvalue()


def seed(data_dir: Path, students: int) -> tuple[int, list[str]]:
    db.migrate(data_dir)
    store = db.connect(data_dir, "NORMAL")
    master = crypto.load_or_create_master_key(data_dir)
    hall_id = exams.create_hall(store, "Sports Hall")
    start = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)
    exam_id = exams.create_exam(
        store,
        master,
        hall_id=hall_id,
        title="Linear Algebra (bench)",
        starts_at=start,
        ends_at=start + timedelta(seconds=DURATION_S),
    )
    numbers = [f"s{i:07d}" for i in range(1, students + 1)]
    exams.add_roster(
        store,
        exam_id,
        [exams.RosterEntry(n, f"Student {n}", seat=f"R{i // 20}-{i % 20}") for i, n in enumerate(numbers)],
    )
    key = exams.exam_key(store, master, exam_id)
    blobs = BlobStore(data_dir)
    pool = []
    for index in range(IMAGE_POOL):
        full, thumb = screenshot(index)
        pool.append((blobs.put(exam_id, key, full)[0], blobs.put(exam_id, key, thumb)[0], len(full)))
    rng = random.Random(1)
    roster = dict(
        store.execute("SELECT student_number, id FROM roster WHERE exam_id = ?", [exam_id]).fetchall()
    )
    keys = sealed.keys_of(store)
    for number in numbers:
        seed_session(store, exam_id, roster[number], number, start, pool, rng, keys.seal)
    # The baseline: one more student's session in an exam of its own whose personal columns are stored as
    # a store before sealing kept them (readers return a text as it is), so the timeline query is timed with
    # and without opening sealed values in the same run.
    plain_exam = exams.create_exam(
        store,
        master,
        hall_id=hall_id,
        title="Baseline (not sealed)",
        starts_at=start,
        ends_at=start + timedelta(seconds=DURATION_S),
    )
    with write_transaction(store):
        plain_roster = store.execute(
            "INSERT INTO roster (exam_id, student_number, name) VALUES (?, 'baseline', 'Baseline student')",
            [plain_exam],
        ).lastrowid
    seed_session(store, plain_exam, plain_roster, "baseline", start, pool, rng, lambda _exam, value: value)
    store.close()
    return exam_id, numbers


def seed_session(
    store: db.Store,
    exam_id: int,
    roster_id: int,
    number: str,
    start: datetime,
    pool: list[tuple[str, str, int]],
    rng: random.Random,
    seal: Callable[[int, str | None], bytes | str | None],
) -> None:
    """One student's 3-hour session: captures, site and device events chained in receive order, and two
    observations; personal columns go through ``seal`` (the store's, or as they are for the baseline)."""
    with write_transaction(store):
        enrolled = start - timedelta(minutes=3)
        session_id = store.execute(
            "INSERT INTO agent_session (exam_id, roster_id, agent_id, token_hash, client_ip, "
            "agent_version, os, enrolled_at, enrol_agent_time, last_seen_at, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                exam_id,
                roster_id,
                f"agent-{number}",
                hashlib.sha256(number.encode()).hexdigest(),
                seal(exam_id, f"10.1.{roster_id % 250}.{rng.randint(1, 250)}"),
                "0.1",
                "Windows 11",
                to_wire(enrolled),
                to_wire(enrolled),
                to_wire(start),
                to_wire(start + timedelta(hours=4)),
            ],
        ).lastrowid
        records: list[tuple[str, dict]] = []
        current = None
        for i in range(RECORDS):
            at = start + timedelta(seconds=i * INTERVAL_S)
            received = to_wire(at + timedelta(milliseconds=rng.randint(20, 400)))
            if current is None or i % 3 == 0:
                sha, thumb, size = pool[rng.randrange(IMAGE_POOL)]
                current = f"cap-{number}-{i:05d}"
                records.append(
                    (
                        "capture",
                        dict(
                            capture_id=current,
                            exam_id=exam_id,
                            monitor=0,
                            agent_time=to_wire(at),
                            received_at=received,
                            changed=1,
                            sha256=sha,
                            size=size,
                            width=1280,
                            height=800,
                            format="png",
                            trigger="interval",
                            focused_app="firefox",
                            window_title="Exam portal",
                            since_capture_id=None,
                            thumb_sha256=thumb,
                        ),
                    )
                )
            else:
                records.append(
                    (
                        "capture",
                        dict(
                            capture_id=f"unc-{number}-{i:05d}",
                            exam_id=exam_id,
                            monitor=0,
                            agent_time=to_wire(at),
                            received_at=received,
                            changed=0,
                            sha256=None,
                            size=None,
                            width=None,
                            height=None,
                            format=None,
                            trigger=None,
                            focused_app=None,
                            window_title=None,
                            since_capture_id=current,
                            thumb_sha256=None,
                        ),
                    )
                )
        for j in range(SITES_PER_STUDENT):
            at = start + timedelta(seconds=rng.randrange(DURATION_S))
            blocked = j % 40 == 0
            records.append(
                (
                    "site_event",
                    dict(
                        source="proxy",
                        event_id=f"px-{number}-{j:04d}",
                        exam_id=exam_id,
                        time=to_wire(at),
                        received_at=to_wire(at),
                        client_ip="10.1.0.1",
                        host="chat.example.com" if blocked else "exam.uni.example",
                        url=None,
                        decision="blocked" if blocked else "allowed",
                        reason="allowlist",
                    ),
                )
            )
        at = start + timedelta(minutes=rng.randrange(170))
        records.append(
            (
                "device_event",
                dict(
                    event_id=f"dev-{number}-0001",
                    exam_id=exam_id,
                    kind="monitors",
                    agent_time=to_wire(at),
                    received_at=to_wire(at),
                    detail=json.dumps({"count": 2}),
                ),
            )
        )
        records.sort(key=lambda record: record[1]["received_at"])
        session_row = store.execute(
            "SELECT id, exam_id, roster_id, agent_id, enrolled_at FROM agent_session WHERE id = ?",
            [session_id],
        ).fetchone()
        head = chain.genesis(dict(zip(chain.GENESIS_FIELDS, session_row, strict=True)))
        rows: dict[str, list[tuple]] = {"capture": [], "site_event": [], "device_event": []}
        for seq, (kind, fields) in enumerate(records, start=1):
            head = chain.link_hash(head, kind, seq, {name: fields[name] for name in chain.FIELDS[kind]})
            personal = sealed.SEALED_COLUMNS[kind]
            stored = [seal(exam_id, value) if name in personal else value for name, value in fields.items()]
            rows[kind].append((session_id, *stored, seq, head))
        for kind, values in rows.items():
            columns = ["session_id", *records_columns(kind), "chain_seq", "chain_hash"]
            store.conn.executemany(
                f"INSERT INTO {kind} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                values,
            )
        store.execute(
            "UPDATE agent_session SET chain_head = ?, chain_length = ? WHERE id = ?",
            [head, len(records), session_id],
        )
        monitor_at = at
        for kind, when, detail in (
            ("second_monitor", monitor_at, {"count": 2}),
            ("blocked_site", start + timedelta(minutes=40), {"host": "chat.example.com"}),
        ):
            store.execute(
                "INSERT INTO observation (exam_id, session_id, kind, at, detail) VALUES (?,?,?,?,?)",
                [exam_id, session_id, kind, to_wire(when), seal(exam_id, json.dumps(detail))],
            )


def records_columns(kind: str) -> list[str]:
    if kind == "capture":
        return [*chain.FIELDS["capture"], "thumb_sha256"]
    return list(chain.FIELDS[kind])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 students, extrapolate the export (< 60 s)")
    parser.add_argument("--students", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, default=None, help="Seed into this directory and keep it.")
    args = parser.parse_args()
    students = args.students or (8 if args.quick else FULL_STUDENTS)
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="invigil-bench-review-"))

    started = time.perf_counter()
    exam_id, numbers = seed(data_dir, students)
    seed_s = time.perf_counter() - started
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures are wall time)")
    print(
        f"seeded {students} students x {RECORDS} capture records (+{SITES_PER_STUDENT} sites) "
        f"in {seed_s:.1f} s"
    )

    store = db.connect(data_dir)
    session_id = store.execute("SELECT MIN(id) FROM agent_session").fetchone()[0]
    plain_id = store.execute(
        "SELECT s.id FROM agent_session s JOIN roster r ON r.id = s.roster_id "
        "WHERE r.student_number = 'baseline'"
    ).fetchone()[0]
    medians = {}
    for label, sid in (("sealed", session_id), ("baseline, not sealed", plain_id)):
        runs = []
        for _ in range(5):
            began = time.perf_counter()
            view = timeline(store, sid)
            runs.append(time.perf_counter() - began)
        medians[label] = statistics.median(runs)
        print(
            f"timeline(db, session), {label}: median {medians[label] * 1000:.0f} ms over 5 runs "
            f"({view.capture_records} records -> {len(view.entries)} filmstrip entries, "
            f"{len(view.sites)} sites)"
        )
    verdict = "PASS" if medians["sealed"] < 1.0 else "FAIL"
    ratio = medians["sealed"] / medians["baseline, not sealed"]
    print(f"  {verdict} [target < 1 s]; sealed columns cost x{ratio:.2f} against the same session not sealed")

    began, cpu_began = time.perf_counter(), time.process_time()
    exam_screens = data.open_screens(store, Screens.of_data_dir(data_dir), exam_id)
    report = data.student_report(store, exam_screens, exam_id, numbers[0], generated_by="bench")
    html = render.render_html(report, embed_chain=False)
    gathered = time.perf_counter() - began
    body = pdf.html_to_pdf(html)
    pdf_s, pdf_cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
    print(
        f"one student's PDF: {pdf_s:.2f} s wall, {pdf_cpu_s:.2f} s CPU (gather+HTML {gathered:.2f} s), "
        f"{len(body) // 1024} KiB, "
        f"HTML {len(html) // 1024} KiB [target < 10 s]"
    )

    out = data_dir / "exam.zip"
    began = time.perf_counter()
    export.export_exam(store, data_dir, exam_id, out, user_id=None, actor="bench", jobs=args.jobs)
    export_s = time.perf_counter() - began
    per_student = export_s / students
    size_mb = out.stat().st_size / 1e6
    print(
        f"zip export of {students} students with {args.jobs} render process(es): {export_s:.1f} s "
        f"({per_student:.2f} s/student, {size_mb:.1f} MB)"
    )
    if students != FULL_STUDENTS:
        print(
            f"  EXTRAPOLATED to {FULL_STUDENTS} students: ~{per_student * FULL_STUDENTS / 60:.1f} min, "
            f"~{size_mb / students * FULL_STUDENTS:.0f} MB (linear in students; not measured)"
        )
    if args.keep is None:
        import shutil

        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
