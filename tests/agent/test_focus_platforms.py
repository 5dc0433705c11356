"""Focus on Windows and macOS: the decision logic around the OS calls, with injected calls in their place.

The real user32 / Objective-C / CoreGraphics calls cannot run on Linux CI; these tests drive the same
probe classes through ``WindowsCalls`` / ``MacCalls`` fakes shaped like what those APIs return. Process
names go through real psutil on this machine.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import agent.focus.macos as focus_macos
import agent.focus.windows as focus_windows
from agent.focus import MAX_READ_CHARS, no_focus, system_probe
from agent.focus.macos import MacCalls, MacFocus, WindowInfo
from agent.focus.windows import WindowsCalls, WindowsFocus, psutil_process_name
from agent.focus.x11 import X11Focus

from agent_xvfb import xvfb

EXAM = "Prüfung – Analysis I — 試験 📝"
HWND, PID = 0x2_0A4C, 4242


def windows(
    hwnd: int = HWND,
    title: str = EXAM,
    pid: int = PID,
    process: Callable[[int], str | None] = lambda pid: "firefox.exe" if pid == PID else None,
) -> WindowsCalls:
    """What user32 would answer for one foreground window of process PID."""
    return WindowsCalls(
        foreground_window=lambda: hwnd,
        window_title=lambda window: title if window == hwnd else "",
        window_pid=lambda window: pid if window == hwnd else 0,
        process_name=process,
    )


def failing(exc: Exception) -> Callable[..., Any]:
    def call(*_args: object) -> Any:
        raise exc

    return call


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- Windows ---------------------------------------------------------------------------------------------


def test_windows_reports_process_without_exe_and_the_title():
    assert WindowsFocus(windows())() == ("firefox", EXAM)


def test_windows_no_foreground_window_is_no_focus():
    calls = WindowsCalls(
        foreground_window=lambda: 0,
        window_title=failing(AssertionError("no window to ask")),
        window_pid=failing(AssertionError("no window to ask")),
        process_name=failing(AssertionError("no window to ask")),
    )
    assert WindowsFocus(calls)() == (None, None)


@pytest.mark.parametrize(
    ("process_name", "app"),
    [
        ("chrome.exe", "chrome"),
        ("EXCEL.EXE", "EXCEL"),
        ("Code.exe ", "Code"),
        ("python3", "python3"),  # no suffix: kept as it is
        ("notes.exe.bak", "notes.exe.bak"),
        (".exe", None),
        ("   ", None),
        (None, None),
    ],
)
def test_windows_application_names(process_name, app):
    assert WindowsFocus(windows(process=lambda _pid: process_name))() == (app, EXAM)


def test_windows_title_but_no_process():
    # GetWindowThreadProcessId fails when the window closes between two calls: pid 0. psutil must not be
    # asked about pid 0 (it would answer "System Idle Process").
    asked: list[int] = []
    calls = windows(pid=0, process=lambda pid: asked.append(pid) or "System Idle Process")
    assert WindowsFocus(calls)() == (None, EXAM)
    assert asked == []
    assert psutil_process_name(0) is None


def test_windows_process_gone_keeps_the_title():
    gone = exited_pid()
    assert WindowsFocus(windows(pid=gone, process=psutil_process_name))() == (None, EXAM)


def test_psutil_names_a_live_process():
    assert psutil_process_name(os.getpid()) == __import__("psutil").Process().name()


@pytest.mark.parametrize("title", ["", "   ", "\t\n"])
def test_windows_empty_title_is_none(title):
    assert WindowsFocus(windows(title=title))() == ("firefox", None)


def test_windows_long_title_is_cut():
    app, title = WindowsFocus(windows(title="Exam " + "x" * 100_000))()
    assert app == "firefox"
    assert title is not None and len(title) == MAX_READ_CHARS and title.startswith("Exam x")


def test_windows_non_ascii_title_survives_and_a_split_surrogate_pair_does_not_break_utf8():
    assert WindowsFocus(windows(title=EXAM))()[1] == EXAM
    # GetWindowTextW cut inside "📝" leaves its first UTF-16 half, which UTF-8 cannot carry.
    _, title = WindowsFocus(windows(title="Notes \ud83d"))()
    assert title is not None and title.startswith("Notes ")
    title.encode("utf-8")


@pytest.mark.parametrize("broken", ["foreground_window", "window_title", "window_pid", "process_name"])
def test_windows_a_failing_call_is_no_focus_and_logged_once(caplog, broken):
    healthy = windows()
    calls = WindowsCalls(**{**healthy.__dict__, broken: failing(OSError(5, "Access is denied"))})
    probe = WindowsFocus(calls)
    with caplog.at_level(logging.DEBUG, logger="agent.focus"):
        assert [probe() for _ in range(5)] == [(None, None)] * 5
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "windows" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None


# --- macOS -----------------------------------------------------------------------------------------------

SAFARI = 501


def mac(name: str | None = "Safari", pid: int = SAFARI, *window_list: WindowInfo) -> MacCalls:
    return MacCalls(frontmost_app=lambda: (name, pid), on_screen_windows=lambda: list(window_list))


def test_macos_title_is_the_frontmost_normal_window_of_the_frontmost_app():
    calls = mac(
        "Safari",
        SAFARI,
        WindowInfo(owner_pid=88, layer=25, title="Battery"),  # menu-bar extra, above everything
        WindowInfo(owner_pid=SAFARI, layer=3, title="Bookmarks popover"),  # a floating panel
        WindowInfo(owner_pid=77, layer=0, title="Messages"),  # another app's window (floating on top)
        WindowInfo(owner_pid=SAFARI, layer=0, title=EXAM),
        WindowInfo(owner_pid=SAFARI, layer=0, title="A window behind"),
    )
    assert MacFocus(calls)() == ("Safari", EXAM)


def test_macos_without_screen_recording_permission_there_is_no_title():
    # kCGWindowName is simply absent for other apps' windows: the first window is not skipped for a guess.
    calls = mac(
        "Safari",
        SAFARI,
        WindowInfo(owner_pid=SAFARI, layer=0, title=None),
        WindowInfo(owner_pid=SAFARI, layer=0, title="A window behind"),
    )
    assert MacFocus(calls)() == ("Safari", None)


def test_macos_no_frontmost_app_and_app_without_windows():
    assert MacFocus(mac(None, 0, WindowInfo(SAFARI, 0, EXAM)))() == (None, None)
    assert MacFocus(mac("Finder", 300, WindowInfo(SAFARI, 0, EXAM)))() == ("Finder", None)


def test_macos_non_ascii_names_and_long_titles():
    long = "Lösung " + "ü" * 50_000
    app, title = MacFocus(mac("Schreibprogramm ✍", SAFARI, WindowInfo(SAFARI, 0, long)))()
    assert app == "Schreibprogramm ✍"
    assert title is not None and len(title) == MAX_READ_CHARS and title.startswith("Lösung ü")


def test_macos_a_failing_call_is_no_focus_and_logged_once(caplog):
    window_list: list[Callable[[], list[WindowInfo]]] = [failing(OSError("CGWindowList failed"))]
    probe = MacFocus(MacCalls(lambda: ("Safari", SAFARI), lambda: window_list[0]()))
    with caplog.at_level(logging.DEBUG, logger="agent.focus"):
        assert probe() == (None, None)
        assert probe() == (None, None)
        window_list[0] = lambda: [WindowInfo(SAFARI, 0, EXAM)]  # the call works again: so does the probe
        assert probe() == ("Safari", EXAM)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# --- choosing the probe ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "display_server", "expected"),
    [
        ("win32", "windows", WindowsFocus),
        ("darwin", "macos", MacFocus),
        ("linux", "windows", None),  # a mismatch never loads a foreign API
        ("darwin", "windows", None),
        ("win32", "macos", None),
        ("darwin", "x11", None),
        ("linux", "wayland", None),
    ],
)
def test_system_probe_picks_the_probe_for_the_platform(monkeypatch, platform, display_server, expected):
    monkeypatch.setattr(focus_windows, "load_windows_calls", lambda: windows())
    monkeypatch.setattr(
        focus_macos, "load_macos_calls", lambda: mac("Safari", SAFARI, WindowInfo(SAFARI, 0, EXAM))
    )
    monkeypatch.setattr(sys, "platform", platform)
    probe, close = system_probe(display_server)
    if expected is None:
        assert probe is no_focus
    else:
        assert isinstance(probe, expected)
        assert probe()[1] == EXAM
    close()


@pytest.mark.parametrize(("platform", "display_server"), [("win32", "windows"), ("darwin", "macos")])
def test_system_probe_without_the_platform_libraries_falls_back_to_no_focus(
    monkeypatch, platform, display_server
):
    # The real loaders run here, on Linux: user32 / AppKit are missing, which must not be an error.
    monkeypatch.setattr(sys, "platform", platform)
    probe, close = system_probe(display_server)
    assert probe is no_focus and probe() == (None, None)
    close()


def test_system_probe_on_linux_x11_is_the_x11_probe():
    # A real X server, no window focused: the probe answers (None, None) and closes its connection.
    with xvfb() as display:
        probe, close = system_probe("x11", display)
        try:
            assert isinstance(probe, X11Focus)
            assert probe() == (None, None)
        finally:
            close()
