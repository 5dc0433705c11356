"""The screenshot portal on Wayland: answers read into frames, files deleted, refusals explained to the
student; once for real (headless sway + xdg-desktop-portal-wlr on a private bus, tests/agent/agent_wayland.py)
and once against a portal on a real private bus that answers too late."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from jeepney import DBusAddress, HeaderFields, MessageType, message_bus, new_method_return, new_signal
from jeepney.io.blocking import open_dbus_connection
from PIL import Image

from agent.cli import ask_portal_permission
from agent.display import WaylandSession, check_display_server
from agent.grab import CaptureUnavailable
from agent.portal import (
    PORTAL_BUS_NAME,
    PortalCancelled,
    PortalDenied,
    PortalFailed,
    PortalGrabber,
    PortalTimeout,
    ScreenshotPortal,
    request_handle_path,
    screenshot_portal_version,
)

from agent_wayland import wayland_portal_desktop

BLUE_GREY = (0x12, 0x34, 0x56)


def write_png(path: Path, mode: str = "RGB") -> Path:
    """A 4x3 image: BLUE_GREY with one orange pixel at (x=3, y=2)."""
    image = Image.new(mode, (4, 3), BLUE_GREY + ((255,) if mode == "RGBA" else ()))
    image.putpixel((3, 2), (255, 128, 0, 255) if mode == "RGBA" else (255, 128, 0))
    image.save(path)
    return path


def answering(code: int, results: dict):
    """A request callable that answers like the portal, and records the timeout it was given."""
    calls: list[float] = []

    def request(timeout_s: float):
        calls.append(timeout_s)
        return code, results

    request.calls = calls  # type: ignore[attr-defined]
    return request


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_screenshot_becomes_one_frame_and_its_file_is_deleted(tmp_path, mode):
    shot = write_png(tmp_path / "Screenshot from the exam.png", mode)  # a space: the uri is percent-encoded
    request = answering(0, {"uri": "file://" + quote(str(shot))})
    with PortalGrabber(request=request, timeout_s=3) as grab:
        frames = grab()
    assert request.calls == [3]
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.index, frame.left, frame.top, frame.width, frame.height) == (0, 0, 0, 4, 3)
    assert frame.bgrx is not None and frame.bgrx.shape == (3, 4, 4)  # what the capture loop compares fastest
    assert tuple(frame.rgb[0, 0]) == BLUE_GREY and tuple(frame.rgb[2, 3]) == (255, 128, 0)
    assert not shot.exists(), "the portal's screenshot must not stay on the laptop"


def test_each_grab_brings_its_own_pixels(tmp_path):
    def request(timeout_s: float):
        return 0, {"uri": write_png(tmp_path / "shot.png").as_uri()}

    grab = PortalGrabber(request=request)
    first, second = grab()[0], grab()[0]
    assert first.bgrx is not None and second.bgrx is not None
    assert not np.shares_memory(first.bgrx, second.bgrx) and np.array_equal(first.bgrx, second.bgrx)


@pytest.mark.parametrize(
    "code, error, words",
    [
        (1, PortalCancelled, ["cancelled", "Allow", "invigilator"]),
        (2, PortalDenied, ["refused", "Allow", "privacy settings", "X11", "invigilator"]),
        (3, PortalDenied, ["refused", "Allow"]),
    ],
)
def test_a_refusal_tells_the_student_what_to_do(tmp_path, code, error, words):
    shot = write_png(tmp_path / "shot.png")
    with pytest.raises(error) as caught:
        PortalGrabber(request=answering(code, {"uri": shot.as_uri()}))()
    assert isinstance(caught.value, CaptureUnavailable) and caught.value.reason.startswith("portal_")
    for word in words:
        assert word in str(caught.value)


def test_no_answer_in_time_is_a_timeout_for_the_student():
    def request(timeout_s: float):
        raise TimeoutError("no answer")

    with pytest.raises(PortalTimeout, match=r"within 2\.5 seconds.*Allow") as caught:
        PortalGrabber(request=request, timeout_s=2.5)()
    assert caught.value.reason == "portal_timeout"


@pytest.mark.parametrize(
    "results, words",
    [
        ({"uri": "file:///nowhere/invigil-missing.png"}, "missing"),
        ({}, "no image"),
        ({"uri": ""}, "no image"),
        ({"uri": "https://example.invalid/shot.png"}, "not a local file"),
        ({"uri": "file://otherhost/shot.png"}, "not a local file"),
    ],
)
def test_an_answer_without_a_readable_image_fails_plainly(results, words):
    with pytest.raises(PortalFailed, match=words) as caught:
        PortalGrabber(request=answering(0, results))()
    assert "invigilator" in str(caught.value) and caught.value.reason == "portal_error"


def test_an_unreadable_image_is_deleted_all_the_same(tmp_path):
    junk = tmp_path / "shot.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(PortalFailed, match="cannot be read"):
        PortalGrabber(request=answering(0, {"uri": junk.as_uri()}))()
    assert not junk.exists()


def test_the_request_path_follows_the_portal_docs():
    path = request_handle_path(":1.42", "invigil_ab")
    assert path == "/org/freedesktop/portal/desktop/request/1_42/invigil_ab"


def test_no_session_bus_means_no_portal(tmp_path):
    assert screenshot_portal_version({}) is None
    assert screenshot_portal_version({"XDG_RUNTIME_DIR": str(tmp_path)}) is None  # no bus socket there
    gone = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'bus'}"}
    assert screenshot_portal_version(gone) is None
    with pytest.raises(WaylandSession):
        check_display_server({"WAYLAND_DISPLAY": "wayland-0", **gone}, platform="linux")


@pytest.fixture
def wayland_desktop():
    with wayland_portal_desktop() as desktop:
        yield desktop


def test_the_real_portal_grabs_the_whole_desktop_and_leaves_no_file(wayland_desktop, monkeypatch, capsys):
    """The real edge: sway's two outputs, xdg-desktop-portal + -wlr on a private session bus."""
    desktop = wayland_desktop
    assert check_display_server(desktop.environ, platform="linux") == "wayland"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.bus_address)
    assert ask_portal_permission() is PortalGrabber  # what the agent does at start: one grab, then join
    assert '"Allow"' in capsys.readouterr().err
    portal = ScreenshotPortal(desktop.bus_address)
    files: list[Path] = []

    def request(timeout_s: float):
        code, results = portal.screenshot(timeout_s)
        files.append(Path(results["uri"].removeprefix("file://")))
        return code, results

    width = max(x + w for x, _, w, _, _ in desktop.outputs)
    height = max(y + h for _, y, _, h, _ in desktop.outputs)
    with PortalGrabber(request=request) as grab:
        deadline = time.monotonic() + 15
        while True:  # the background client paints a moment after the compositor starts
            (frame,) = grab()
            if tuple(frame.rgb[10, 10]) == BLUE_GREY or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    portal.close()
    assert (frame.index, frame.left, frame.top, frame.width, frame.height) == (0, 0, 0, width, height)
    assert frame.bgrx is not None
    for x, y, w, h, colour in desktop.outputs:  # one image, every output where the desktop puts it
        expected = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert tuple(frame.rgb[y + h // 2, x + w // 2]) == expected
        assert tuple(frame.rgb[y + h - 1, x + w - 1]) == expected
    assert files and not any(path.exists() for path in files), f"screenshots left behind: {files}"


# A portal of our own on a real private bus: the timing the real one never shows (an answer too late).


@pytest.fixture
def private_bus(tmp_path) -> Iterator[str]:
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus-daemon)")
    socket = tmp_path / "bus"
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={socket}"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.is_socket():
            assert proc.poll() is None and time.monotonic() < deadline, "dbus-daemon did not start"
            time.sleep(0.02)
        yield f"unix:path={socket}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


class SlowPortal(threading.Thread):
    """Serves Screenshot (version 2) but answers each request only after ``delay_s``, with a fresh file."""

    def __init__(self, address: str, shots: Path, delay_s: float) -> None:
        super().__init__(daemon=True)
        self.conn = open_dbus_connection(address)
        self.conn.send_and_get_reply(message_bus.RequestName(PORTAL_BUS_NAME))
        self.shots, self.delay_s = shots, delay_s
        self.closed: list[str] = []
        self.written: list[Path] = []
        self.stopping = False

    def run(self) -> None:
        pending: list[tuple[float, str]] = []
        while not self.stopping:
            try:
                msg = self.conn.receive(timeout=0.05)
            except TimeoutError:
                msg = None
            if msg is not None and msg.header.message_type == MessageType.method_call:
                member = msg.header.fields.get(HeaderFields.member)
                if member == "Get":
                    self.conn.send(new_method_return(msg, "v", (("u", 2),)))
                elif member == "Screenshot":
                    token = msg.body[1]["handle_token"][1]
                    handle = request_handle_path(msg.header.fields[HeaderFields.sender], token)
                    self.conn.send(new_method_return(msg, "o", (handle,)))
                    pending.append((time.monotonic() + self.delay_s, handle))
                elif member == "Close":
                    self.closed.append(msg.header.fields[HeaderFields.path])
                    self.conn.send(new_method_return(msg))
            for due, handle in [p for p in pending if p[0] <= time.monotonic()]:
                pending.remove((due, handle))
                shot = write_png(self.shots / f"shot-{len(self.written)}.png")
                self.written.append(shot)
                request = DBusAddress(handle, interface="org.freedesktop.portal.Request")
                self.conn.send(new_signal(request, "Response", "ua{sv}", (0, {"uri": ("s", shot.as_uri())})))


def test_a_late_answer_times_out_closes_the_request_and_its_file_is_deleted_later(private_bus, tmp_path):
    slow = SlowPortal(private_bus, tmp_path, delay_s=0.6)
    slow.start()
    try:
        assert screenshot_portal_version({"DBUS_SESSION_BUS_ADDRESS": private_bus}) == 2
        with PortalGrabber(bus_address=private_bus, timeout_s=0.3) as grab:
            with pytest.raises(PortalTimeout, match="did not answer"):
                grab()
            assert len(slow.closed) == 1 and "/portal/desktop/request/" in slow.closed[0]  # withdrawn
            time.sleep(0.5)  # the first answer arrives now, after its request gave up
            grab.timeout_s = 3
            (frame,) = grab()  # reads the late answer first: deletes its file, then waits for its own
        assert tuple(frame.rgb[2, 3]) == (255, 128, 0)
        assert len(slow.written) == 2 and not any(path.exists() for path in slow.written)
    finally:
        slow.stopping = True
        slow.join(timeout=5)
        slow.conn.close()
