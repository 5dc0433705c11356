"""The running agent: capture thread, upload thread and a leave supervisor around one spool; clean shutdown.

An :class:`AgentRuntime` starts after enrolment; the status view (``agent.status``) then runs on the main
thread until :attr:`AgentRuntime.finished` is set. The grabber and the focus probe come from injected
factories, so the whole runtime also runs on synthetic frames against a real hall server.

Threads and what they own:

- capture thread: the grabber (mss must stay on the thread that opened it), the focus probe (same X
  thread rule), the capture loop and the device checks. It ticks every interval, on a focus/title change
  (at most every ``focus_min_gap_s``) and on a ``capture_now`` instruction;
- upload thread: the :class:`~agent.transport.HallClient` (heartbeats and uploads, see ``agent.uploader``);
- leave supervisor: waits for "leave" (student, ``end_exam`` instruction, exam end or ``--duration``),
  stops the other two, sends a ``left`` event, drains for at most ``drain_timeout_s``, then deletes the spool
  and the whole state directory, so nothing of the exam stays on the laptop.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from agent.capture import CaptureLoop, CaptureSettings
from agent.devices import DeviceChecker
from agent.focus import Focus, FocusProbe, no_focus
from agent.grab import Grab
from agent.spool import Spool, SpoolClosed
from agent.status import StatusSnapshot
from agent.uploader import EVENT_KIND, Uploader, UploadStopped
from invigil.payloads import DeviceEvent
from invigil.timeutil import utc_now

log = logging.getLogger(__name__)


class Announcer(Protocol):
    """What the runtime needs of ``agent.mdns.AgentAnnouncer`` (so tests and --no-mdns can pass None)."""

    def update_state(self, state: str) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class RuntimeSettings:
    """Knobs of the running agent, set from the command-line options."""

    capture: CaptureSettings = CaptureSettings()
    focus_poll_s: float = 1.0
    focus_min_gap_s: float = 2.0
    drain_timeout_s: float = 60.0
    #: Leave by itself after this many seconds (``--duration``; None = until the student leaves).
    duration_s: float | None = None


@dataclass(frozen=True)
class SessionInfo:
    """What enrolment told the agent, for the status view."""

    hall: str
    exam: str
    student_number: str


class AgentRuntime:
    """Wires capture, devices, upload and leaving; implements ``agent.status.StatusActions``."""

    def __init__(
        self,
        *,
        state_dir: Path,
        spool: Spool,
        uploader: Uploader,
        session: SessionInfo,
        grab_factory: Callable[[], Grab],
        focus_factory: Callable[[], tuple[FocusProbe, Callable[[], None]]] = lambda: (no_focus, lambda: None),
        devices: DeviceChecker | None = None,
        announcer: Announcer | None = None,
        settings: RuntimeSettings | None = None,
        new_id: Callable[[], str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.state_dir = state_dir
        self.spool = spool
        self.uploader = uploader
        self.session = session
        self.grab_factory = grab_factory
        self.focus_factory = focus_factory
        self.devices = devices
        self.announcer = announcer
        self.settings = settings or RuntimeSettings()
        self.new_id = new_id
        self.clock = clock
        self.finished = threading.Event()
        self.last_capture_at: datetime | None = None
        self.hand_raised = False
        self.message = ""
        self.leave_reason = ""
        self.left_cleanly = False
        self._leave = threading.Event()
        self._stop_capture = threading.Event()
        self._stop_upload = threading.Event()
        self._capture_now = threading.Event()
        self._wake_capture = threading.Event()  # set with _capture_now and on stop
        self._wake_upload = threading.Event()
        self._threads: list[threading.Thread] = []
        uploader.on_instruction = self._instruction

    # -- StatusActions -------------------------------------------------------------------------------

    def snapshot(self) -> StatusSnapshot:
        state = self.uploader.state
        return StatusSnapshot(
            hall=self.session.hall,
            exam=self.session.exam,
            student_number=self.session.student_number,
            interval_s=state.capture_interval_s,
            last_capture_at=self.last_capture_at,
            connected=state.connected,
            backlog=len(self.spool) if not self.finished.is_set() else 0,
            hand_raised=self.hand_raised,
            message=state.stopped or self.message,
            leaving=self._leave.is_set(),
        )

    def toggle_hand(self) -> None:
        """Raise or lower the hand (a ``help_request`` / ``help_cancel`` device event)."""
        self.hand_raised = not self.hand_raised
        self.event("help_request" if self.hand_raised else "help_cancel", {})

    def leave(self, reason: str = "student") -> None:
        """Ask the supervisor to leave; returns at once (the view waits for :attr:`finished`)."""
        if not self._leave.is_set():
            self.leave_reason = reason
            self._leave.set()

    # -- events and instructions ----------------------------------------------------------------------

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        """Spool one device event and wake the uploader; safe from any thread."""
        with contextlib.suppress(SpoolClosed):
            wire = DeviceEvent(self.new_id(), kind, self.clock(), detail).as_wire()
            self.spool.append({"kind": EVENT_KIND, "event": wire})
            self._wake_upload.set()

    def _instruction(self, kind: str) -> None:
        """Act on one heartbeat instruction; runs on the upload thread, so it only sets events and flags."""
        if kind == "capture_now":
            self._capture_now.set()
            self._wake_capture.set()
        elif kind == "end_exam":
            self.message = "The invigilator ended the exam."
            self.leave("end_exam")

    # -- threads -------------------------------------------------------------------------------------

    def start(self, started_detail: dict[str, Any] | None = None) -> None:
        """Start the threads, once, after enrolment."""
        self.event("agent_started", started_detail or {})
        for name, target in (
            ("capture", self._capture),
            ("upload", self._upload),
            ("leave", self._supervise),
        ):
            thread = threading.Thread(target=target, name=f"invigil-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if self.announcer:
            self._announce("capturing")

    def _announce(self, state: str) -> None:
        try:
            if self.announcer:
                self.announcer.update_state(state)
        except Exception as exc:  # mDNS is a convenience for the seat view; never stop the exam for it
            log.warning("mDNS announcement failed: %s", exc)

    def _capture(self) -> None:
        try:
            grab = self.grab_factory()
            probe, close_probe = self.focus_factory()
        except Exception as exc:
            self.message = f"Screen capture does not work here: {exc}"
            self.event("capture_error", {"reason": type(exc).__name__, "message": str(exc)[:300]})
            return
        loop = CaptureLoop(grab, self.spool, self.settings.capture, self.clock, self.new_id)
        self.uploader.on_base_lost = loop.send_key_images
        if self.devices is not None and self.devices.list_monitors is None and hasattr(grab, "monitors"):
            self.devices.list_monitors = grab.monitors
        trigger, next_tick, captured_focus, last_focus_tick = "start", 0.0, None, -1e9
        last_error = ""
        try:
            while not self._stop_capture.is_set():
                focus = self._probe(probe)
                now = time.monotonic()
                interval_due = now >= next_tick
                due = None
                if self._capture_now.is_set():  # an instruction forces an image, and may stand for the tick
                    due = "instruction" if trigger != "start" else "start"
                elif interval_due:
                    due = trigger
                elif (
                    captured_focus is not None
                    and focus != captured_focus
                    and now - last_focus_tick >= self.settings.focus_min_gap_s
                ):
                    due = "focus" if focus[0] != captured_focus[0] else "title"
                    last_focus_tick = now
                if due:
                    self._capture_now.clear()
                    try:
                        self._check_monitors()
                        loop.tick(due, focus[0], focus[1])
                        self.last_capture_at = self.clock()
                        captured_focus = focus
                        last_error = ""
                    except SpoolClosed:
                        return
                    except Exception as exc:
                        log.exception("capture failed")
                        if str(exc) != last_error:  # one event per distinct failure, not one per interval
                            self.event(
                                "capture_error", {"reason": type(exc).__name__, "message": str(exc)[:300]}
                            )
                            last_error = str(exc)
                    if interval_due:
                        self._check_devices()
                        next_tick = now + self.uploader.state.capture_interval_s
                        trigger = "interval"
                    self._report_drops()
                    self._wake_upload.set()
                    if self.uploader.exam_over():
                        self.leave("exam_end")
                self._wake_capture.wait(
                    min(self.settings.focus_poll_s, max(0.0, next_tick - time.monotonic()))
                )
                self._wake_capture.clear()
        finally:
            close_probe()
            closer = getattr(grab, "close", None)
            if callable(closer):
                closer()

    def _probe(self, probe: FocusProbe) -> Focus:
        try:
            return probe()
        except Exception:  # focus is best effort
            return (None, None)

    def _check_devices(self) -> None:
        if self.devices is not None:
            self._spool_events(self.devices.check)

    def _check_monitors(self) -> None:
        if self.devices is not None:
            self._spool_events(self.devices.check_monitors)

    def _spool_events(self, check: Callable[[datetime], list[DeviceEvent]]) -> None:
        try:
            for event in check(self.clock()):
                self.spool.append({"kind": EVENT_KIND, "event": event.as_wire()})
        except SpoolClosed:
            raise
        except Exception as exc:
            log.warning("device check failed: %s", exc)

    def _report_drops(self) -> None:
        dropped = self.spool.take_dropped()
        if dropped.records:
            self.event("spool_dropped", {"records": dropped.records, "bytes": dropped.bytes})

    def _upload(self) -> None:
        try:
            self.uploader.run(self._stop_upload, self._wake_upload)
        except UploadStopped as exc:
            log.error("uploads stopped: %s", exc)

    def _supervise(self) -> None:
        duration = self.settings.duration_s
        if not self._leave.wait(duration) and duration is not None:
            self.leave("duration")
        self.shutdown()

    def shutdown(self) -> None:
        """Stop capturing, send ``left``, drain (bounded), delete the spool and the state dir. Idempotent."""
        if self.finished.is_set():
            return
        self._announce("leaving")
        self.uploader.heartbeat_state = "leaving"
        self._stop_capture.set()
        self._wake_capture.set()
        self._join("invigil-capture")
        self.event("left", {"reason": self.leave_reason or "student"})
        self._stop_upload.set()
        self._wake_upload.set()
        self._join("invigil-upload")
        try:
            self.left_cleanly = self.uploader.drain(self.settings.drain_timeout_s)
        except UploadStopped as exc:
            log.error("could not drain: %s", exc)
        if not self.left_cleanly:
            log.warning("leaving with %d records unsent: they are deleted with the spool", len(self.spool))
        self.uploader.client.close()
        self.spool.destroy()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self.announcer:
            with contextlib.suppress(Exception):
                self.announcer.close()
        self.finished.set()

    def _join(self, name: str) -> None:
        for thread in self._threads:
            if thread.name == name and thread is not threading.current_thread():
                thread.join(timeout=self.uploader.client.timeout_s + 5)
