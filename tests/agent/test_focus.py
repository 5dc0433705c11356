"""The focused window on a real X server (Xvfb): EWMH when a window manager names it, input focus when not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agent.focus import FocusUnavailable, no_focus, system_probe
from agent.focus.x11 import X11Focus

from agent_xvfb import xvfb

pytest.importorskip("tkinter")

EXAM_TITLE = "Exam – Moodle — Ünïcode"

#: Tk runs in a child process: Tk keeps its X connection until the process exits, and a connection to a
#: stopped Xvfb would end the pytest process at the next Tk call of another test.
WINDOWS = """
import sys, time, tkinter
windows = {}
for key, title, cls in (("exam", sys.argv[2], "Exambrowser"), ("notes", "notes.txt - Editor", "Texteditor")):
    w = tkinter.Tk(screenName=sys.argv[1], className=cls)
    w.title(title)
    w.geometry("300x100+10+10")
    windows[key] = w
def settle():
    for _ in range(15):
        for w in windows.values():
            w.update()
        time.sleep(0.02)
settle()
print(int(windows["exam"].wm_frame(), 16), flush=True)
for line in sys.stdin:
    verb, key = line.split()
    if verb == "focus":
        windows[key].focus_force()
    else:
        windows.pop(key).destroy()
    settle()
    print("ok", flush=True)
"""


class TkWindows:
    """Two top-level Tk windows, "exam" and "notes", that the test focuses or closes."""

    def __init__(self, display: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WINDOWS, display, EXAM_TITLE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        assert self.proc.stdout is not None
        self.exam_wrapper = int(self.proc.stdout.readline())

    def do(self, verb: str, key: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{verb} {key}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_focus_on_xvfb_without_and_with_a_window_manager():
    with xvfb() as display:
        windows = TkWindows(display)
        probe = X11Focus(display)
        try:
            # No window manager: no _NET_ACTIVE_WINDOW, so the probe follows the keyboard focus.
            windows.do("focus", "exam")
            assert probe() == ("Exambrowser", EXAM_TITLE)
            windows.do("focus", "notes")
            assert probe() == ("Texteditor", "notes.txt - Editor")
            # A window manager names the active window on the root (EWMH); that wins over focus.
            if shutil.which("xprop") is None:
                pytest.skip("xprop is not installed (Debian package: x11-utils)")
            subprocess.run(
                ["xprop", "-root", "-f", "_NET_ACTIVE_WINDOW", "32x", "-set", "_NET_ACTIVE_WINDOW"]
                + [hex(windows.exam_wrapper)],
                env={**os.environ, "DISPLAY": display},
                check=True,
                timeout=10,
            )
            assert probe() == ("Exambrowser", EXAM_TITLE)
            # The active window closes: the probe neither crashes nor invents a name.
            windows.do("destroy", "exam")
            assert probe() == (None, None)
        finally:
            probe.close()
            windows.close()


def test_no_display_means_no_focus_information():
    with pytest.raises(FocusUnavailable):
        X11Focus(":9999")
    probe, close = system_probe("x11", ":9999")
    assert probe is no_focus and probe() == (None, None)
    close()
    assert system_probe("windows")[0] is no_focus
