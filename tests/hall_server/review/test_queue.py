"""The review queue over an exam seeded through the real agent API: the expected state set with
``invigil-provision exam update``, the queue printed by ``invigil-server review-queue EXAM --json``, moments
cleared as "nothing here", students assigned, progress, and retention deleting the queue's rows."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

from hall_server.review import queue
from hall_server.store import db
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, SiteEvent, Unchanged
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, add_staff, post_site_events
from support import BIN, png_bytes, sha256


def _provision(exam, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "invigil-provision"), "--data-dir", str(exam.data_dir), *args],
        capture_output=True,
        text=True,
    )


def _queue_json(exam, *args: str) -> dict:
    done = subprocess.run(
        [
            str(BIN / "invigil-server"),
            "review-queue",
            str(exam.exam_id),
            "--data-dir",
            str(exam.data_dir),
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _seed(client, exam, number: str, ip: str, notes_at: int | None, *, blocked: bool = False) -> None:
    """Two minutes on the exam platform (and the allowed spreadsheet); optionally a switch to a notes
    app at ``notes_at`` seconds for 40 s, and a blocked site."""
    hall = FlaskHall(client, ip)
    start = utc_now()
    hall.enrol(Enrolment(number, exam.join_code, f"agent-{number}", start, "0.1", "Linux"))
    plan = [
        (0, "firefox", "Ans - question 1"),
        (30, "libreoffice-calc", "data.ods"),
        (50, "firefox", "Ans - q 2"),
    ]
    if notes_at is not None:
        plan += [(notes_at, "obsidian", "notes.md"), (notes_at + 40, "firefox", "Ans - question 3")]
    plan.sort()
    seed = int(number[1:]) * 100
    for index, (second, app, title) in enumerate(plan):
        body = png_bytes(160, 100, seed=seed + index)
        meta = CaptureMeta(0, start + timedelta(seconds=second), sha256(body), 160, 100, "focus", app, title)
        hall.put_capture(f"{number}-c{index}", meta, body, "image/png")
    last = f"{number}-c{len(plan) - 1}"
    for second in range(5, 121, 5):
        if second not in {s for s, _, _ in plan}:
            shown = max((i for i, (s, _, _) in enumerate(plan) if s <= second), default=0)
            hall.put_unchanged(
                f"{number}-u{second}", Unchanged(0, start + timedelta(seconds=second), f"{number}-c{shown}")
            )
    assert last
    hall.post_device_events([DeviceEvent(f"{number}-d1", "monitors", start, {"count": 1})])
    events = [
        SiteEvent(
            f"{number}-s1", start + timedelta(seconds=2), ip, "ans.app", "allowed", "proxy", "allowlist"
        )
    ]
    if blocked:
        events.append(
            SiteEvent(
                f"{number}-s2",
                start + timedelta(seconds=70),
                ip,
                "chatgpt.com",
                "blocked",
                "proxy",
                "not allowed",
            )
        )
    post_site_events(client, events)


def test_queue_of_a_seeded_exam(exam, client):
    changed = _provision(
        exam,
        "exam",
        "update",
        str(exam.exam_id),
        "--platform-app",
        "firefox",
        "--platform-title",
        "Ans",
        "--platform-host",
        "ans.app",
        "--allow-app",
        "libreoffice*",
    )
    assert changed.returncode == 0, changed.stderr
    assert "allowed apps libreoffice*" in changed.stdout
    refused = _provision(exam, "exam", "update", str(exam.exam_id), "--allow-app", "  ")
    assert refused.returncode != 0 and "--allow-app needs a name" in refused.stderr

    _seed(client, exam, "s0001", "10.0.0.11", notes_at=60)
    _seed(client, exam, "s0002", "10.0.0.12", notes_at=None)
    _seed(client, exam, "s0003", "10.0.0.13", notes_at=None, blocked=True)

    document = _queue_json(exam)
    moments = document["moments"]
    by_student = {m["student_number"]: m for m in moments}
    assert set(by_student) == {"s0001", "s0003"}, moments  # the ordinary student is not in the queue
    notes = by_student["s0001"]
    assert notes["kinds"] == ["off_exam_focus"] and notes["seconds"] == 40
    assert notes["detail"]["apps"] == ["obsidian"]
    # the screen before (the exam), the notes app, and the exam again after it
    assert notes["capture_ids"] == ["s0001-c2", "s0001-c3", "s0001-c4"]
    assert by_student["s0003"]["kinds"] == ["assistant_named", "blocked_site"]
    # ordered by kind: the assistant first
    assert [m["student_number"] for m in moments] == ["s0003", "s0001"]
    assert document["progress"] == "3 of 5 students cleared, 2 moments open"

    store = db.connect(exam.data_dir)
    rita = add_staff(store, "rita", "reviewer")
    session = notes["session_id"]
    queue.mark_nothing_here(store, exam.exam_id, session, notes["key"], rita, utc_now())
    assert queue.claim_next(store, exam.exam_id, rita, 5, utc_now()) == ["s0003"]
    store.close()

    after = _queue_json(exam, "--by", "rita")
    states = {m["student_number"]: (m["state"], m["reviewer"]) for m in after["moments"]}
    assert states == {"s0001": ("nothing_here", None), "s0003": ("open", "rita")}
    assert after["progress"] == "4 of 5 students cleared, 1 moments open"
    assert [m["student_number"] for m in _queue_json(exam, "--open-only")["moments"]] == ["s0003"]

    store = db.connect(exam.data_dir)
    actions = [
        row[0]
        for row in store.execute("SELECT action FROM audit_log WHERE action LIKE 'queue_%' ORDER BY id")
    ]
    store.close()
    assert actions == ["queue_view", "queue_nothing_here", "queue_assigned", "queue_view", "queue_view"]


def test_unknown_exam_is_a_clear_error(exam):
    done = subprocess.run(
        [str(BIN / "invigil-server"), "review-queue", "99", "--data-dir", str(exam.data_dir), "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "no exam 99" in done.stderr


def _queue_cli(exam, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "invigil-server"),
            "review-queue",
            str(exam.exam_id),
            "--data-dir",
            str(exam.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
    )


def _expect_the_platform(exam) -> None:
    done = _provision(
        exam, "exam", "update", str(exam.exam_id), "--platform-app", "firefox", "--allow-app", "libreoffice*"
    )
    assert done.returncode == 0, done.stderr


def test_the_organiser_splits_the_students_among_reviewers(exam, client):
    _expect_the_platform(exam)
    for index, number in enumerate(exam.students):
        _seed(
            client,
            exam,
            number,
            f"10.0.0.{11 + index}",
            notes_at=60 if index != 2 else None,
            blocked=index < 2,
        )
    store = db.connect(exam.data_dir)
    rita, bob = add_staff(store, "rita", "reviewer"), add_staff(store, "bob", "reviewer")
    add_staff(store, "olga", "organiser")
    for name in ("rita", "bob"):
        store.execute(
            "INSERT INTO assignment (user_id, role, exam_id) VALUES (?, 'reviewer', ?)",
            [rita if name == "rita" else bob, exam.exam_id],
        )
    store.conn.commit()
    store.close()
    open_by_student = {}
    for m in _queue_json(exam)["moments"]:
        open_by_student[m["student_number"]] = open_by_student.get(m["student_number"], 0) + 1
    assert len(open_by_student) == 4  # s0003 was on the exam all along

    # A name that does not review this exam is refused with what to do, and nothing is assigned.
    refused = _queue_cli(exam, "--split", "rita,olga", "--by", "olga")
    assert refused.returncode == 1
    assert (
        "olga does not review exam" in refused.stderr and "user assign olga --role reviewer" in refused.stderr
    )
    assert all(m["reviewer"] is None for m in _queue_json(exam)["moments"])

    done = _queue_cli(exam, "--split", "rita,bob", "--by", "olga")
    assert done.returncode == 0, done.stderr
    assert "rita takes 2 students" in done.stderr and "bob takes 2 students" in done.stderr
    assert "  rita: 2 students" in done.stdout and "  bob: 2 students" in done.stdout
    document = _queue_json(exam)
    held = {m["student_number"]: m["reviewer"] for m in document["moments"]}
    load = {name: sum(open_by_student[n] for n, r in held.items() if r == name) for name in ("rita", "bob")}
    assert set(held.values()) == {"rita", "bob"} and abs(load["rita"] - load["bob"]) <= 1, (held, load)
    assert {r: v["students"] for r, v in document["reviewers"].items()} == {"bob": 2, "rita": 2}

    # Splitting again shares out only what nobody holds (nothing); --reassign shares out everyone again.
    again = _queue_cli(exam, "--split", "rita,bob")
    assert "rita takes 0 students" in again.stderr and "bob takes 0 students" in again.stderr
    assert _queue_cli(exam, "--split", "rita", "--reassign", "--by", "olga").returncode == 0
    assert {m["reviewer"] for m in _queue_json(exam)["moments"]} == {"rita"}

    given = _queue_cli(exam, "--release", "rita", "--assign", "bob=s0001,s0002", "--by", "olga")
    assert given.returncode == 0, given.stderr
    assert "rita gave back 4 students" in given.stderr and "bob holds s0001, s0002" in given.stderr
    held = {m["student_number"]: m["reviewer"] for m in _queue_json(exam)["moments"]}
    assert held == {"s0001": "bob", "s0002": "bob", "s0004": None, "s0005": None}
    bad = _queue_cli(exam, "--assign", "bob")
    assert bad.returncode == 1 and "write USER=NUMBER,NUMBER" in bad.stderr
    assert "--reassign goes with --split" in _queue_cli(exam, "--reassign").stderr

    store = db.connect(exam.data_dir)
    rows = store.execute(
        "SELECT user_id, action, detail FROM audit_log WHERE action IN ('queue_assigned', 'queue_released') "
        "ORDER BY id"
    ).fetchall()
    store.close()
    olga = rows[0][0]
    assert olga not in (rita, bob) and {row[0] for row in rows} == {olga}  # the organiser, not the reviewer
    assert [row[1] for row in rows][-2:] == ["queue_released", "queue_assigned"]
    assert json.loads(rows[-1][2])["reviewer"] == bob


def test_two_reviewers_taking_the_next_at_once_never_share_a_student(exam, client):
    _expect_the_platform(exam)
    for index, number in enumerate(exam.students[:3]):
        _seed(client, exam, number, f"10.0.1.{11 + index}", notes_at=60)
    store = db.connect(exam.data_dir)
    rita, bob = add_staff(store, "rita", "reviewer"), add_staff(store, "bob", "reviewer")
    now = utc_now()
    # bob's "take next" read the queue before rita's landed: the atomic assignment gives him none of hers.
    assert queue.assign(store, exam.exam_id, ["s0001", "s0002"], rita, now, by=rita) == ["s0001", "s0002"]
    taken = queue.assign(
        store, exam.exam_id, ["s0001", "s0002", "s0003"], bob, now, by=bob, only_unassigned=True
    )
    assert taken == ["s0003"]
    assert queue.claim_next(store, exam.exam_id, bob, 5, now) == []
    assert queue.release(store, exam.exam_id, rita, now, by=rita, student_numbers=["s0002"]) == 1
    assert queue.claim_next(store, exam.exam_id, bob, 5, now) == ["s0002"]
    store.close()


def test_the_split_plan_evens_the_open_moments():
    plan = queue.plan_split({"s1": 5, "s2": 1, "s3": 1, "s4": 3, "s5": 2}, ["rita", "bob"])
    assert plan == {"rita": ["s1", "s2"], "bob": ["s4", "s5", "s3"]}
    assert queue.plan_split({"s1": 1, "s2": 1}, ["rita", "bob"], {"rita": 4}) == {
        "rita": [],
        "bob": ["s1", "s2"],
    }
    assert queue.plan_split({}, ["rita"]) == {"rita": []}


def test_a_seat_that_went_silent_and_never_left_has_its_trailing_gap_in_the_queue(exam, client):
    """An agent killed mid-exam sends no record after its last one: the queue shows that silence to now."""
    hall = FlaskHall(client, "10.0.2.11")
    start = utc_now() - timedelta(minutes=5)
    hall.enrol(Enrolment("s0001", exam.join_code, "agent-s0001", start, "0.1", "Linux"))
    body = png_bytes(160, 100, seed=7)
    meta = CaptureMeta(0, start, sha256(body), 160, 100, "focus", "firefox", "Ans - question 1")
    hall.put_capture("s0001-c0", meta, body, "image/png")
    gaps = [m for m in _queue_json(exam)["moments"] if m["kinds"] == ["capture_gap"]]
    assert len(gaps) == 1 and gaps[0]["student_number"] == "s0001"
    assert gaps[0]["seconds"] >= 60  # from the last record (enrolment time, five minutes ago) to now
