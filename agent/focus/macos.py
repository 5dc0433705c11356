"""The focused application and window title on macOS: libobjc, AppKit and CoreGraphics through ctypes.

The application is ``NSWorkspace.sharedWorkspace.frontmostApplication`` (name and pid, through the
Objective-C runtime); the title is ``kCGWindowName`` of that pid's frontmost on-screen layer-0 window in
``CGWindowListCopyWindowInfo``. macOS hands out other applications' window titles only to a process with
the Screen Recording permission (which capture needs anyway); without it the title is None.
``frontmostApplication`` is refreshed only while the main run loop runs (Apple's note on
``NSRunningApplication``): the Tk status window on the main thread should keep it current (unverified); in
terminal mode the application may go stale.

Untested on a real Mac: the calls are written against the documented APIs and exercised on Linux CI only
through injected :class:`MacCalls`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.focus.base import Focus, FocusUnavailable, GuardedProbe, clean_name


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


class MacFocus(GuardedProbe):
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
    """libobjc, AppKit, CoreGraphics and CoreFoundation through ctypes.

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
