"""The focused application and window title, where the OS allows: EWMH on X11, best effort on Windows, macOS.

A :data:`FocusProbe` is polled once a second on the capture thread (the same thread as mss): a new focused
app or title triggers a capture (rate-capped) and both travel in the capture's metadata. Unit tests inject
their own probe. :func:`system_probe` picks the platform's probe: ``agent.focus.x11``,
``agent.focus.windows`` or ``agent.focus.macos``, each built on the shared types of ``agent.focus.base``.
Each reads the OS through ctypes (and psutil for Windows process names); a platform's module is imported,
and its libraries loaded, only when :func:`system_probe` runs on that platform, so importing this package
never fails.

Untested on real systems: the Windows and macOS OS calls are written against the documented APIs and
exercised here (Linux CI) only through injected callables (``WindowsCalls``, ``MacCalls``); the decision
logic around them (no window, no process, empty, long or non-ASCII titles, failing calls) is tested.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from agent.focus.base import MAX_READ_CHARS, ClosableProbe, Focus, FocusProbe, FocusUnavailable, no_focus

__all__ = ["MAX_READ_CHARS", "Focus", "FocusProbe", "FocusUnavailable", "no_focus", "system_probe"]

log = logging.getLogger(__name__)


def system_probe(display_server: str, display: str | None = None) -> tuple[FocusProbe, Callable[[], None]]:
    """The best probe for this OS and its close function.

    Build, call and close the probe on one thread (the capture thread, next to mss): the X11 connection
    behind it is not meant to be shared between threads.

    ``display_server`` is what ``agent.display.check_display_server`` found ("x11", "windows", "macos"); a
    platform whose API does not load gets :func:`no_focus`, never an error.
    """
    probe: ClosableProbe
    try:  # each platform module is imported only here, on its own platform: no foreign library loads
        if display_server == "x11" and sys.platform.startswith("linux"):
            from agent.focus.x11 import X11Focus

            probe = X11Focus(display)
        elif display_server == "windows" and sys.platform == "win32":
            from agent.focus.windows import WindowsFocus, load_windows_calls

            probe = WindowsFocus(load_windows_calls())
        elif display_server == "macos" and sys.platform == "darwin":
            from agent.focus.macos import MacFocus, load_macos_calls

            probe = MacFocus(load_macos_calls())
        else:
            return no_focus, lambda: None
    except FocusUnavailable as exc:
        log.info("no focus information: %s", exc)
        return no_focus, lambda: None
    return probe, probe.close
