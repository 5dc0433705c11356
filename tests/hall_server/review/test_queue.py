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
