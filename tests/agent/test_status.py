"""What the student sees: the status text (pure) and the terminal view's commands."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime

from agent.status import StatusSnapshot, TerminalStatus, recorded_text, status_text

BASE = StatusSnapshot(
    hall="Hall A",
    exam="Linear Algebra",
    student_number="s0001",
    interval_s=5,
    last_capture_at=datetime(2026, 11, 23, 9, 41, 7, tzinfo=UTC),
    connected=True,
    backlog=0,
)


def test_the_status_says_exactly_what_is_recorded():
    lines = status_text(BASE)
    assert lines[0] == "Invigil: Hall A - Linear Algebra - student s0001"
    assert lines[1] == "Recorded: your screens every 5 s; no camera, no microphone, no keystrokes."
    assert "Connection: connected" in lines[2] and "Unsent: 0" in lines[2]
    assert BASE.last_capture_at is not None
    assert BASE.last_capture_at.astimezone().strftime("%H:%M:%S") in lines[2]
    assert (
        recorded_text(2.5) == "Recorded: your screens every 2.5 s; no camera, no microphone, no keystrokes."
    )


def test_offline_backlog_hand_and_leaving_are_shown():
    offline = StatusSnapshot(**{**BASE.__dict__, "connected": False, "backlog": 42, "last_capture_at": None})
    text = " ".join(status_text(offline))
    assert "not connected (captures are kept and sent later)" in text and "Unsent: 42" in text
    assert "Last capture: none yet" in text
    raised = StatusSnapshot(**{**BASE.__dict__, "hand_raised": True, "leaving": True, "message": "Bye"})
    lines = status_text(raised)
    assert "leaving" in lines[2] and "hand is raised" in lines[3] and lines[4] == "Bye"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Actions:
    def __init__(self) -> None:
        self.hand = False
        self.left = False
        self.finished = threading.Event()

    def snapshot(self) -> StatusSnapshot:
        return StatusSnapshot(**{**BASE.__dict__, "hand_raised": self.hand, "leaving": self.left})

    def toggle_hand(self) -> None:
        self.hand = not self.hand

    def leave(self) -> None:
        self.left = True
        threading.Timer(0.3, self.finished.set).start()


def test_terminal_commands_raise_the_hand_and_leave():
    actions, out = Actions(), io.StringIO()
    TerminalStatus(actions, out=out, inp=FakeTty("h\nleave\n")).show()
    assert actions.hand and actions.left
    assert "Type h + Enter" in out.getvalue()
