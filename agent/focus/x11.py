"""The focused window on X11, read through libX11 (ctypes).

The window manager names the focused window in the root window's ``_NET_ACTIVE_WINDOW`` (EWMH). Without a
window manager (Xvfb in tests, some kiosk set-ups) that property is missing, so the probe falls back to
``XGetInputFocus`` and walks up the window tree to the first window that carries a name (toolkits focus an
inner window, the name sits on the top-level one). The title is ``_NET_WM_NAME`` (UTF-8) or else
``WM_NAME``; the application is the class part of ``WM_CLASS``.

X errors (a window closed between two calls) would by default end the process, so each query installs a
quiet error handler and restores the previous one afterwards; the probe runs on the capture thread so it
never races mss's own handler.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from agent.focus.base import Focus, FocusUnavailable

_ANY_PROPERTY_TYPE = 0
_POINTER_ROOT = 1
_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


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
