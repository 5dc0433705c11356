"""A realistic exam for the reviewer-page tests, seeded through the real agent API.

Exam A ("Linear Algebra", hall A, one hour); six students upload 50 minutes of screens at a 30 s interval
(changed screens and "unchanged since" records) with window titles, site events from the proxy, and device
events; two students never enrolled. Exam B (hall B) has one student. The server attributes a site event to
a session only from its enrolment on, so each session's records run from its enrolment into the next 50
minutes (agent times ahead of the server's clock: nothing compares a capture's time with it).
The uploads go through the agent's own ``HallClient`` over the Flask test client (``reviewseed.FlaskHall``)
before the real server starts: the same API, without a socket per request. Staff are created with real
passwords (the browser tests log in): one user per role and exam.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from hall_server.app import create_app
from hall_server.store import crypto, db, exams, users
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, SiteEvent, Unchanged
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, post_site_events
from support import LiveServer, sha256

PASSWORD = "correct horse battery"
INTERVAL_S = 30
SESSION_MIN = 50
ROLES = ("organiser", "invigilator", "reviewer", "exam_board")

APPS = {
    "moodle": ("firefox", "Linear Algebra exam - Moodle", (236, 240, 246)),
    "calc": ("gnome-calculator", "Calculator", (60, 64, 72)),
    "pdf": ("evince", "formula-sheet.pdf", (250, 250, 250)),
    "chat": ("firefox", "ChatGPT - Firefox", (52, 53, 65)),
    "editor": ("code", "notes.py - Visual Studio Code", (30, 30, 30)),
}


def screen_png(app: str, seed: int, width: int = 640, height: int = 400) -> bytes:
    """A small screen that looks like a screen: a title bar naming the window and lines of 'text'."""
    _, title, colour = APPS[app]
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 22), fill=(40, 44, 52))
    draw.text((8, 5), title, fill=(230, 230, 230))
    ink = (30, 30, 30) if sum(colour) > 380 else (200, 200, 200)
    for line in range(12):
        length = 120 + ((seed * 37 + line * 53) % (width - 180))
        y = 40 + line * 26
        draw.rectangle((24, y, 24 + length, y + 9), fill=ink)
    draw.text((width - 90, height - 20), f"#{seed}", fill=ink)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def thumb_png(body: bytes) -> bytes:
    with Image.open(io.BytesIO(body)) as image:
        image.thumbnail((160, 100))
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()


@dataclass
class Student:
    number: str
    ip: str
    plan: list[str]  # the app on screen in each 5-interval block
    gap: tuple[int, int] | None = None  # records [a, b) never sent: a pause in the captures
    monitors: int = 1
    blocked: list[str] = field(default_factory=list)
    device: list[tuple[str, dict[str, object]]] = field(default_factory=list)


STUDENTS = [
    Student("s0001", "10.0.0.11", ["moodle", "moodle", "pdf", "moodle", "calc", "moodle"]),
    Student(
        "s0002",
        "10.0.0.12",
        ["moodle", "chat", "moodle", "chat", "moodle", "moodle"],
        blocked=["chat.openai.com", "chat.openai.com", "discord.com"],
    ),
    Student("s0003", "10.0.0.13", ["moodle", "pdf", "moodle", "moodle"], monitors=2, blocked=["discord.com"]),
    Student("s0004", "10.0.0.14", ["moodle", "calc", "moodle", "moodle", "moodle"], gap=(30, 44)),
    Student(
        "s0005",
        "10.0.0.15",
        ["moodle", "editor", "moodle", "moodle"],
        device=[("process_category", {"category": "remote_access", "names": ["anydesk"]})],
    ),
    Student("s0006", "10.0.0.16", ["moodle", "moodle", "moodle"]),
]


@dataclass
class ReviewSetup:
    data_dir: Path
    exam_a: int
    exam_b: int
    hall_a: int
    hall_b: int
    start: datetime
    users: dict[tuple[str, str], str]  # (role, "a" | "b") -> username
    students: list[str]


def _exam(
    store, master, hall: str, title: str, code: str, start: datetime, roster: list[str]
) -> tuple[int, int]:
    hall_id = exams.create_hall(store, hall)
    exam_id = exams.create_exam(
        store,
        master,
        hall_id=hall_id,
        title=title,
        starts_at=start,
        ends_at=start + timedelta(minutes=60),
        join_code=code,
        capture_interval_s=INTERVAL_S,
    )
    seats = {n: f"A{i + 1:02d}" for i, n in enumerate(roster)}
    exams.add_roster(store, exam_id, [exams.RosterEntry(n, f"Student {n[-2:]}", 0, seats[n]) for n in roster])
    return hall_id, exam_id


def _seed_student(flask_client, code: str, student: Student) -> None:
    hall = FlaskHall(flask_client, student.ip)
    start = utc_now()
    hall.enrol(Enrolment(student.number, code, f"agent-{student.number}", start, "0.1", "Linux"))
    records = SESSION_MIN * 60 // INTERVAL_S
    block = max(records // len(student.plan), 1)
    since: dict[int, str] = {}
    seed = int(student.number[1:]) * 100
    for index in range(records):
        if student.gap and student.gap[0] <= index < student.gap[1]:
            continue
        moment = start + timedelta(seconds=INTERVAL_S * (index + 1))
        app = student.plan[min(index // block, len(student.plan) - 1)]
        for monitor in range(student.monitors):
            changed = monitor not in since or index % 4 == 0 or index % block == 0
            if changed:
                seed += 1
                body = screen_png(app if monitor == 0 else "pdf", seed)
                capture_id = f"cap-{student.number}-{monitor}-{index:04d}"
                meta = CaptureMeta(
                    monitor, moment, sha256(body), 640, 400, "interval", APPS[app][0], APPS[app][1]
                )
                assert hall.put_capture(capture_id, meta, body, "image/png")
                assert hall.put_thumbnail(capture_id, thumb_png(body), "image/png")
                since[monitor] = capture_id
            else:
                record = Unchanged(monitor, moment, since[monitor])
                assert hall.put_unchanged(f"unc-{student.number}-{monitor}-{index:04d}", record)
    device = list(student.device)
    if student.monitors > 1:
        device.append(("monitors", {"count": student.monitors}))
    if device:
        hall.post_device_events(
            [
                DeviceEvent(f"dev-{student.number}-{i}", kind, start + timedelta(minutes=12 + 9 * i), detail)
                for i, (kind, detail) in enumerate(device)
            ]
        )
    events = [
        SiteEvent(
            f"px-{student.number}-ok",
            start + timedelta(minutes=1),
            student.ip,
            "exam.uni.example",
            "allowed",
            "proxy",
            "allowlist",
        ),
    ]
    for i, host in enumerate(student.blocked):
        events.append(
            SiteEvent(
                f"px-{student.number}-b{i}",
                start + timedelta(minutes=10 + 11 * i, seconds=7),
                student.ip,
                host,
                "blocked",
                "proxy",
                "not on the allowlist",
                f"https://{host}/",
            )
        )
    post_site_events(flask_client, events)


def seed_review_exam(data_dir: Path) -> ReviewSetup:
    db.migrate(data_dir)
    store = db.connect(data_dir)
    start = utc_now() - timedelta(minutes=1)
    roster_a = [f"s{i:04d}" for i in range(1, 9)]
    try:
        master = crypto.load_or_create_master_key(data_dir)
        hall_a, exam_a = _exam(store, master, "Hall A", "Linear Algebra", "HALLA234", start, roster_a)
        hall_b, exam_b = _exam(store, master, "Hall B", "Organic Chemistry", "HALLB234", start, ["b0001"])
        names: dict[tuple[str, str], str] = {}
        for role in ROLES:
            for which, hall_id, exam_id in (("a", hall_a, exam_a), ("b", hall_b, exam_b)):
                username = f"{role.replace('_', '')}_{which}"
                users.create_user(store, username, PASSWORD, [role])
                if role in ("organiser", "invigilator"):
                    users.assign(store, username, role, hall_id=hall_id)
                else:
                    users.assign(store, username, role, exam_id=exam_id)
                names[(role, which)] = username
        users.create_user(store, "reviewer_a2", PASSWORD, ["reviewer"])
        users.assign(store, "reviewer_a2", "reviewer", exam_id=exam_a)
    finally:
        store.close()
    # The seeded sessions are dated up to an hour ahead of the upload: a bound wider than that keeps the
    # agents' clocks from raising clock_skew, which these pages' expected counts do not include.
    client = create_app({"data_dir": str(data_dir), "clock_skew_max_s": 3 * 3600}).test_client()
    for student in STUDENTS:
        _seed_student(client, "HALLA234", student)
    _seed_student(client, "HALLB234", Student("b0001", "10.0.1.11", ["moodle", "chat"]))
    return ReviewSetup(data_dir, exam_a, exam_b, hall_a, hall_b, start, names, roster_a)


_seeded: list[ReviewSetup] = []


@pytest.fixture(scope="session")
def review_template(tmp_path_factory: pytest.TempPathFactory) -> ReviewSetup:
    """Seeded once per test run (about 10 s); each module serves its own copy. Every test module that
    imports this fixture gets its own session-scoped definition, so the seeded exam is kept here."""
    if not _seeded:
        _seeded.append(seed_review_exam(tmp_path_factory.mktemp("review-template") / "data"))
    return _seeded[0]


@pytest.fixture(scope="module")
def review_server(
    review_template: ReviewSetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ReviewSetup, LiveServer]]:
    """The real server (gunicorn) on a free loopback port over a fresh copy of the seeded exam."""
    data_dir = tmp_path_factory.mktemp("review") / "data"
    shutil.copytree(review_template.data_dir, data_dir)
    setup = dataclasses.replace(review_template, data_dir=data_dir)
    live = LiveServer(data_dir).start(timeout_s=30)
    yield setup, live
    live.stop()
