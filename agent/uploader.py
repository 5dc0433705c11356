"""Drain the spool to the hall server in order, heartbeat, and follow the server's instructions.

:meth:`Uploader.run` runs on the upload thread, the only thread that uses the
:class:`~agent.transport.HallClient`; :meth:`Uploader.drain` sends what is left when the student leaves. Every
record is acknowledged in the spool only after the server answered 2xx (stored now, or already stored: resends
are safe because every id is made by the agent), so a network fault never loses or duplicates a record.

- :class:`~agent.transport.Unreachable` (network down, 5xx): keep the record, back off exponentially with
  jitter; the lower the server's last health value, the closer the wait is to the cap (health 10 -> normal,
  0 -> the cap). While the server is reachable but busy, uploads are paced the same way.
- :class:`~agent.transport.Refused` for one record (409, 413, 415, 422, 404 ...): resending the same bytes
  cannot help, so the record is logged, reported as a ``capture_error`` device event, and acknowledged: the
  queue never jams. 401 (token unknown/expired) and 426 (old agent) stop the uploader with a message for the
  student instead: nothing more can be sent with this session or this agent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.spool import Spool, SpoolRecord
from agent.transport import HallClient, Refused, Unreachable
from invigil import payloads
from invigil import protocol as p
from invigil.timeutil import from_wire, utc_now

log = logging.getLogger(__name__)

#: Spool kind of a device event written by the runtime (meta ``event`` = ``DeviceEvent.as_wire()``).
EVENT_KIND = "device_event"


class UploadStopped(Exception):
    """Nothing more can be uploaded with this session; ``message`` tells the student what to do."""


@dataclass(frozen=True)
class BackoffPolicy:
    """Waits between attempts; pure so tests can tabulate them."""

    base_s: float = 1.0
    max_s: float = 60.0
    #: Longest pause between two records while the server is reachable but busy (health 0).
    pace_max_s: float = 2.0

    def retry_delay(self, failures: int, health: int, rng: random.Random) -> float:
        """Wait after ``failures`` consecutive failures (>= 1): exponential, stretched towards the cap as
        health falls, then "equal jitter" (between half and all of it) so a hall of agents does not
        return in step after the server comes back."""
        plain = min(self.max_s, self.base_s * 2 ** min(failures - 1, 30))
        load = 1.0 - max(0, min(p.HEALTH_MAX, health)) / p.HEALTH_MAX
        stretched = plain + (self.max_s - plain) * load
        return stretched * (0.5 + 0.5 * rng.random())

    def pace(self, health: int) -> float:
        """Pause after each upload while the server is reachable (0 at full health)."""
        return self.pace_max_s * (1.0 - max(0, min(p.HEALTH_MAX, health)) / p.HEALTH_MAX)


@dataclass
class UploadState:
    """What the status view shows about the connection; written by the upload thread only."""

    connected: bool = False
    health: int = p.HEALTH_MAX
    backlog: int = 0
    last_upload_at: datetime | None = None
    last_error: str = ""
    capture_interval_s: float = 5.0
    ends_at: datetime | None = None
    #: server time minus agent time at the last heartbeat (for "is the exam over?").
    clock_offset: timedelta = timedelta(0)
    stopped: str = ""


class Uploader:
    """Sends spool records oldest first and heartbeats every interval."""

    def __init__(
        self,
        client: HallClient,
        spool: Spool,
        *,
        new_id: Callable[[], str],
        on_instruction: Callable[[str], None] = lambda kind: None,
        on_base_lost: Callable[[], None] = lambda: None,
        policy: BackoffPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.new_id = new_id
        self.on_instruction = on_instruction
        #: Called when the server did not store an image: later tile updates cannot build on it, so the
        #: capture loop must send whole screens next (``CaptureLoop.send_key_images``).
        self.on_base_lost = on_base_lost
        #: Captures the server does not have (refused, or built on one it does not have).
        self._lost: set[str] = set()
        self.policy = policy or BackoffPolicy()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.state = UploadState(backlog=len(spool))
        self.heartbeat_state = "capturing"
        self._failures = 0
        self._next_heartbeat = 0.0

    # -- one record --------------------------------------------------------------------------------

    def _send(self, record: SpoolRecord) -> None:
        meta = record.meta
        if record.kind == "image":
            capture_meta = payloads.parse_capture_meta(meta["capture_meta"])
            self.client.put_capture(meta["capture_id"], capture_meta, record.body, meta["media_type"])
        elif record.kind == "thumbnail":
            self.client.put_thumbnail(meta["capture_id"], record.body, meta["media_type"])
        elif record.kind == "unchanged":
            self.client.put_unchanged(meta["record_id"], payloads.parse_unchanged(meta["unchanged"]))
        elif record.kind == EVENT_KIND:
            self.client.post_device_events(payloads.parse_device_events({"events": [meta["event"]]}))
        else:
            raise p.ProtocolError("unknown_record", f"spool record kind {record.kind!r} is unknown")

    def send_one(self) -> bool:
        """Send the oldest record; False when the spool is empty. Raises Unreachable / UploadStopped."""
        record = self.spool.peek()
        if record is None:
            return False
        try:
            if self._builds_on_lost(record):
                log.info(
                    "not sending spool record %s (%s): it builds on a capture the server lacks",
                    record.seq,
                    record.kind,
                )
            else:
                self._send(record)
        except Refused as exc:
            self._refused(record, exc)
        except (p.ProtocolError, KeyError) as exc:  # a record this agent cannot read: never resendable
            log.error("dropping unreadable spool record %s (%s): %s", record.seq, record.kind, exc)
        self.spool.ack(record.seq)
        self.state.last_upload_at = self.clock()
        self.state.backlog = len(self.spool)
        return True

    def _builds_on_lost(self, record: SpoolRecord) -> bool:
        """A tile update or thumbnail of a capture the server lacks: sending it would only be refused."""
        meta = record.meta
        if record.kind == "image" and meta.get("base") in self._lost:
            self._lost.add(meta["capture_id"])
            return True
        return record.kind == "thumbnail" and meta.get("capture_id") in self._lost

    def _refused(self, record: SpoolRecord, exc: Refused) -> None:
        if exc.status == 401:
            self.state.stopped = (
                f"The hall server no longer accepts this session ({exc.message or exc.code}). "
                "Enrol again with your student number and the join code shown in the hall."
            )
            raise UploadStopped(self.state.stopped) from exc
        if exc.status == 426:
            self.state.stopped = f"This agent is too old for the hall server: {exc.message}"
            raise UploadStopped(self.state.stopped) from exc
        log.error("the server refused spool record %s (%s): %s", record.seq, record.kind, exc)
        if record.kind == "image":
            self._lost.add(record.meta.get("capture_id", ""))
            self.on_base_lost()
        if record.kind != EVENT_KIND:  # an event about a refused event could be refused forever
            detail = {"reason": "refused", "status": exc.status, "code": exc.code[:64], "record": record.kind}
            event = payloads.DeviceEvent(self.new_id(), "capture_error", self.clock(), detail)
            self.spool.append({"kind": EVENT_KIND, "event": event.as_wire()})

    # -- heartbeat ---------------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        """One heartbeat with the backlog; applies health, interval, end time and instructions."""
        now = self.clock()
        answer = self.client.heartbeat(payloads.Heartbeat(now, len(self.spool), self.heartbeat_state))
        self.state.connected = True
        self.state.health = int(answer.get("health", p.HEALTH_MAX))
        self.state.capture_interval_s = float(answer.get("capture_interval_s", self.state.capture_interval_s))
        try:
            self.state.clock_offset = from_wire(answer["server_time"]) - now
            self.state.ends_at = from_wire(answer["ends_at"])
        except (KeyError, ValueError):
            pass
        for instruction in answer.get("instructions", []):
            kind = instruction.get("kind") if isinstance(instruction, dict) else None
            if kind in p.INSTRUCTION_KINDS:
                self.on_instruction(kind)
        return answer

    def exam_over(self) -> bool:
        """True once the server's clock is past this student's end of the exam."""
        ends = self.state.ends_at
        return ends is not None and self.clock() + self.state.clock_offset >= ends

    # -- loops -------------------------------------------------------------------------------------

    def delay_after(self, exc: Exception) -> float:
        """How long to wait after a failed attempt: the backoff, and at least a busy server's Retry-After,
        spread by up to half again so a hall of agents does not return in step."""
        delay = self.policy.retry_delay(self._failures, self.state.health, self.rng)
        busy_for = getattr(exc, "retry_after_s", None)
        if busy_for is not None:
            self.state.health = 0  # the next heartbeat says how the server is doing again
            delay = max(delay, busy_for * (1.0 + 0.5 * self.rng.random()))
        return delay

    def _wait_after_failure(self, exc: Exception, stop: threading.Event) -> None:
        self._failures += 1
        self.state.connected = False
        self.state.last_error = str(exc)
        delay = self.delay_after(exc)
        log.info("hall server unreachable (%s); retrying in %.1f s", exc, delay)
        stop.wait(delay)

    def step(self, stop: threading.Event) -> bool:
        """Heartbeat if due, then send one record; True if a record went out."""
        try:
            if time.monotonic() >= self._next_heartbeat:
                self.heartbeat()
                self._next_heartbeat = time.monotonic() + self.state.capture_interval_s
            sent = self.send_one()
        except Unreachable as exc:
            self._wait_after_failure(exc, stop)
            return False
        self._failures = 0
        self.state.connected = True
        self.state.last_error = ""
        if sent and (pause := self.policy.pace(self.state.health)) > 0:
            stop.wait(pause)
        return sent

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Upload until ``stop`` is set; ``wake`` (set by the capture thread) ends an idle wait early.

        Raises :class:`UploadStopped` when the session is over for good (its message is for the student).
        """
        wake = wake or threading.Event()
        while not stop.is_set():
            if not self.step(stop) and self._failures == 0:
                idle = max(0.05, self._next_heartbeat - time.monotonic())
                wake.wait(min(idle, self.state.capture_interval_s))
                wake.clear()

    def drain(self, timeout_s: float) -> bool:
        """Send everything left, retrying for at most ``timeout_s``; True when the spool is empty.

        Runs when the student leaves or the exam ends, once the capture thread has stopped.
        """
        deadline = time.monotonic() + timeout_s
        give_up = threading.Event()
        timer = threading.Timer(max(0.0, timeout_s), give_up.set)
        timer.daemon = True
        timer.start()
        try:
            while time.monotonic() < deadline:
                try:
                    if not self.send_one():
                        return True
                    self._failures = 0
                except Unreachable as exc:
                    self._wait_after_failure(exc, give_up)
            return len(self.spool) == 0
        finally:
            timer.cancel()
