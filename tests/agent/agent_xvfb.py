"""Xvfb for the agent's tests: a real X server on a free display number (Xvfb picks it, -displayfd).

A plain module, like agent_screens.py: the tests import ``xvfb`` and use it as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def xvfb(size: str = "1280x800x24") -> Iterator[str]:
    """Start Xvfb, yield its display name ":N", stop it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package: xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        assert number.strip().isdigit(), f"Xvfb did not report a display (exit code {proc.poll()})"
        yield f":{int(number)}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def set_background(display: str, colour: str) -> None:
    """Paint the root window (what mss sees where no window is) with ``xsetroot``."""
    if shutil.which("xsetroot") is None:
        pytest.skip("xsetroot is not installed (Debian package: x11-xserver-utils)")
    subprocess.run(
        ["xsetroot", "-solid", colour], env={**os.environ, "DISPLAY": display}, check=True, timeout=10
    )
