"""The focused application and window title, where the OS allows: EWMH on X11, best effort on Windows, macOS.

``agent.runtime`` calls a :data:`FocusProbe` on the capture thread (the same thread as mss) once a second:
a new focused app or title triggers a capture (rate-capped) and both travel in the capture's metadata.
Unit tests inject their own probe. This module holds what the platform probes share and
:func:`system_probe`, which picks one: ``agent.focus_x11``, ``agent.focus_windows`` or
``agent.focus_macos``. Each reads the OS through ctypes (and psutil for Windows process names); a
platform's module is imported, and its libraries loaded, only when :func:`system_probe` runs on that
platform, so importing this module never fails.

Untested on real systems: the Windows and macOS OS calls are written against the documented APIs and
exercised here (Linux CI) only through injected callables (``WindowsCalls``, ``MacCalls``); the decision
logic around them (no window, no process, empty, long or non-ASCII titles, failing calls) is tested.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Protocol

#: (focused application, window title); either may be None when the OS does not say.
Focus = tuple[str | None, str | None]
FocusProbe = Callable[[], Focus]

log = logging.getLogger(__name__)

#: Longest title or application name read from the OS; the wire format cuts further (invigil.protocol).
MAX_READ_CHARS = 2048


class FocusUnavailable(RuntimeError):
    """The platform's focus API cannot be loaded (no X display, no libX11, no user32/AppKit).

    :func:`system_probe` turns it into :func:`no_focus`: the agent then runs without focus information.
    """


def no_focus() -> Focus:
    """The probe where the OS offers nothing (Wayland, or a platform API that did not load)."""
    return (None, None)


class ClosableProbe(Protocol):
    """A platform probe: a :data:`FocusProbe` with a ``close`` that :func:`system_probe` hands out."""

    def __call__(self) -> Focus: ...

    def close(self) -> None: ...


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


class GuardedProbe:
    """A probe that never raises: a failing OS call reports (None, None) and is logged once per probe.

    The runtime polls once a second, so a call that fails keeps failing; one warning says so. The base of
    ``WindowsFocus`` and ``MacFocus``, which implement :meth:`read`.
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


def system_probe(display_server: str, display: str | None = None) -> tuple[FocusProbe, Callable[[], None]]:
    """The best probe for this OS and a close function; called by ``agent.runtime`` on the capture thread.

    ``display_server`` is what ``agent.grab.check_display_server`` found ("x11", "windows", "macos"); a
    platform whose API does not load gets :func:`no_focus`, never an error.
    """
    probe: ClosableProbe
    try:  # each platform module is imported only here, on its own platform: no foreign library loads
        if display_server == "x11" and sys.platform.startswith("linux"):
            from agent.focus_x11 import X11Focus

            probe = X11Focus(display)
        elif display_server == "windows" and sys.platform == "win32":
            from agent.focus_windows import WindowsFocus, load_windows_calls

            probe = WindowsFocus(load_windows_calls())
        elif display_server == "macos" and sys.platform == "darwin":
            from agent.focus_macos import MacFocus, load_macos_calls

            probe = MacFocus(load_macos_calls())
        else:
            return no_focus, lambda: None
    except FocusUnavailable as exc:
        log.info("no focus information: %s", exc)
        return no_focus, lambda: None
    return probe, probe.close
