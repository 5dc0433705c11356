"""Grabbing: the real mss on a real X server (Xvfb), and frames that refuse pixels of the wrong shape."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from agent.grab import MonitorFrame, MssGrabber, frame_from_bgra

from agent_xvfb import xvfb


@pytest.fixture
def xvfb_display() -> Iterator[str]:
    """A real X server on a free display number (tests/agent/agent_xvfb.py)."""
    with xvfb() as display:
        yield display


def test_mss_grabs_what_the_x_server_shows(xvfb_display):
    tkinter = pytest.importorskip("tkinter")
    env = {**os.environ, "DISPLAY": xvfb_display}
    background = (0x33, 0x66, 0xCC)  # asymmetric, so swapped channels would show
    if shutil.which("xsetroot"):
        subprocess.run(["xsetroot", "-solid", "#3366cc"], env=env, check=True, timeout=10)
    root = tkinter.Tk(screenName=xvfb_display)
    try:
        if not shutil.which("xsetroot"):
            root.configure(background="#3366cc")
            root.geometry("1280x800+0+0")
            root.overrideredirect(True)
            window = tkinter.Toplevel(root)
        else:
            root.withdraw()
            window = tkinter.Toplevel(root)
        window.overrideredirect(True)  # no window manager on Xvfb: place it exactly
        window.geometry("200x120+100+50")
        canvas = tkinter.Canvas(window, width=200, height=120, background="#ff8000", highlightthickness=0)
        canvas.pack()
        canvas.create_rectangle(50, 30, 150, 90, fill="#000000", outline="")
        for _ in range(20):
            root.update()
            time.sleep(0.02)
        with MssGrabber(display=xvfb_display) as grab:
            frames = grab()
            again = grab()
    finally:
        root.destroy()
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.index, frame.left, frame.top, frame.width, frame.height) == (0, 0, 0, 1280, 800)
    assert frame.rgb.shape == (800, 1280, 3) and frame.rgb.flags["C_CONTIGUOUS"]
    assert frame.bgrx is not None and frame.bgrx.shape == (800, 1280, 4)  # the grabbed bytes, unconverted
    # The capture loop keeps the previous grab to compare: each grab must bring its own buffer.
    assert again[0].bgrx is not None and not np.shares_memory(frame.bgrx, again[0].bgrx)
    assert np.array_equal(frame.bgrx, again[0].bgrx)
    assert tuple(frame.rgb[700, 1000]) == background
    assert tuple(frame.rgb[55, 105]) == (0xFF, 0x80, 0x00)  # inside the window, outside the box
    assert tuple(frame.rgb[110, 200]) == (0, 0, 0)  # the black box at window (50..150, 30..90)
    window_area = np.all(frame.rgb[50:170, 100:300] != background, axis=2)
    assert window_area.all() and np.all(frame.rgb[50:170, 300:320] == background)


def test_frame_from_bgra_reorders_channels():
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 255
    frame = frame_from_bgra(2, {"left": -1920, "top": 0, "width": 3, "height": 2}, bgra)
    assert (frame.index, frame.left, frame.width, frame.height) == (2, -1920, 3, 2)
    assert frame.rgb[0, 0].tolist() == [30, 20, 10]


def test_monitor_frame_refuses_pixels_of_the_wrong_shape():
    with pytest.raises(ValueError, match="do not match"):
        MonitorFrame(0, 0, 0, 4, 3, np.zeros((4, 3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        MonitorFrame(0, 0, 0, 4, 3, bgrx=np.zeros((3, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="not both or neither"):
        MonitorFrame(0, 0, 0, 4, 3)
    with pytest.raises(ValueError, match="not both or neither"):
        MonitorFrame(0, 0, 0, 4, 3, np.zeros((3, 4, 3), np.uint8), bgrx=np.zeros((3, 4, 4), np.uint8))
