"""The focused application and window title, where the OS allows: EWMH on X11, best effort on Windows, macOS.

``agent.runtime`` calls a :data:`FocusProbe` on the capture thread (the same thread as mss, see below)
once a second: a new focused app or title triggers a capture (rate-capped) and both travel in the
capture's metadata. Unit tests inject their own probe. The OS is read through ctypes (and psutil for
Windows process names); a platform's libraries are loaded only when :func:`system_probe` runs on that
platform, so importing this module never fails.

How X11 is read: the window manager names the focused window in the root window's ``_NET_ACTIVE_WINDOW``
(EWMH). Without a window manager (Xvfb in tests, some kiosk set-ups) that property is missing, so the
probe falls back to ``XGetInputFocus`` and walks up the window tree to the first window that carries a
name (toolkits focus an inner window, the name sits on the top-level one). The title is
``_NET_WM_NAME`` (UTF-8) or else ``WM_NAME``; the application is the class part of ``WM_CLASS``.

X errors (a window closed between two calls) would by default end the process, so each query installs a
quiet error handler and restores the previous one afterwards; the runtime calls the probe on the capture
thread so it never races mss's own handler.

Windows (:class:`WindowsFocus`): ``GetForegroundWindow``, its title from ``GetWindowTextW``, its process
from ``GetWindowThreadProcessId`` and the process name from psutil without ``.exe``.

macOS (:class:`MacFocus`): the application is ``NSWorkspace.sharedWorkspace.frontmostApplication`` (name and
pid, through the Objective-C runtime); the title is ``kCGWindowName`` of that pid's frontmost on-screen
layer-0 window in ``CGWindowListCopyWindowInfo``. macOS hands out other applications' window titles only to
a process with the Screen Recording permission (which capture needs anyway); without it the title is None.
``frontmostApplication`` is refreshed only while the main run loop runs (Apple's note on
``NSRunningApplication``): the Tk status window on the main thread should keep it current (unverified); in
terminal mode the application may go stale.

Untested on real systems: the Windows and macOS OS calls are written against the documented APIs and
exercised here (Linux CI) only through injected callables (``WindowsCalls``, ``MacCalls``); the decision
logic around them (no window, no process, empty, long or non-ASCII titles, failing calls) is tested.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: (focused application, window title); either may be None when the OS does not say.
Focus = tuple[str | None, str | None]
FocusProbe = Callable[[], Focus]

log = logging.getLogger(__name__)

#: Longest title or application name read from the OS; the wire format cuts further (invigil.protocol).
MAX_READ_CHARS = 2048

_ANY_PROPERTY_TYPE = 0
_POINTER_ROOT = 1
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class FocusUnavailable(RuntimeError):
    """The platform's focus API cannot be loaded (no X display, no libX11, no user32/AppKit).

    :func:`system_probe` turns it into :func:`no_focus`: the agent then runs without focus information.
    """


def no_focus() -> Focus:
    """The probe where the OS offers nothing (Wayland, or a platform API that did not load)."""
    return (None, None)


class X11Focus:
    """Reads the focused window through one libX11 connection; call it from a single thread."""

    def __init__(self, display: str | None = None) -> None:
        name = ctypes.util.find_library("X11")
        if not name:
            raise FocusUnavailable("libX11 is not installed")
        x = ctypes.CDLL(name)
        ul, vp = ctypes.c_ulong, ctypes.c_void_p
        x.XOpenDisplay.argtypes, x.XOpenDisplay.restype = [ctypes.c_char_p], vp
        x.XDefaultRootWindow.argtypes, x.XDefaultRootWindow.restype = [vp], ul
        x.XInternAtom.argtypes, x.XInternAtom.restype = [vp, ctypes.c_char_p, ctypes.c_int], ul
        x.XGetWindowProperty.argtypes = [
            vp, ul, ul, ctypes.c_long, ctypes.c_long, ctypes.c_int, ul,
            ctypes.POINTER(ul), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ul), ctypes.POINTER(ul),
            ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
        ]  # fmt: skip
        x.XGetInputFocus.argtypes = [vp, ctypes.POINTER(ul), ctypes.POINTER(ctypes.c_int)]
        x.XQueryTree.argtypes = [
            vp, ul, ctypes.POINTER(ul), ctypes.POINTER(ul), ctypes.POINTER(ctypes.POINTER(ul)),
            ctypes.POINTER(ctypes.c_uint),
        ]  # fmt: skip
        x.XFree.argtypes = [vp]
        x.XSync.argtypes = [vp, ctypes.c_int]
        x.XCloseDisplay.argtypes = [vp]
        x.XSetErrorHandler.argtypes, x.XSetErrorHandler.restype = [vp], vp
        self._x = x
        self._dpy = x.XOpenDisplay(display.encode() if display else None)
        if not self._dpy:
            raise FocusUnavailable(f"cannot open X display {display or '(DISPLAY)'}")
        self._root = x.XDefaultRootWindow(self._dpy)
        self._atoms = {
            atom: x.XInternAtom(self._dpy, atom.encode(), 0)
            for atom in ("_NET_ACTIVE_WINDOW", "_NET_WM_NAME", "UTF8_STRING", "WM_NAME", "WM_CLASS")
        }
        self._quiet = _ERROR_HANDLER(lambda _display, _event: 0)

    def _property(self, window: int, atom: str, max_bytes: int = 2048) -> tuple[int, bytes]:
        """(format, raw bytes) of a window property; (0, b"") when it is missing."""
        actual_type, actual_format = ctypes.c_ulong(), ctypes.c_int()
        nitems, after = ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.POINTER(ctypes.c_ubyte)()
        status = self._x.XGetWindowProperty(
            self._dpy, window, self._atoms[atom], 0, max_bytes // 4, 0, _ANY_PROPERTY_TYPE,
            ctypes.byref(actual_type), ctypes.byref(actual_format), ctypes.byref(nitems),
            ctypes.byref(after), ctypes.byref(data),
        )  # fmt: skip
        if status != 0 or not data:
            return 0, b""
        try:
            unit = {8: 1, 16: ctypes.sizeof(ctypes.c_short), 32: ctypes.sizeof(ctypes.c_long)}.get(
                actual_format.value, 0
            )
            return actual_format.value, ctypes.string_at(data, nitems.value * unit)
        finally:
            self._x.XFree(data)

    def _active_window(self) -> int:
        fmt, raw = self._property(self._root, "_NET_ACTIVE_WINDOW", 8)
        if fmt == 32 and len(raw) >= ctypes.sizeof(ctypes.c_ulong):
            window = ctypes.c_ulong.from_buffer_copy(raw[: ctypes.sizeof(ctypes.c_ulong)]).value
            if window:
                return int(window)
        focused, revert = ctypes.c_ulong(), ctypes.c_int()
        self._x.XGetInputFocus(self._dpy, ctypes.byref(focused), ctypes.byref(revert))
        return 0 if focused.value in (0, _POINTER_ROOT) else int(focused.value)

    def _parent(self, window: int) -> int:
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not self._x.XQueryTree(
            self._dpy,
            window,
            ctypes.byref(root),
            ctypes.byref(parent),
            ctypes.byref(children),
            ctypes.byref(count),
        ):
            return 0
        if children:
            self._x.XFree(children)
        return int(parent.value)

    def _named(self, window: int) -> Focus:
        _, wm_class = self._property(window, "WM_CLASS")
        parts = [part.decode("utf-8", "replace") for part in wm_class.split(b"\0") if part]
        app = parts[-1] if parts else None
        _, title_raw = self._property(window, "_NET_WM_NAME")
        if not title_raw:
            _, title_raw = self._property(window, "WM_NAME")
        title = title_raw.decode("utf-8", "replace") if title_raw else None
        return app, title

    def __call__(self) -> Focus:
        """The focused window's (application, title); (None, None) when nothing is focused."""
        previous = self._x.XSetErrorHandler(ctypes.cast(self._quiet, ctypes.c_void_p))
        try:
            window = self._active_window()
            for _ in range(32):  # a window tree is shallow; the bound only guards against a loop
                if window in (0, self._root):
                    return (None, None)
                app, title = self._named(window)
                if app or title:
                    return app, title
                window = self._parent(window)
            return (None, None)
        finally:
            self._x.XSync(self._dpy, 0)
            self._x.XSetErrorHandler(previous)

    def close(self) -> None:
        if self._dpy:
            self._x.XCloseDisplay(self._dpy)
            self._dpy = None


def clean_name(raw: str | None) -> str | None:
    """A name as the OS gave it, made safe to send: cut, stripped, unpaired UTF-16 halves replaced.

    None when nothing is left. Called by the Windows and macOS probes on every app name and title.
    """
    if not raw:
        return None
    # GetWindowTextW cuts at a buffer length and can split a surrogate pair; a lone half cannot be
    # encoded as UTF-8, so it would fail later when the capture metadata is written.
    text = raw[:MAX_READ_CHARS].encode("utf-8", "replace").decode("utf-8").strip()
    return text or None


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


class _GuardedProbe:
    """A probe that never raises: a failing OS call reports (None, None) and is logged once per probe.

    The runtime polls once a second, so a call that fails keeps failing; one warning says so.
    """

    platform = "?"

    def __init__(self) -> None:
        self._failed_before = False

    def read(self) -> Focus:
        raise NotImplementedError

    def __call__(self) -> Focus:
        """The focused (application, title); called by ``agent.runtime`` on the capture thread."""
        try:
            return self.read()
        except Exception:
            if not self._failed_before:
                log.warning("focus probe (%s) failed; captures carry no focus", self.platform, exc_info=True)
                self._failed_before = True
            return (None, None)

    def close(self) -> None:
        """Nothing to release: the libraries stay loaded for the life of the process."""


@dataclass(frozen=True)
class WindowsCalls:
    """The Windows calls :class:`WindowsFocus` needs; :func:`load_windows_calls` gives the real ones."""

    foreground_window: Callable[[], int]  # HWND, 0 when no window has the focus
    window_title: Callable[[int], str]  # "" when the window has none (or closed meanwhile)
    window_pid: Callable[[int], int]  # 0 when unknown
    process_name: Callable[[int], str | None] = psutil_process_name


class WindowsFocus(_GuardedProbe):
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
    """user32 through ctypes; raises :class:`FocusUnavailable` off Windows. Called by :func:`system_probe`."""
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


@dataclass(frozen=True)
class WindowInfo:
    """One entry of the macOS on-screen window list, front to back."""

    owner_pid: int
    layer: int  # 0 is the normal application layer; menus, the Dock and overlays sit above
    title: str | None  # None without the Screen Recording permission


@dataclass(frozen=True)
class MacCalls:
    """The macOS calls :class:`MacFocus` needs; :func:`load_macos_calls` gives the real ones."""

    frontmost_app: Callable[[], tuple[str | None, int]]  # (localizedName, processIdentifier); pid 0: none
    on_screen_windows: Callable[[], Sequence[WindowInfo]]


class MacFocus(_GuardedProbe):
    """The frontmost application and the title of its frontmost normal window."""

    platform = "macos"

    def __init__(self, calls: MacCalls | None = None) -> None:
        super().__init__()
        self.calls = calls if calls is not None else load_macos_calls()

    def read(self) -> Focus:
        name, pid = self.calls.frontmost_app()
        app = clean_name(name)
        if pid <= 0:
            return app, None
        for window in self.calls.on_screen_windows():
            if window.owner_pid == pid and window.layer == 0:
                return app, clean_name(window.title)  # the first is the frontmost: no guessing further
        return app, None  # an application without a window (Finder with none open, a menu-bar app)


_CF_UTF8 = 0x08000100  # kCFStringEncodingUTF8
_CF_SINT64 = 4  # kCFNumberSInt64Type
_ON_SCREEN_ONLY, _EXCLUDE_DESKTOP, _NULL_WINDOW = 1 << 0, 1 << 4, 0  # kCGWindowList…, kCGNullWindowID


def _library(name: str) -> ctypes.CDLL:
    found = ctypes.util.find_library(name)
    if not found:
        raise FocusUnavailable(f"{name} is not installed")
    return ctypes.CDLL(found)


def load_macos_calls() -> MacCalls:
    """libobjc, AppKit, CoreGraphics and CoreFoundation through ctypes; called by :func:`system_probe`.

    Raises :class:`FocusUnavailable` off macOS (the frameworks are not found). ``objc_msgSend`` has no
    prototype of its own and must be called as the exact signature of each method; on arm64 a guessed one
    puts arguments and results in the wrong registers. So each signature gets its own function pointer.
    """
    try:
        return _macos_calls()
    except (AttributeError, OSError, ValueError) as exc:  # a library that did not load, a missing symbol
        raise FocusUnavailable(f"AppKit/CoreGraphics cannot be used: {exc}") from exc


def _macos_calls() -> MacCalls:
    vp = ctypes.c_void_p
    objc = _library("objc")
    _library("AppKit")  # registers NSWorkspace with the runtime
    cg, cf = _library("CoreGraphics"), _library("CoreFoundation")
    objc.objc_getClass.argtypes, objc.objc_getClass.restype = [ctypes.c_char_p], vp
    objc.sel_registerName.argtypes, objc.sel_registerName.restype = [ctypes.c_char_p], vp
    objc.objc_autoreleasePoolPush.argtypes, objc.objc_autoreleasePoolPush.restype = [], vp
    objc.objc_autoreleasePoolPop.argtypes, objc.objc_autoreleasePoolPop.restype = [vp], None
    msg_send = ctypes.cast(objc.objc_msgSend, vp).value
    if not msg_send:
        raise FocusUnavailable("libobjc has no objc_msgSend")
    send_id = ctypes.CFUNCTYPE(vp, vp, vp)(msg_send)
    send_int = ctypes.CFUNCTYPE(ctypes.c_int, vp, vp)(msg_send)  # pid_t
    send_cstr = ctypes.CFUNCTYPE(ctypes.c_char_p, vp, vp)(msg_send)
    selector = {name: objc.sel_registerName(name.encode()) for name in (
        "sharedWorkspace", "frontmostApplication", "localizedName", "processIdentifier", "UTF8String",
    )}  # fmt: skip
    workspace_class = objc.objc_getClass(b"NSWorkspace")
    if not workspace_class:
        raise FocusUnavailable("AppKit has no NSWorkspace")

    cg.CGWindowListCopyWindowInfo.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
    cg.CGWindowListCopyWindowInfo.restype = vp
    cf.CFArrayGetCount.argtypes, cf.CFArrayGetCount.restype = [vp], ctypes.c_long
    cf.CFArrayGetValueAtIndex.argtypes, cf.CFArrayGetValueAtIndex.restype = [vp, ctypes.c_long], vp
    cf.CFDictionaryGetValue.argtypes, cf.CFDictionaryGetValue.restype = [vp, vp], vp
    cf.CFGetTypeID.argtypes, cf.CFGetTypeID.restype = [vp], ctypes.c_ulong
    cf.CFStringGetTypeID.argtypes, cf.CFStringGetTypeID.restype = [], ctypes.c_ulong
    cf.CFNumberGetTypeID.argtypes, cf.CFNumberGetTypeID.restype = [], ctypes.c_ulong
    cf.CFNumberGetValue.argtypes, cf.CFNumberGetValue.restype = [vp, ctypes.c_long, vp], ctypes.c_bool
    cf.CFStringGetLength.argtypes, cf.CFStringGetLength.restype = [vp], ctypes.c_long
    cf.CFStringGetMaximumSizeForEncoding.argtypes = [ctypes.c_long, ctypes.c_uint32]
    cf.CFStringGetMaximumSizeForEncoding.restype = ctypes.c_long
    cf.CFStringGetCString.argtypes = [vp, ctypes.c_char_p, ctypes.c_long, ctypes.c_uint32]
    cf.CFStringGetCString.restype = ctypes.c_bool
    cf.CFRelease.argtypes, cf.CFRelease.restype = [vp], None
    key = {
        name: vp.in_dll(cg, name).value for name in ("kCGWindowOwnerPID", "kCGWindowLayer", "kCGWindowName")
    }
    string_type, number_type = cf.CFStringGetTypeID(), cf.CFNumberGetTypeID()

    def frontmost_app() -> tuple[str | None, int]:
        pool = objc.objc_autoreleasePoolPush()  # the capture thread has no pool of its own
        try:
            workspace = send_id(workspace_class, selector["sharedWorkspace"])
            app = send_id(workspace, selector["frontmostApplication"]) if workspace else None
            if not app:
                return None, 0
            name = send_id(app, selector["localizedName"])
            raw = send_cstr(name, selector["UTF8String"]) if name else None  # copied before the pool pops
            pid = int(send_int(app, selector["processIdentifier"]))
            return (raw.decode("utf-8", "replace") if raw else None), pid
        finally:
            objc.objc_autoreleasePoolPop(pool)

    def number(ref: int | None) -> int:
        value = ctypes.c_int64()
        if (
            ref
            and cf.CFGetTypeID(ref) == number_type
            and cf.CFNumberGetValue(ref, _CF_SINT64, ctypes.byref(value))
        ):
            return int(value.value)
        return -1

    def string(ref: int | None) -> str | None:
        if not ref or cf.CFGetTypeID(ref) != string_type:
            return None
        size = cf.CFStringGetMaximumSizeForEncoding(cf.CFStringGetLength(ref), _CF_UTF8) + 1
        buffer = ctypes.create_string_buffer(size)
        if not cf.CFStringGetCString(ref, buffer, size, _CF_UTF8):
            return None
        return buffer.value.decode("utf-8", "replace")

    def on_screen_windows() -> list[WindowInfo]:
        windows = cg.CGWindowListCopyWindowInfo(_ON_SCREEN_ONLY | _EXCLUDE_DESKTOP, _NULL_WINDOW)
        if not windows:
            return []
        try:  # values got from the array and its dictionaries are borrowed; only the copy is released
            entries = [cf.CFArrayGetValueAtIndex(windows, i) for i in range(cf.CFArrayGetCount(windows))]
            return [
                WindowInfo(
                    owner_pid=number(cf.CFDictionaryGetValue(entry, key["kCGWindowOwnerPID"])),
                    layer=number(cf.CFDictionaryGetValue(entry, key["kCGWindowLayer"])),
                    title=string(cf.CFDictionaryGetValue(entry, key["kCGWindowName"])),
                )
                for entry in entries
            ]
        finally:
            cf.CFRelease(windows)

    return MacCalls(frontmost_app, on_screen_windows)


def system_probe(display_server: str, display: str | None = None) -> tuple[FocusProbe, Callable[[], None]]:
    """The best probe for this OS and a close function; called by ``agent.runtime`` on the capture thread.

    ``display_server`` is what ``agent.grab.check_display_server`` found ("x11", "windows", "macos"); a
    platform whose API does not load gets :func:`no_focus`, never an error.
    """
    probe: X11Focus | WindowsFocus | MacFocus
    try:
        if display_server == "x11" and sys.platform.startswith("linux"):
            probe = X11Focus(display)
        elif display_server == "windows" and sys.platform == "win32":
            probe = WindowsFocus(load_windows_calls())
        elif display_server == "macos" and sys.platform == "darwin":
            probe = MacFocus(load_macos_calls())
        else:
            return no_focus, lambda: None
    except FocusUnavailable as exc:
        log.info("no focus information: %s", exc)
        return no_focus, lambda: None
    return probe, probe.close
