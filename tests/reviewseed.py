"""Seeding a realistic student session for the review tests through the real agent client.

:class:`FlaskHall` is the agent's own :class:`agent.transport.HallClient` with its HTTP leg swapped for the
Flask test client, so the payloads, headers and ids are exactly the agent's and the server runs its real API
(only the socket is skipped, for speed). Site events go to ``POST /api/v1/site-events`` from loopback with
the hall's service token, as the proxy sends them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent.transport import HallClient, Refused
from invigil import protocol as p
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, SiteEvent, Unchanged
from invigil.timeutil import utc_now

from support import ExamSetup, png_bytes, sha256


class FlaskHall(HallClient):
    """The real agent client over the Flask test client; ``client_ip`` is the laptop's address."""

    def __init__(self, flask_client: Any, client_ip: str) -> None:
        super().__init__("http://127.0.0.1")
        self.flask = flask_client
        self.client_ip = client_ip

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        all_headers = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION), **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        response = self.flask.open(
            p.API_PREFIX + path,
            method=method,
            data=body,
            headers=all_headers,
            environ_base={"REMOTE_ADDR": self.client_ip},
        )
        answer = response.get_json(silent=True) or {}
        if 200 <= response.status_code < 300:
            return response.status_code, answer
        error = answer.get("error", {})
        raise Refused(response.status_code, error.get("code", "refused"), error.get("message", ""))


def post_site_events(flask_client: Any, events: list[SiteEvent]) -> dict[str, Any]:
    """As the proxy on this appliance does: from loopback, with the service token of the app's hall."""
    service_token = flask_client.application.extensions["invigil"].service_token
    response = flask_client.post(
        p.API_PREFIX + "/site-events",
        data=json.dumps({"events": [event.as_wire() for event in events]}),
        headers={
            p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION),
            "Content-Type": "application/json",
            "Authorization": f"Bearer {service_token}",
        },
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


@dataclass
class Seeded:
    student_number: str
    client_ip: str
    start: datetime
    captures: dict[str, bytes] = field(default_factory=dict)  # capture id -> image bytes
    blocked_host: str = "chat.example.com"


def seed_student(
    hall: HallClient,
    flask_client: Any,
    exam: ExamSetup,
    student_number: str,
    client_ip: str,
    *,
    changes: int = 6,
    unchanged_per_change: int = 2,
) -> Seeded:
    """Enrol, then every 5 s a change or an "unchanged since" record (2/3 unchanged by default), a second
    monitor and a remote-access tool reported by the device checks, and proxy/sentinel site events."""
    start = utc_now()
    hall.enrol(Enrolment(student_number, exam.join_code, f"agent-{student_number}", start, "0.1", "Linux"))
    seeded = Seeded(student_number, client_ip, start)
    moment = start
    index = 0
    base = int("".join(ch for ch in student_number if ch.isdigit()) or 0)
    for change in range(changes):
        body = png_bytes(480, 300, seed=change + 1 + 37 * base)  # each student's screens differ
        capture_id = f"cap-{student_number}-{change:04d}"
        meta = CaptureMeta(
            0,
            moment,
            sha256(body),
            480,
            300,
            focused_app="firefox",
            window_title=f"Exam question {change + 1}",
        )
        assert hall.put_capture(capture_id, meta, body, "image/png")
        if change % 2 == 0:
            thumb = png_bytes(96, 60, seed=change + 1 + 37 * base)
            assert hall.put_thumbnail(capture_id, thumb, "image/png")
        seeded.captures[capture_id] = body
        for _ in range(unchanged_per_change):
            moment += timedelta(seconds=5)
            index += 1
            assert hall.put_unchanged(f"unc-{student_number}-{index:05d}", Unchanged(0, moment, capture_id))
        moment += timedelta(seconds=5)
    middle = start + (moment - start) / 2
    hall.post_device_events(
        [
            DeviceEvent(f"dev-{student_number}-1", "monitors", middle, {"count": 2}),
            DeviceEvent(
                f"dev-{student_number}-2",
                "process_category",
                middle + timedelta(seconds=7),
                {"category": "remote_access", "names": ["anydesk"]},
            ),
        ]
    )
    post_site_events(
        flask_client,
        [
            SiteEvent(
                f"px-{student_number}-1",
                start + timedelta(seconds=3),
                client_ip,
                "exam.uni.example",
                "allowed",
                "proxy",
                "allowlist",
            ),
            SiteEvent(
                f"px-{student_number}-2",
                middle + timedelta(seconds=2),
                client_ip,
                seeded.blocked_host,
                "blocked",
                "proxy",
                "not on the allowlist",
                "https://chat.example.com/",
            ),
            SiteEvent(
                f"sn-{student_number}-3",
                middle + timedelta(seconds=11),
                client_ip,
                "vpn.example.net",
                "allowed",
                "sentinel",
                "TLS SNI outside the proxy",
            ),
        ],
    )
    return seeded


def seed_exam(flask_client: Any, exam: ExamSetup, students: int = 1, changes: int = 6) -> list[Seeded]:
    """The first ``students`` of the roster each enrol from their own address and record a session."""
    seeded = []
    for index, number in enumerate(exam.students[:students]):
        ip = f"10.0.0.{11 + index}"
        seeded.append(
            seed_student(FlaskHall(flask_client, ip), flask_client, exam, number, ip, changes=changes)
        )
    return seeded


def add_staff(store: Any, username: str, role: str) -> int:
    """A staff account without a usable password (these tests never log in; argon2 would cost ~0.5 s)."""
    from hall_server.store.db import write_transaction

    with write_transaction(store):
        cursor = store.execute(
            "INSERT INTO user (username, display_name, password_hash, created_at) VALUES (?, ?, '!', ?)",
            [username, username.title(), "2026-01-01T00:00:00.000Z"],
        )
        store.execute("INSERT INTO user_role (user_id, role) VALUES (?, ?)", [cursor.lastrowid, role])
    return int(cursor.lastrowid)


def text_screen(lines: list[str], width: int = 800, height: int = 500) -> bytes:
    """A gray screen (as the agent sends) with text tesseract can read."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 26)
    for n, line in enumerate(lines):
        draw.text((30, 30 + 44 * n), line, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
