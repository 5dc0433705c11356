"""``invigil-agent check``: the real command on Xvfb shows exactly what would be recorded and says what to
fix; the verdict over recorded input (second monitor, remote-access tool, VPN, blank screen, bundle)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.bundle import AgentBundle
from agent.check import is_blank, run_check
from agent.devices import load_categories
from agent.encode import quantise_gray4
from agent.grab import CaptureUnavailable, MonitorFrame
from agent.macos_permission import (
    ScreenCaptureCalls,
    ScreenRecordingDenied,
    check_finding,
    ensure_screen_recording,
)

from agent_screens import render_page
from agent_xvfb import xvfb
from support import BIN


def page_frame(index: int = 0) -> MonitorFrame:
    return MonitorFrame(index, 1280 * index, 0, 1280, 800, render_page(("An exam question", "An answer")))


def check_with(
    tmp_path: Path, frames: list[MonitorFrame], processes=(), interfaces=None, bundle=None, paths=None
):
    return run_check(
        grab_factory=lambda: lambda: frames,
        out_dir=tmp_path / "out",
        display_server="x11",
        categories=load_categories(),
        agent_version="0.1.0",
        bundle=bundle,
        list_processes=lambda: list(processes),
        list_interfaces=lambda: interfaces or {"lo": True, "eth0": True},
        list_paths=lambda up, skip: dict(paths or {}),
    )


def test_the_real_check_on_x11_shows_the_screen_as_the_reviewer_sees_it(tmp_path):
    with xvfb("800x600x24") as display:
        env = {**os.environ, "DISPLAY": display}
        env.pop("WAYLAND_DISPLAY", None)
        subprocess.run(
            ["xsetroot", "-mod", "7", "5", "-fg", "#000000", "-bg", "#f0f0f0"], env=env, check=True
        )
        import mss

        with mss.MSS(display=display) as grabber:
            shot = np.asarray(grabber.grab(grabber.monitors[1]))
        done = subprocess.run(
            [str(BIN / "invigil-agent"), "check", "--out", str(tmp_path / "pictures"), "--lang", "en"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ OK ] Screen capture: x11" in done.stdout
    assert "Screen 1 (800x600): recorded as in" in done.stdout
    assert "no hall bundle given" in done.stdout and done.stdout.rstrip().endswith(
        "READY, but the invigilators will see the points marked [WARN]: fix them before the exam."
    )
    picture = Image.open(tmp_path / "pictures" / "screen-1.png")
    assert picture.size == (800, 600)
    assert np.array_equal(np.asarray(picture.convert("L")) // 17, quantise_gray4(shot[:, :, 2::-1]))


def test_a_blank_screen_a_second_monitor_and_a_remote_access_tool_are_told(tmp_path):
    blank = MonitorFrame(1, 1280, 0, 1280, 800, np.full((800, 1280, 3), 30, np.uint8))
    report = check_with(
        tmp_path,
        [page_frame(), blank],
        processes=["AnyDesk.exe", "notepad.exe"],
        interfaces={"wg0": True, "eth0": True},
    )
    text = "\n".join(report.lines())
    assert not report.ready
    assert "[FAIL] Screen 2 (1280x800) comes out blank." in text
    assert "[WARN] 2 monitors" in text
    assert "[WARN] remote-access tool running: anydesk" in text
    assert "VPN running: wg0" in text
    assert text.endswith("NOT READY: fix the problems marked [FAIL] and run the check again.")
    assert len(report.pictures) == 2 and all(path.exists() for path in report.pictures)


def test_a_tethered_phone_is_a_warning_with_what_to_do(tmp_path):
    report = check_with(tmp_path, [page_frame()], paths={"tethering": 1})
    text = "\n".join(report.lines())
    assert report.ready
    assert (
        "[WARN] phone tethering (USB or Bluetooth): "
        "another way onto the internet next to the hall network (1)." in text
    )
    assert "unplug the phone or the cable" in text
    assert "No second way onto the internet" in "\n".join(check_with(tmp_path, [page_frame()]).lines())


def test_a_ready_laptop_with_the_halls_bundle(tmp_path):
    bundle = AgentBundle("Hall A", ("https://10.0.0.1:8443",), "", "")
    report = check_with(tmp_path, [page_frame()], bundle=bundle)
    assert report.ready and report.lines()[-1] == "READY: this laptop can take the exam."
    assert any("as the bundle of Hall A asks" in line for line in report.lines())


def test_a_grab_that_fails_is_a_failure_with_what_to_do(tmp_path):
    def no_grab():
        raise CaptureUnavailable("Invigil cannot find your desktop session")

    report = run_check(
        grab_factory=no_grab,
        out_dir=tmp_path / "out",
        display_server="none",
        categories={},
        agent_version="0.1.0",
        bundle=None,
        list_processes=list,
        list_interfaces=dict,
    )
    assert not report.ready and "cannot find your desktop session" in "\n".join(report.lines())
    assert not (tmp_path / "out").exists()


def test_blank_means_one_gray_level_nearly_everywhere():
    levels = quantise_gray4(render_page(("Question 1", "Answer")))
    assert not is_blank(levels)
    assert is_blank(np.zeros((100, 100), np.uint8))
    nearly = np.zeros((100, 100), np.uint8)
    nearly[0, :20] = 9  # a cursor on a black screen
    assert is_blank(nearly)


class Calls:
    """Injected CoreGraphics calls: ``granted`` says what preflight answers; counts the prompts."""

    def __init__(self, granted: bool, granted_on_request: bool = False) -> None:
        self.granted, self.granted_on_request, self.requests = granted, granted_on_request, 0

    def calls(self) -> ScreenCaptureCalls:
        def request() -> bool:
            self.requests += 1
            self.granted = self.granted or self.granted_on_request
            return self.granted

        return ScreenCaptureCalls(preflight=lambda: self.granted, request=request)


def test_screen_recording_already_allowed_asks_nothing():
    calls = Calls(granted=True)
    ensure_screen_recording(calls.calls())
    assert calls.requests == 0
    assert check_finding(calls.calls()).level == "ok"


def test_screen_recording_missing_prompts_once_and_says_where_to_allow_it():
    calls = Calls(granted=False)
    with pytest.raises(ScreenRecordingDenied, match="Privacy & Security > Screen Recording"):
        ensure_screen_recording(calls.calls())
    assert calls.requests == 1
    finding = check_finding(calls.calls())
    assert finding.level == "fail" and "quit Invigil and start it again" in finding.fix


def test_screen_recording_granted_at_the_prompt_goes_on():
    calls = Calls(granted=False, granted_on_request=True)
    ensure_screen_recording(calls.calls())
    assert calls.requests == 1


def test_off_macos_the_coregraphics_calls_do_not_load():
    finding = check_finding()  # the real loader, on this Linux machine
    assert finding.level == "fail" and "cannot be loaded" in finding.fix


def test_on_macos_a_grab_without_permission_or_blank_is_reported_and_never_stored(tmp_path):
    from agent.capture import CaptureLoop
    from agent.macos_permission import BlankScreen, PermissionGuardedGrab
    from agent.spool import Spool

    wallpaper = MonitorFrame(0, 0, 0, 1280, 800, np.full((800, 1280, 3), 90, np.uint8))
    screens = [[page_frame()], [wallpaper]]
    calls = Calls(granted=True)
    guarded = PermissionGuardedGrab(lambda: screens[0], calls.calls())
    spool = Spool(tmp_path / "spool")
    loop = CaptureLoop(guarded, spool)
    loop.tick("start")
    stored = len(spool)
    assert stored >= 1
    screens[0] = [wallpaper]  # what macOS hands over once the permission is gone
    calls.granted = False
    with pytest.raises(ScreenRecordingDenied):
        loop.tick()
    calls.granted = True
    with pytest.raises(BlankScreen, match="Screen 1 came out blank"):
        loop.tick()
    assert len(spool) == stored  # nothing of either grab was stored
