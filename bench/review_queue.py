"""Review-queue benchmark: how much of an exam a reviewer must look at to find everything that matters.

Seeds an exam through the real agent API (the agent's own ``HallClient`` over the Flask test client, so the
server runs its real enrolment, upload, tile-update, device-event and site-event handling; only the socket is
skipped): every student enrols, works through question pages (key images on a focus change, tile updates
while scrolling, "unchanged since" records in between), some use the allowed spreadsheet, and the proxy
reports the platform's sites. At random students and times it plants one irregularity of every kind the
queue knows (off-exam focus, another page or an assistant in the platform's browser, blocked, bypassing and
new sites, a second monitor, a VM, a VPN, a second network path, a capture gap, leaving early). Then it
builds the queue and prints, with PASS/FAIL lines:

- planted irregularities found in the queue (target: all),
- moments per ordinary student (target <= 0.5),
- the share of the exam's screens a reviewer opens to clear the queue (target <= 1 %),
- one reviewer's time for the whole exam at 10 s per moment (target <= 60 min; scaled to the full hall
  when run smaller, and labelled so),
- the time to build the queue.

The exam's clock is compressed: records are dated ``--hours`` ahead while they are sent now, so the bench
raises the clock-skew bound (``clock_skew_max_s``) instead of waiting three hours; and it runs SQLite with
``synchronous=NORMAL`` (the durability the bench does not measure).

Run: .venv/bin/python bench/review_queue.py [--students 421] [--hours 3] [--seed 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from hall_server.app import create_app  # noqa: E402
from hall_server.review import expected, queue, screentext  # noqa: E402
from hall_server.store import crypto, db, exams  # noqa: E402
from hall_server.store.screens import Screens  # noqa: E402
from invigil import tiles  # noqa: E402
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, SiteEvent, Unchanged  # noqa: E402
from invigil.timeutil import utc_now  # noqa: E402

from reviewseed import FlaskHall, post_site_events  # noqa: E402

FULL_STUDENTS = 421
WIDTH, HEIGHT, TILE = 640, 400, 64
SECONDS_PER_MOMENT = 10
JOIN_CODE = "QUEUE234"
STATE = expected.ExpectedState(
    platform_apps=("firefox",),
    platform_titles=("Ans",),
    platform_hosts=("ans.app",),
    allowed_apps=("libreoffice*",),
)
#: The kinds planted, each at one random student and time (the kind the queue must show for it).
PLANTS = (
    "off_exam_focus",
    "other_page",
    "assistant_named",
    "blocked_site",
    "bypass_site",
    "new_site",
    "second_monitor",
    "remote_tool",
    "vpn",
    "second_network_path",
    "capture_gap",
    "left_early",
    "screen_text",
)


@dataclass
class Plant:
    student: str
    kind: str
    start_s: int  # seconds into the exam
    length_s: int


FONT = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 15)


def page(seed: int, title: str, first_line: str | None = None) -> Image.Image:
    """A screen of the exam platform (or of whatever ``title`` says) with lines of readable text."""
    rng = random.Random(seed)
    image = Image.new("L", (WIDTH, HEIGHT), 245)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 28), fill=60)
    draw.text((10, 6), title, fill=255, font=FONT)
    for line in range(17):
        words = " ".join(rng.choice(["matrix", "basis", "kernel", "rank", "span", "eigen"]) for _ in range(8))
        draw.text((16, 40 + line * 21), first_line if line == 0 and first_line else words, fill=20, font=FONT)
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


class Student:
    """One simulated student's agent: keeps what its screen shows and sends records as the agent does."""

    def __init__(self, hall: FlaskHall, number: str, start: datetime, interval_s: int) -> None:
        self.hall, self.number, self.start, self.interval_s = hall, number, start, interval_s
        self.count = 0
        self.shown: str | None = None
        self.image: Image.Image | None = None
        self.app = "firefox"
        self.title = ""

    def at(self, second: int) -> datetime:
        return self.start + timedelta(seconds=second)

    def _id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.number}-{self.count:06d}"

    def key(
        self, second: int, app: str, title: str, seed: int, monitor: int = 0, text: str | None = None
    ) -> None:
        image = page(seed, title, text)
        body = png(image)
        capture_id = self._id("key")
        meta = CaptureMeta(monitor, self.at(second), _sha(body), WIDTH, HEIGHT, "focus", app, title)
        self.hall.put_capture(capture_id, meta, body, "image/png")
        if monitor == 0:
            self.shown, self.image, self.app, self.title = capture_id, image, app, title

    def scroll(self, second: int, seed: int) -> None:
        """A tile update: the lower rows of the page change as the student scrolls."""
        assert self.image is not None and self.shown is not None
        rows, cols = tiles.grid(WIDTH, HEIGHT, TILE)
        changed = [r * cols + c for r in range(rows - 2, rows) for c in range(cols)]
        new = self.image.copy()
        ImageDraw.Draw(new).rectangle((0, (rows - 2) * TILE, WIDTH, HEIGHT), fill=200 + seed % 50)
        packed = Image.new("L", tiles.packed_size(len(changed), cols, TILE), 0)
        for slot, index in enumerate(changed):
            box = tiles.screen_box(index, cols, TILE, WIDTH, HEIGHT)
            packed.paste(new.crop(box), tiles.packed_position(slot, len(changed), cols, TILE))
        body = png(packed)
        capture_id = self._id("upd")
        meta = CaptureMeta(
            0,
            self.at(second),
            _sha(body),
            WIDTH,
            HEIGHT,
            "interval",
            self.app,
            self.title,
            base=self.shown,
            tile=TILE,
            tiles=tiles.encode_map(changed, rows, cols),
        )
        self.hall.put_capture(capture_id, meta, body, "image/png")
        self.shown, self.image = capture_id, new

    def unchanged(self, second: int) -> None:
        assert self.shown is not None
        self.hall.put_unchanged(self._id("unc"), Unchanged(0, self.at(second), self.shown))


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def plants_per_kind(students: int) -> int:
    """One irregularity of each kind per 100 students (at least one)."""
    return max(1, students // 100)


def plan(
    numbers: list[str], duration_s: int, rng: random.Random, kinds_planted: tuple[str, ...]
) -> list[Plant]:
    """Each kind at distinct random students, at random times away from the exam's first and last minutes."""
    kinds = [kind for kind in kinds_planted for _ in range(plants_per_kind(len(numbers)))]
    chosen = rng.sample(numbers, min(len(kinds), len(numbers)))
    plants = []
    for index, kind in enumerate(kinds):
        student = chosen[index % len(chosen)]
        length = {"off_exam_focus": 40, "other_page": 60, "assistant_named": 45, "capture_gap": 120}.get(
            kind, 0
        )
        start = rng.randrange(300, duration_s - 600)
        plants.append(Plant(student, kind, start, length))
    return plants


def seed_student(
    client: Any,
    number: str,
    ip: str,
    start: datetime,
    duration_s: int,
    interval_s: int,
    plants: list[Plant],
    rng: random.Random,
) -> int:
    """Send one student's exam; returns the number of capture records sent."""
    hall = FlaskHall(client, ip)
    hall.enrol(Enrolment(number, JOIN_CODE, f"agent-{number}", start, "0.1", "Linux"))
    student = Student(hall, number, start, interval_s)
    mine = {p.kind: p for p in plants if p.student == number}
    question = 1
    seed = int(number[1:]) * 1000
    student.key(0, "firefox", f"Ans - question {question}", seed)
    records = 1
    next_page = rng.randrange(240, 900)
    next_scroll = rng.randrange(30, 120)
    uses_sheet = rng.random() < 0.3
    sheet_at = rng.randrange(600, duration_s - 900) if uses_sheet else -1
    end = duration_s
    if "left_early" in mine:
        end = mine["left_early"].start_s
    gap = mine.get("capture_gap")
    special: dict[int, tuple[str, str, int, str | None]] = {}  # second -> (app, title, length, text)
    for kind, app, title, text in (
        ("off_exam_focus", "obsidian", "notes.md - Obsidian", None),
        ("other_page", "firefox", "Eigenvalue - Wikipedia - Mozilla Firefox", None),
        ("assistant_named", "firefox", "ChatGPT - Mozilla Firefox", None),
        # the allowed spreadsheet with a pasted answer that names its source: only its text tells
        (
            "screen_text",
            "libreoffice-calc",
            "data.ods - LibreOffice Calc",
            "Answer from ChatGPT: the kernel is trivial",
        ),
    ):
        if kind in mine:
            special[mine[kind].start_s // interval_s * interval_s] = (app, title, mine[kind].length_s, text)
    if uses_sheet:
        special[sheet_at // interval_s * interval_s] = (
            "libreoffice-calc",
            "data.ods - LibreOffice Calc",
            180,
            None,
        )
    back_at = -1
    second = interval_s
    while second < end:
        if gap and gap.start_s <= second < gap.start_s + gap.length_s:
            second += interval_s
            continue
        if second in special:
            app, title, length, text = special[second]
            student.key(second, app, title, seed + second, text=text)
            back_at = second + length
        elif second == back_at:
            student.key(second, "firefox", f"Ans - question {question}", seed + question)
            back_at = -1
        elif back_at < 0 and second >= next_page:
            question += 1
            student.key(second, "firefox", f"Ans - question {question}", seed + question)
            next_page = second + rng.randrange(240, 900)
        elif back_at < 0 and second >= next_scroll and student.app == "firefox":
            student.scroll(second, seed + second)
            next_scroll = second + rng.randrange(30, 120)
        else:
            student.unchanged(second)
        records += 1
        second += interval_s
    events = [DeviceEvent(f"dev-{number}-0", "monitors", start, {"count": 1})]
    for kind, event_kind, detail in (
        ("second_monitor", "monitors", {"count": 2}),
        ("remote_tool", "process_category", {"category": "virtual_machine", "names": ["virtualbox"]}),
        ("vpn", "network_interface", {"category": "vpn", "names": ["wg0"]}),
        (
            "second_network_path",
            "network_interface",
            {"category": "tethering", "count": 1, "state": "present"},
        ),
    ):
        if kind in mine:
            events.append(
                DeviceEvent(f"dev-{number}-{kind}", event_kind, student.at(mine[kind].start_s), detail)
            )
    if "second_monitor" in mine:
        events.append(
            DeviceEvent(
                f"dev-{number}-mon1",
                "monitors",
                student.at(mine["second_monitor"].start_s + 300),
                {"count": 1},
            )
        )
    if "left_early" in mine:
        events.append(DeviceEvent(f"dev-{number}-left", "left", student.at(end), {}))
    hall.post_device_events(events)
    sites = [
        SiteEvent(f"px-{number}-{t}-{n}", student.at(t), ip, host, "allowed", "proxy", "allowlist")
        for t in range(0, end, 300)
        for n, host in enumerate(("ans.app", "fonts.example.net"))
    ]
    for kind, host, decision, source in (
        ("blocked_site", "chat.example.com", "blocked", "proxy"),
        ("bypass_site", "dns.example.org", "allowed", "sentinel"),
        ("new_site", "wiki.example.org", "allowed", "proxy"),
    ):
        if kind in mine:
            at = student.at(mine[kind].start_s)
            sites.append(SiteEvent(f"px-{number}-{kind}", at, ip, host, decision, source, "planted"))
    post_site_events(client, sites)
    return records


def read_screen_text(
    store: Any, data_dir: Path, exam_id: int, plants: list[Plant], sample: int, scale: float
) -> list[str]:
    """Read the planted students' selected screens (so their watch word can be found), then time tesseract
    on ``sample`` more screens of the selection on one core; returns the figures' lines."""
    screens = Screens.of_data_dir(data_dir).exam(store, exam_id)
    changed = store.execute(
        "SELECT count(*) FROM capture WHERE exam_id = ? AND changed = 1", [exam_id]
    ).fetchone()[0]
    selected = len(screentext.selection(store, exam_id))
    planted = {p.student for p in plants}
    sessions = {
        sid
        for sid, number in store.execute(
            "SELECT s.id, r.student_number FROM agent_session s JOIN roster r ON r.id = s.roster_id "
            "WHERE s.exam_id = ?",
            [exam_id],
        )
        if number in planted
    }
    first = screentext.run(store, screens, exam_id, jobs=1, sessions=sessions)
    timed = screentext.run(store, screens, exam_id, jobs=1, limit=sample)
    rate = (
        (first.read + timed.read) / (first.seconds + timed.seconds) if first.seconds + timed.seconds else 0.0
    )
    full = selected * scale
    return [
        f"screen text: the selection sends {selected} of {changed} changed screens "
        f"({selected / changed:.1%}) to tesseract",
        f"  read {first.read + timed.read} screens on one core at {rate:.2f} screens/s "
        f"({1 / rate if rate else 0:.2f} s per screen)",
        f"  whole selection on one core: {selected / rate / 60 if rate else 0:.1f} min for this exam; "
        f"~{full / rate / 3600 if rate else 0:.1f} core-hours for {FULL_STUDENTS} students x 3 h (scaled)",
    ]


def found(plant: Plant, built: queue.Queue, interval_s: int, start: datetime) -> bool:
    begin = start + timedelta(seconds=plant.start_s - interval_s)
    finish = start + timedelta(seconds=plant.start_s + plant.length_s + interval_s)
    return any(
        item.student_number == plant.student
        and plant.kind in item.moment.kinds
        and item.moment.start <= finish
        and item.moment.end >= begin
        for item in built.moments
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=FULL_STUDENTS)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the data directory here.")
    parser.add_argument(
        "--ocr", action="store_true", help="Read screen text (tesseract) and plant a watch word."
    )
    parser.add_argument(
        "--ocr-sample", type=int, default=100, help="Screens read to time tesseract on one core."
    )
    args = parser.parse_args()
    if args.students < len(PLANTS) + 1:
        parser.error(f"--students must be at least {len(PLANTS) + 1} (one per planted kind and one ordinary)")
    duration_s = int(args.hours * 3600)
    if duration_s < 1800:
        parser.error("--hours must be at least 0.5")
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="invigil-queue-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    db.migrate(data_dir)
    store = db.connect(data_dir)
    master = crypto.load_or_create_master_key(data_dir)
    start = utc_now() - timedelta(seconds=30)
    hall_id = exams.create_hall(store, "Sports Hall")
    exam_id = exams.create_exam(
        store,
        master,
        hall_id=hall_id,
        title="Linear Algebra (queue bench)",
        starts_at=start,
        ends_at=start + timedelta(seconds=duration_s),
        capture_interval_s=args.interval,
        join_code=JOIN_CODE,
    )
    numbers = [f"s{i:07d}" for i in range(1, args.students + 1)]
    exams.add_roster(store, exam_id, [exams.RosterEntry(n, f"Student {n}") for n in numbers])
    state = dataclasses.replace(STATE, read_screen_text=True, watch_words=("chatgpt",)) if args.ocr else STATE
    expected.save(store, exam_id, state)
    store.close()

    app = create_app(
        {"data_dir": str(data_dir), "clock_skew_max_s": duration_s + 3600, "sqlite_synchronous": "NORMAL"}
    )
    client = app.test_client()
    kinds_planted = PLANTS if args.ocr else tuple(kind for kind in PLANTS if kind != "screen_text")
    plants = plan(numbers, duration_s, rng, kinds_planted)
    seeding = time.perf_counter()
    records = 0
    for index, number in enumerate(numbers):
        ip = f"10.{index // 250}.{index % 250}.{10 + index % 200}"
        records += seed_student(client, number, ip, start, duration_s, args.interval, plants, rng)
        if (index + 1) % 50 == 0:
            print(f"  seeded {index + 1}/{len(numbers)} students ({records} records)", file=sys.stderr)
    seeded_s = time.perf_counter() - seeding

    store = db.connect(data_dir)
    ocr_lines = (
        read_screen_text(
            store,
            data_dir,
            exam_id,
            plants,
            args.ocr_sample,
            FULL_STUDENTS / args.students * 3.0 / args.hours,
        )
        if args.ocr
        else []
    )
    building = time.perf_counter()
    built = queue.build(store, exam_id)
    build_s = time.perf_counter() - building
    store.close()

    hits = [plant for plant in plants if found(plant, built, args.interval, start)]
    missed = [plant for plant in plants if plant not in hits]
    planted_students = {plant.student for plant in plants}
    ordinary = [n for n in numbers if n not in planted_students]
    ordinary_moments = [m for m in built.moments if m.student_number in set(ordinary)]
    per_ordinary = len(ordinary_moments) / len(ordinary)
    opened = sum(len(item.moment.capture_ids) for item in built.moments)
    share = opened / built.screens if built.screens else 0.0
    share_records = opened / records
    scale = FULL_STUDENTS / args.students
    # The planted students' moments scale with the number planted at full size; ordinary students' moments
    # with the ordinary students and the hours.
    planted_moments = len(built.moments) - len(ordinary_moments)
    full_planted = planted_moments * plants_per_kind(FULL_STUDENTS) / plants_per_kind(args.students)
    full_ordinary = (
        per_ordinary * (FULL_STUDENTS - len(PLANTS) * plants_per_kind(FULL_STUDENTS)) * 3.0 / args.hours
    )
    minutes = len(built.moments) * SECONDS_PER_MOMENT / 60
    full_minutes = (full_planted + full_ordinary) * SECONDS_PER_MOMENT / 60

    print(f"exam: {args.students} students, {args.hours:g} h at {args.interval} s; {records} capture records")
    print(f"  ({built.screens} changed screens) seeded through the agent API in {seeded_s:.0f} s")
    print(f"planted irregularities found: {len(hits)}/{len(plants)}")
    for plant in missed:
        print(f"  MISSED {plant.kind} at {plant.student} +{plant.start_s}s")
    print(f"moments in the queue: {len(built.moments)}; per ordinary student: {per_ordinary:.3f}")
    print(
        f"screens a reviewer opens: {opened} = {share:.3%} of changed screens, "
        f"{share_records:.3%} of capture records"
    )
    print(f"reviewer time at {SECONDS_PER_MOMENT} s per moment: {minutes:.1f} min for this exam")
    if scale != 1 or args.hours != 3:
        print(
            f"  estimated for {FULL_STUDENTS} students x 3 h (scaled, not measured): {full_minutes:.1f} min"
        )
    print(f"queue build time: {build_s:.2f} s ({built.progress()})")
    for line in ocr_lines:
        print(line)
    checks = [
        ("all planted irregularities found", not missed),
        ("moments per ordinary student <= 0.5", per_ordinary <= 0.5),
        ("screens opened <= 1 % of the exam's screens", share <= 0.01),
        ("reviewer time for the whole exam <= 60 min", full_minutes <= 60),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    if args.keep:
        print(f"data kept in {data_dir}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
