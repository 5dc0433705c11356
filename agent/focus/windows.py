"""The focused application and window title on Windows: user32 through ctypes, process names from Toolhelp.

``GetForegroundWindow``, its title from ``GetWindowTextW``, its process from ``GetWindowThreadProcessId``
and the process name from a Toolhelp snapshot without ``.exe``. Run for real under Wine
(tests/agent/test_windows_wine.py); the decision logic is also tested through injected :class:`WindowsCalls`.
Not yet run on a real Windows.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from agent.focus.base import MAX_READ_CHARS, Focus, FocusUnavailable, GuardedProbe, clean_name


def app_from_process_name(name: str | None) -> str | None:
    """``chrome.exe`` -> ``chrome``: the application as the student would name it."""
    name = clean_name(name)
    if name and name.lower().endswith(".exe"):
        name = name[: -len(".exe")].rstrip()
    return name or None


def psutil_process_name(pid: int) -> str | None:
    """The name of process ``pid``; None when it has exited or may not be inspected (psutil, any OS)."""
    import psutil  # an agent dependency; imported here like agent.devices does

    if pid <= 0:  # 0 means "unknown" to GetWindowThreadProcessId; psutil would name the idle process
        return None
    try:
        return str(psutil.Process(pid).name())
    except psutil.Error:  # NoSuchProcess, AccessDenied, ZombieProcess
        return None


def snapshot_process_name(pid: int) -> str | None:
    """The executable name of process ``pid`` from a Toolhelp snapshot (``agent.winprocess``), else psutil."""
    if pid <= 0:
        return None
    try:
        from agent.winprocess import process_table

        return process_table().get(pid)
    except OSError:
        return psutil_process_name(pid)


@dataclass(frozen=True)
class WindowsCalls:
    """The Windows calls :class:`WindowsFocus` needs; :func:`load_windows_calls` gives the real ones."""

    foreground_window: Callable[[], int]  # HWND, 0 when no window has the focus
    window_title: Callable[[int], str]  # "" when the window has none (or closed meanwhile)
    window_pid: Callable[[int], int]  # 0 when unknown
    process_name: Callable[[int], str | None] = snapshot_process_name


class WindowsFocus(GuardedProbe):
    """The foreground window's process name (without ``.exe``) and title."""

    platform = "windows"

    def __init__(self, calls: WindowsCalls | None = None) -> None:
        super().__init__()
        self.calls = calls if calls is not None else load_windows_calls()

    def read(self) -> Focus:
        hwnd = self.calls.foreground_window()
        if not hwnd:  # the desktop, a secure desktop (UAC, Ctrl+Alt+Del) or a window changing focus
            return (None, None)
        title = clean_name(self.calls.window_title(hwnd))
        pid = self.calls.window_pid(hwnd)
        app = app_from_process_name(self.calls.process_name(pid)) if pid else None
        return app, title


def load_windows_calls() -> WindowsCalls:
    """user32 through ctypes; raises :class:`FocusUnavailable` off Windows."""
    try:
        return _windows_calls()
    except (AttributeError, OSError, ValueError) as exc:  # no WinDLL, no user32, a missing function
        raise FocusUnavailable(f"user32 cannot be loaded: {exc}") from exc


def _windows_calls() -> WindowsCalls:
    from ctypes import wintypes

    user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    hwnd = wintypes.HWND
    user32.GetForegroundWindow.argtypes, user32.GetForegroundWindow.restype = [], hwnd
    user32.GetWindowTextLengthW.argtypes, user32.GetWindowTextLengthW.restype = [hwnd], ctypes.c_int
    user32.GetWindowTextW.argtypes = [hwnd, wintypes.LPWSTR, ctypes.c_int]
    user32.GetWindowTextW.restype = ctypes.c_int
    user32.GetWindowThreadProcessId.argtypes = [hwnd, ctypes.POINTER(wintypes.DWORD)]
    user32.GetWindowThreadProcessId.restype = wintypes.DWORD

    def foreground_window() -> int:
        return int(user32.GetForegroundWindow() or 0)

    def window_title(window: int) -> str:
        # Reading another process's caption this way does not send it a message, so it cannot hang.
        length = min(int(user32.GetWindowTextLengthW(window)), MAX_READ_CHARS)
        if length <= 0:
            return ""
        buffer = ctypes.create_unicode_buffer(length + 1)
        copied = int(user32.GetWindowTextW(window, buffer, length + 1))
        return buffer.value[: max(copied, 0)]

    def window_pid(window: int) -> int:
        pid = wintypes.DWORD()
        if not user32.GetWindowThreadProcessId(window, ctypes.byref(pid)):
            return 0  # the window closed between two calls
        return int(pid.value)

    return WindowsCalls(foreground_window, window_title, window_pid)
