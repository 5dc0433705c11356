"""Simulated student agents for the dashboard tests: the real agent client (``agent.transport.HallClient``)
over real HTTP, with small real PNG captures and thumbnails."""

from __future__ import annotations

import itertools
import secrets

from agent.transport import HallClient
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat
from invigil.timeutil import utc_now

from support import png_bytes, sha256

_counter = itertools.count(1)


class SimAgent:
    def __init__(self, base_url: str, student_number: str, join_code: str) -> None:
        self.client = HallClient(base_url, timeout_s=15)
        self.student_number = student_number
        self.join_code = join_code
        self.agent_id = f"agent-{student_number}-{secrets.token_hex(3)}"
        self.session_id: int | None = None

    def enrol(self) -> SimAgent:
        answer = self.client.enrol(
            Enrolment(self.student_number, self.join_code, self.agent_id, utc_now(), "0.1", "Linux")
        )
        self.session_id = answer["session_id"]
        return self

    def heartbeat(self) -> list[dict]:
        return self.client.heartbeat(Heartbeat(utc_now()))["instructions"]

    def capture(self, seed: int | None = None) -> str:
        """Upload one changed screen and its thumbnail; returns the capture id."""
        seed = next(_counter) if seed is None else seed
        capture_id = f"cap-{self.student_number}-{seed:06d}-{secrets.token_hex(2)}"
        body = png_bytes(320, 200, seed)
        meta = CaptureMeta(0, utc_now(), sha256(body), 320, 200, window_title="Exam")
        self.client.put_capture(capture_id, meta, body, "image/png")
        self.client.put_thumbnail(capture_id, png_bytes(64, 40, seed), "image/png")
        return capture_id

    def device_event(self, kind: str, **detail: object) -> None:
        event_id = f"ev-{kind[:8]}-{secrets.token_hex(4)}"
        self.client.post_device_events([DeviceEvent(event_id, kind, utc_now(), dict(detail))])

    def close(self) -> None:
        self.client.close()
