"""What the student sees while the agent runs: hall, exam, exactly what is recorded, last capture, connection,
unsent backlog, and two actions: raise hand (a help request) and leave.

One view runs on the main thread and shows a :class:`StatusSnapshot` taken once a second: :class:`TkStatus`
(a small window) where a display and Tk exist, else :class:`TerminalStatus` (one status line; typed
commands ``h`` = raise/lower hand, ``leave``). :func:`status_text` is pure and tested on its own.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Protocol

from agent.i18n import _


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the status view shows, taken once a second."""

    hall: str
    exam: str
    student_number: str
    interval_s: float
    last_capture_at: datetime | None
    connected: bool
    backlog: int
    hand_raised: bool = False
    message: str = ""
    leaving: bool = False


def recorded_text(interval_s: float) -> str:
    """The sentence that says exactly what is recorded (shown in every view and in docs/agent.md)."""
    every = f"{interval_s:g} s"
    return _("Recorded: your screens every {every}; no camera, no microphone, no keystrokes.").format(
        every=every
    )


def status_text(state: StatusSnapshot) -> list[str]:
    """The status as lines of text (pure): the Tk window shows them as labels, the terminal joins them."""
    last = state.last_capture_at.astimezone().strftime("%H:%M:%S") if state.last_capture_at else _("none yet")
    connection = _("connected") if state.connected else _("not connected (captures are kept and sent later)")
    if state.leaving:
        connection = _("leaving: sending what is left, then deleting everything on this laptop")
    lines = [
        _("Invigil: {hall} - {exam} - student {student}").format(
            hall=state.hall or _("hall"), exam=state.exam, student=state.student_number
        ),
        recorded_text(state.interval_s),
        _("Last capture: {last}.  Connection: {connection}.  Unsent: {backlog}.").format(
            last=last, connection=connection, backlog=state.backlog
        ),
    ]
    if state.hand_raised:
        lines.append(_("Your hand is raised: an invigilator is on the way."))
    if state.message:
        lines.append(state.message)
    return lines


class StatusActions(Protocol):
    """What the view may ask the runtime to do (``agent.runtime.AgentRuntime`` implements it)."""

    def snapshot(self) -> StatusSnapshot: ...
    def toggle_hand(self) -> None: ...
    def leave(self) -> None: ...
    @property
    def finished(self) -> threading.Event: ...


class TerminalStatus:
    """A status line on the terminal; typed commands raise the hand or leave (stdin, if it is one)."""

    def __init__(
        self, actions: StatusActions, out: IO[str] | None = None, inp: IO[str] | None = None
    ) -> None:
        self.actions = actions
        self.out = out or sys.stdout
        self.inp = inp if inp is not None else sys.stdin
        self._last = ""

    def _commands(self) -> None:
        for line in self.inp:
            command = line.strip().lower()
            if command in ("h", "hand", "help"):
                self.actions.toggle_hand()
            elif command in ("leave", "q", "quit"):
                self.actions.leave()
                return

    def show(self) -> None:
        """Print the status whenever it changes until the runtime finished; runs on the main thread."""
        if self.inp is not None and self.inp.isatty():
            threading.Thread(target=self._commands, name="invigil-stdin", daemon=True).start()
            print(_("Type h + Enter to raise or lower your hand, leave + Enter to leave."), file=self.out)
        while True:
            text = " | ".join(status_text(self.actions.snapshot()))
            if text != self._last:
                print(text, file=self.out, flush=True)
                self._last = text
            if self.actions.finished.wait(1.0):
                return


def tk_available() -> bool:
    """True where a Tk window can open (tkinter importable and a display answering)."""
    try:
        import tkinter

        root = tkinter.Tk()
    except Exception:  # ImportError, TclError (no display): fall back to the terminal
        return False
    root.destroy()
    return True


class TkStatus:
    """A small always-on-top window; closing it asks whether to leave."""

    def __init__(self, actions: StatusActions, confirm: Callable[[str], bool] | None = None) -> None:
        self.actions = actions
        self.confirm = confirm

    def show(self) -> None:
        """Run the Tk main loop on the calling (main) thread until the runtime finished."""
        import tkinter
        from tkinter import messagebox

        root = tkinter.Tk()
        root.title("Invigil")
        root.attributes("-topmost", True)
        confirm = self.confirm or (
            lambda question: bool(messagebox.askyesno("Invigil", question, parent=root))
        )
        labels = [tkinter.Label(root, anchor="w", justify="left") for _ in range(5)]
        for label in labels:
            label.pack(fill="x", padx=10)
        buttons = tkinter.Frame(root)
        buttons.pack(fill="x", padx=10, pady=8)
        hand = tkinter.Button(buttons, text=_("Raise hand"), command=self.actions.toggle_hand)
        hand.pack(side="left")

        def leave() -> None:
            if confirm(_("Leave the exam? Your last screens are sent, then Invigil deletes its data here.")):
                self.actions.leave()

        tkinter.Button(buttons, text=_("Leave exam"), command=leave).pack(side="right")
        root.protocol("WM_DELETE_WINDOW", leave)

        def refresh() -> None:
            if self.actions.finished.is_set():
                root.destroy()
                return
            state = self.actions.snapshot()
            lines = status_text(state)
            for index, label in enumerate(labels):
                label.configure(text=lines[index] if index < len(lines) else "")
            hand.configure(text=_("Lower hand") if state.hand_raised else _("Raise hand"))
            root.after(500, refresh)

        refresh()
        root.mainloop()
