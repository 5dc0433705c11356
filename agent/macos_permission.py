"""macOS Screen Recording permission: asked before the student joins, never discovered mid-exam.

Without the permission macOS hands an app a picture of the wallpaper and the menu bar instead of the
screen. ``CGPreflightScreenCaptureAccess`` says whether Invigil has it; when it has not,
``CGRequestScreenCaptureAccess`` shows the system's prompt (once per app) and the student is told where to
switch it on; macOS applies the change only to a newly started app. Both are CoreGraphics calls (macOS
10.15+) through ctypes; tests inject :class:`ScreenCaptureCalls`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from agent.check import Finding, frame_is_blank
from agent.grab import CaptureUnavailable, MonitorFrame
from agent.i18n import _

COREGRAPHICS = "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics"


def instructions() -> str:
    return _(
        "Invigil may not record your screen yet. In System Settings > Privacy & Security > Screen Recording, "
        "switch on Invigil (macOS may have opened that page for you), then quit Invigil and start it again."
    )


class ScreenRecordingDenied(CaptureUnavailable):
    """macOS does not let Invigil record the screen; the message tells the student how to allow it."""


@dataclass(frozen=True)
class ScreenCaptureCalls:
    preflight: Callable[[], bool]  # True when the permission is granted; never prompts
    request: Callable[[], bool]  # shows the system prompt when not decided yet; True when granted


def load_calls() -> ScreenCaptureCalls:
    """The real CoreGraphics calls; raises :class:`CaptureUnavailable` where they cannot load."""
    try:
        graphics = ctypes.CDLL(COREGRAPHICS)
        graphics.CGPreflightScreenCaptureAccess.argtypes = []
        graphics.CGPreflightScreenCaptureAccess.restype = ctypes.c_bool
        graphics.CGRequestScreenCaptureAccess.argtypes = []
        graphics.CGRequestScreenCaptureAccess.restype = ctypes.c_bool
    except (OSError, AttributeError) as exc:  # not macOS, or older than 10.15
        raise CaptureUnavailable(
            f"CoreGraphics' screen capture access calls cannot be loaded: {exc}"
        ) from exc
    return ScreenCaptureCalls(
        preflight=lambda: bool(graphics.CGPreflightScreenCaptureAccess()),
        request=lambda: bool(graphics.CGRequestScreenCaptureAccess()),
    )


def ensure_screen_recording(calls: ScreenCaptureCalls | None = None) -> None:
    """Return when Invigil may record the screen, else prompt once and raise ScreenRecordingDenied."""
    calls = calls if calls is not None else load_calls()
    if calls.preflight():
        return
    if calls.request() and calls.preflight():
        return
    raise ScreenRecordingDenied(instructions())


def check_finding(calls: ScreenCaptureCalls | None = None) -> Finding:
    """The Screen Recording line of ``invigil-agent check`` (prompts, as joining would)."""
    try:
        ensure_screen_recording(calls)
    except ScreenRecordingDenied as exc:
        return Finding("fail", _("macOS Screen Recording is not allowed for Invigil."), str(exc))
    except CaptureUnavailable as exc:
        return Finding("fail", _("macOS Screen Recording cannot be checked."), str(exc))
    return Finding("ok", _("macOS Screen Recording is allowed for Invigil."))


class BlankScreen(CaptureUnavailable):
    """A grab came out blank (or wallpaper only): reported as a capture error, never stored as a screen."""


class PermissionGuardedGrab:
    """The macOS grabber: every grab first asks ``CGPreflightScreenCaptureAccess`` (the student may revoke
    the permission mid-exam, and macOS then returns the wallpaper alone) and refuses a blank frame.

    Refusing means raising :class:`ScreenRecordingDenied` or :class:`BlankScreen`: the capture loop stores
    nothing for that tick and the runtime reports a ``capture_error`` event with the reason.
    """

    def __init__(
        self, grab: Callable[[], list[MonitorFrame]], calls: ScreenCaptureCalls | None = None
    ) -> None:
        self.grab = grab
        self.calls = calls if calls is not None else load_calls()

    def __call__(self) -> list[MonitorFrame]:
        if not self.calls.preflight():
            raise ScreenRecordingDenied(instructions())
        frames = self.grab()
        blank = [frame.index + 1 for frame in frames if frame_is_blank(frame)]
        if blank:
            raise BlankScreen(
                _("Screen {numbers} came out blank: nothing was recorded.").format(
                    numbers=", ".join(map(str, blank))
                )
            )
        return frames

    def __getattr__(self, name: str) -> object:  # monitors(), close() of the wrapped grabber
        return getattr(self.grab, name)
