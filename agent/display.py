"""Which way this session's screen can be captured, decided once at start, before the student joins.

X11, Windows and macOS are grabbed with mss (``agent.grab``); a Wayland session only through the desktop's
screenshot portal (``agent.portal``), asked for on the session bus. A session that cannot be captured raises
a :class:`~agent.grab.CaptureUnavailable` whose message tells the student what to do instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from agent.grab import CaptureUnavailable


class WaylandSession(CaptureUnavailable):
    """A Wayland session without a screenshot portal: X11 grabs see a black screen or nothing at all."""

    reason = "wayland"

    def __init__(self) -> None:
        super().__init__(
            "This computer is running a Wayland desktop session that offers Invigil no way to take "
            "screenshots (no screenshot portal), so Invigil cannot see the screen. "
            'Save your work, log out, and at the login screen choose an "X11" or "Xorg" session '
            '(often under the gear icon next to the password field, e.g. "Ubuntu on Xorg" or '
            '"Plasma (X11)"), then start Invigil again. If you cannot find it, ask the invigilator.'
        )


class NoDisplay(CaptureUnavailable):
    """No graphical session to capture (no DISPLAY on Linux)."""

    reason = "no_display"

    def __init__(self) -> None:
        super().__init__(
            "Invigil cannot find your desktop session (DISPLAY is not set). Start Invigil from your desktop, "
            "not from a text console or a remote shell. If that does not help, ask the invigilator."
        )


def check_display_server(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    portal_version: Callable[[Mapping[str, str]], int | None] | None = None,
) -> str:
    """Return how to capture ("x11", "wayland", "windows", "macos") or raise :class:`CaptureUnavailable`.

    Wayland wins over DISPLAY: a Wayland session with XWayland sets both, and mss would then grab only
    the X11 windows, not the screen the student sees. "wayland" means the session bus named in ``environ``
    has the screenshot portal (``portal_version``, by default ``agent.portal.screenshot_portal_version``);
    without it the student is told to log in to an X11 session (:class:`WaylandSession`).
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return "windows"
    if platform == "darwin":
        return "macos"
    if environ.get("WAYLAND_DISPLAY") or environ.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        if (portal_version or _portal_version)(environ):
            return "wayland"
        raise WaylandSession()
    if not environ.get("DISPLAY"):
        raise NoDisplay()
    return "x11"


def _portal_version(environ: Mapping[str, str]) -> int | None:
    try:
        from agent.portal import screenshot_portal_version  # the D-Bus library loads only on Wayland
    except ImportError:
        return None
    return screenshot_portal_version(environ)
