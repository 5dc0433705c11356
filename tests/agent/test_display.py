"""Which way to capture: mss on X11, Windows and macOS, the portal on Wayland, and a refusal the student can
act on where neither works."""

from __future__ import annotations

import pytest

from agent.display import NoDisplay, WaylandSession, check_display_server
from agent.grab import CaptureUnavailable


@pytest.mark.parametrize(
    "environ",
    [
        {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"},  # XWayland sets DISPLAY too
        {"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"},
        {"XDG_SESSION_TYPE": "Wayland"},
    ],
)
def test_wayland_is_refused_with_instructions_for_the_student(environ):
    with pytest.raises(WaylandSession) as caught:
        check_display_server(environ, platform="linux")
    message = str(caught.value)
    assert "X11" in message and "Xorg" in message and "log out" in message and "invigilator" in message
    assert caught.value.reason == "wayland"
    assert isinstance(caught.value, CaptureUnavailable)


@pytest.mark.parametrize(
    "environ, platform, expected",
    [
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, "linux", "x11"),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "win32", "windows"),
        ({}, "darwin", "macos"),
    ],
)
def test_capturable_sessions(environ, platform, expected):
    assert check_display_server(environ, platform=platform) == expected


def test_no_display_on_linux():
    with pytest.raises(NoDisplay, match="DISPLAY"):
        check_display_server({}, platform="linux")


@pytest.mark.parametrize("environ", [{"WAYLAND_DISPLAY": "wayland-0"}, {"XDG_SESSION_TYPE": "wayland"}])
def test_wayland_with_a_portal_is_captured_through_it(environ):
    seen = []

    def version(env):
        seen.append(env)
        return 4

    assert check_display_server(environ, platform="linux", portal_version=version) == "wayland"
    assert seen == [environ]
    with pytest.raises(WaylandSession, match="no screenshot portal"):
        check_display_server(environ, platform="linux", portal_version=lambda env: None)
