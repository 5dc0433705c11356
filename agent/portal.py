"""Grab the screen of a Wayland session through the desktop portal's Screenshot interface.

mss cannot see a Wayland screen; the portal (``org.freedesktop.portal.Screenshot`` on the session bus, served
by xdg-desktop-portal and a desktop's backend) can. One call gives one PNG of the whole desktop, written to a
file by the portal: :class:`PortalGrabber` reads it into one :class:`~agent.grab.MonitorFrame` and deletes
the file at once. At start, :func:`screenshot_portal_version` says whether the portal is there, and the first
grab may wait :data:`PERMISSION_TIMEOUT_S` (some desktops ask the student first). The D-Bus edge is
:class:`ScreenshotPortal` (jeepney); tests inject their own ``request`` callable into :class:`PortalGrabber`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from jeepney import (
    DBusAddress,
    DBusErrorResponse,
    HeaderFields,
    MatchRule,
    Properties,
    message_bus,
    new_method_call,
)
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg
from PIL import Image

from agent.grab import CaptureUnavailable, MonitorFrame

log = logging.getLogger(__name__)

PORTAL_BUS_NAME = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
SCREENSHOT_INTERFACE = "org.freedesktop.portal.Screenshot"
REQUEST_INTERFACE = "org.freedesktop.portal.Request"

#: How long one grab may take before :class:`PortalTimeout` (a non-interactive grab takes tens of ms).
GRAB_TIMEOUT_S = 5.0
#: How long the first grab at start may wait: GNOME may show the student a permission dialog first.
PERMISSION_TIMEOUT_S = 120.0

#: ``(timeout_s) -> (response code, results)``: one Screenshot request, answered or TimeoutError.
Request = Callable[[float], tuple[int, Mapping[str, Any]]]


class PortalDenied(CaptureUnavailable):
    """The portal answered "no" (response 2): the desktop or its settings refused Invigil a screenshot."""

    reason = "portal_denied"

    def __init__(self) -> None:
        super().__init__(
            "Your desktop refused to let Invigil take screenshots. Start Invigil again and, if your "
            'desktop asks whether Invigil may take screenshots, choose "Allow". If it does not ask, allow '
            "screenshots for Invigil in your desktop's privacy settings (on GNOME: Settings, Apps, or "
            'Privacy), or log out and choose an "X11" or "Xorg" session at the login screen. If that does '
            "not help, ask the invigilator."
        )


class PortalCancelled(CaptureUnavailable):
    """The portal answered "cancelled" (response 1): the student closed or declined the dialog."""

    reason = "portal_cancelled"

    def __init__(self) -> None:
        super().__init__(
            "The screenshot request was cancelled, so Invigil cannot see your screen. Start Invigil again "
            'and choose "Allow" (or "Share") when your desktop asks whether Invigil may take screenshots. '
            "If no question appears, ask the invigilator."
        )


class PortalTimeout(CaptureUnavailable):
    """The portal did not answer within the timeout."""

    reason = "portal_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"Your desktop did not answer Invigil's screenshot request within {timeout_s:g} seconds. If a "
            'window asks whether Invigil may take screenshots, choose "Allow", then start Invigil again. '
            'If nothing appears, log out and choose an "X11" or "Xorg" session at the login screen, or '
            "ask the invigilator."
        )


class PortalFailed(CaptureUnavailable):
    """The portal answered, but without an image Invigil could read (or delete)."""

    reason = "portal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f'Your desktop\'s screenshot service did not work ({detail}). Log out, choose an "X11" or '
            '"Xorg" session at the login screen and start Invigil again, or ask the invigilator.'
        )


def session_bus_address(environ: Mapping[str, str] | None = None) -> str | None:
    """The session bus address as libdbus finds it: DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus."""
    environ = os.environ if environ is None else environ
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return environ["DBUS_SESSION_BUS_ADDRESS"]
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and Path(runtime_dir, "bus").is_socket():
        return f"unix:path={Path(runtime_dir, 'bus')}"
    return None


def request_handle_path(unique_name: str, token: str) -> str:
    """The object path the portal will give the request (its docs: sender without ':', '.' as '_')."""
    sender = unique_name.lstrip(":").replace(".", "_")
    return f"{PORTAL_PATH}/request/{sender}/{token}"


def image_path_of(uri: object) -> Path:
    """The local file behind the portal's ``uri`` result; :class:`PortalFailed` for anything else."""
    if not isinstance(uri, str) or not uri:
        raise PortalFailed("no image in its answer")
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise PortalFailed(f"the image is not a local file: {uri[:80]}")
    return Path(unquote(parsed.path))


def frame_from_response(code: int, results: Mapping[str, Any]) -> MonitorFrame:
    """Read the portal's answer into one frame (monitor 0: the whole desktop) and delete the portal's file.

    The file is deleted whether or not it can be read: the agent leaves no screenshot behind on the laptop.
    """
    if code == 1:
        raise PortalCancelled()
    if code != 0:
        raise PortalDenied()
    path = image_path_of(results.get("uri"))
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
    except FileNotFoundError:
        raise PortalFailed("the image it wrote is missing") from None
    except OSError as exc:
        raise PortalFailed(f"its image cannot be read: {exc}") from None
    finally:
        delete_image(path)
    # BGRX, as mss gives it: the capture loop then compares only the strips that changed since the last grab.
    bgrx = np.frombuffer(rgb.tobytes("raw", "BGRX"), dtype=np.uint8).reshape(rgb.height, rgb.width, 4)
    return MonitorFrame(0, 0, 0, rgb.width, rgb.height, bgrx=bgrx)


def delete_image(path: Path) -> None:
    """Remove the portal's file; :class:`PortalFailed` if it stays (privacy: nothing is left behind)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise PortalFailed(f"Invigil cannot delete the screenshot at {path}: {exc.strerror}") from None


class ScreenshotPortal:
    """The D-Bus edge: one session-bus connection that asks ``org.freedesktop.portal.Screenshot``.

    Create, call and close it on one thread (the capture thread). Every answer to this connection's requests
    is subscribed to once, before any call, so an answer is never missed; an answer that comes after its
    request timed out still has its file deleted when the next request reads the bus.
    """

    def __init__(self, bus_address: str | None = None, connect_timeout_s: float = 2.0) -> None:
        address = bus_address or session_bus_address()
        if address is None:
            raise PortalFailed("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
        self._conn = open_dbus_connection(address, auth_timeout=connect_timeout_s)
        self._portal = DBusAddress(PORTAL_PATH, bus_name=PORTAL_BUS_NAME, interface=SCREENSHOT_INTERFACE)
        self._rule = MatchRule(
            type="signal",
            interface=REQUEST_INTERFACE,
            member="Response",
            path_namespace=request_handle_path(self._conn.unique_name, "").rstrip("/"),
        )
        try:
            self._call(message_bus.AddMatch(self._rule), connect_timeout_s)
        except Exception:
            self._conn.close()
            raise
        self._responses = self._conn.filter(self._rule, bufsize=64)  # subscribed before any request

    def _call(self, message: Any, timeout_s: float) -> tuple[Any, ...]:
        try:
            return tuple(unwrap_msg(self._conn.send_and_get_reply(message, timeout=timeout_s)))
        except DBusErrorResponse as exc:
            raise PortalFailed(f"{exc.name}: {' '.join(map(str, exc.data))[:200]}") from None

    def version(self, timeout_s: float = GRAB_TIMEOUT_S) -> int:
        """The interface's ``version`` property; :class:`PortalFailed` without the portal or interface."""
        (value,) = self._call(Properties(self._portal).get("version"), timeout_s)
        return int(value[1])

    def screenshot(self, timeout_s: float = GRAB_TIMEOUT_S) -> tuple[int, dict[str, Any]]:
        """One non-interactive Screenshot request: (response code, results) or TimeoutError."""
        token = "invigil_" + secrets.token_hex(8)
        expected = request_handle_path(self._conn.unique_name, token)
        deadline = time.monotonic() + timeout_s
        options = {"interactive": ("b", False), "handle_token": ("s", token)}
        call = new_method_call(self._portal, "Screenshot", "sa{sv}", ("", options))
        (handle,) = self._call(call, timeout_s)
        # A portal older than handle_token answers on a path of its own choosing: follow the one it gave.
        expected = str(handle) or expected
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer to {expected} in {timeout_s} s")
                signal = self._conn.recv_until_filtered(self._responses.queue, timeout=remaining)
                code, results = signal.body
                plain = {key: value[1] for key, value in results.items()}
                if signal.header.fields.get(HeaderFields.path) == expected:
                    return int(code), plain
                self._discard_late_answer(int(code), plain)
        except TimeoutError:
            self._close_request(expected)
            raise

    def _discard_late_answer(self, code: int, results: Mapping[str, Any]) -> None:
        """An answer to a request that already timed out: delete the file it may have written."""
        if code == 0 and isinstance(results.get("uri"), str):
            with contextlib.suppress(CaptureUnavailable):
                delete_image(image_path_of(results["uri"]))

    def _close_request(self, handle: str) -> None:
        """Withdraw a request that timed out, so that a dialog does not stay open on the student's screen."""
        request = DBusAddress(handle, bus_name=PORTAL_BUS_NAME, interface=REQUEST_INTERFACE)
        with contextlib.suppress(Exception):
            self._conn.send_and_get_reply(new_method_call(request, "Close"), timeout=1.0)

    def close(self) -> None:
        """Delete the files of late answers already received, then hang up."""
        while self._responses.queue:
            code, results = self._responses.queue.popleft().body
            self._discard_late_answer(int(code), {key: value[1] for key, value in results.items()})
        self._responses.close()
        self._conn.close()


def screenshot_portal_version(environ: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> int | None:
    """The Screenshot portal's version on the session bus, or None when there is no bus or no portal.

    The first call may start the portal (D-Bus activation), which is why it may wait a few seconds.
    """
    address = session_bus_address(environ)
    if address is None:
        return None
    try:
        portal = ScreenshotPortal(address)
    except Exception as exc:  # a dead bus address, a bus that refuses us
        log.info("no session bus at %s: %s", address, exc)
        return None
    try:
        return portal.version(timeout_s)
    except Exception as exc:  # no portal, or a portal without the Screenshot interface
        log.info("no screenshot portal: %s", exc)
        return None
    finally:
        portal.close()


class PortalGrabber:
    """The :data:`~agent.grab.Grab` of a Wayland session: one portal screenshot of the whole desktop.

    Each call returns one frame, monitor 0, covering every screen as the portal composes them. There is no
    ``monitors()``: the portal does not say how many monitors make up its image, so the device check skips
    the monitor layout rather than report a count it cannot know. ``request`` replaces the D-Bus call in
    tests; by default a :class:`ScreenshotPortal` on the session bus (``bus_address``) is opened here, on
    the capture thread that calls and closes the grabber.
    """

    def __init__(
        self,
        request: Request | None = None,
        timeout_s: float = GRAB_TIMEOUT_S,
        bus_address: str | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._portal: ScreenshotPortal | None = None
        if request is None:
            self._portal = ScreenshotPortal(bus_address)
            request = self._portal.screenshot
        self._request = request

    def __call__(self) -> list[MonitorFrame]:
        try:
            code, results = self._request(self.timeout_s)
        except TimeoutError:
            raise PortalTimeout(self.timeout_s) from None
        return [frame_from_response(code, results)]

    def close(self) -> None:
        if self._portal is not None:
            self._portal.close()
            self._portal = None

    def __enter__(self) -> PortalGrabber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
