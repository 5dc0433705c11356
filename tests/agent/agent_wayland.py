"""A real, private Wayland desktop with a screenshot portal, for the agent's portal test.

A plain module, like agent_xvfb.py: ``wayland_portal_desktop()`` starts a headless sway (wlroots) whose
outputs show known solid colours, a private session bus (``dbus-daemon --session`` on a socket in a fresh
XDG_RUNTIME_DIR) and pipewire; the bus starts xdg-desktop-portal and its backends (wlr for Screenshot, gtk for
Access, which xdg-desktop-portal 1.16 needs before it offers Screenshot) on the first call, which the desktop
makes itself before it is handed out (like a session whose portal started at login). Nothing touches a
real display or a network interface: local processes and unix sockets only. Everything is stopped and the
runtime directory removed on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.portal import screenshot_portal_version

LIBEXEC = Path("/usr/libexec")
#: program -> Debian package, for the skip message (INVIGIL_NO_SKIPS turns the skip into a failure).
NEEDED = {
    "sway": "sway",
    "swaybg": "swaybg",
    "grim": "grim",
    "dbus-daemon": "dbus-daemon",
    "pipewire": "pipewire-bin",
    "setpriv": "util-linux",
    str(LIBEXEC / "xdg-desktop-portal"): "xdg-desktop-portal",
    str(LIBEXEC / "xdg-desktop-portal-wlr"): "xdg-desktop-portal-wlr",
    str(LIBEXEC / "xdg-desktop-portal-gtk"): "xdg-desktop-portal-gtk",
}


@dataclass(frozen=True)
class WaylandDesktop:
    """Where the private desktop lives; ``outputs`` is (x, y, width, height, "#rrggbb") per output."""

    runtime_dir: Path
    wayland_display: str
    bus_address: str
    outputs: tuple[tuple[int, int, int, int, str], ...]

    @property
    def environ(self) -> dict[str, str]:
        """What a student's Wayland session would have in its environment."""
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "WAYLAND_DISPLAY": self.wayland_display,
            "XDG_SESSION_TYPE": "wayland",
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
        }


def _wait_for(what: str, found, procs: list[subprocess.Popen], timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        for proc in procs:
            assert proc.poll() is None, f"{proc.args[0]} exited ({proc.returncode}) before {what}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process and everything it started in its process group (D-Bus activated portals too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.2)  # let the group's other members go
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-2000:]
    return ""


#: Two outputs of different sizes side by side, each a solid colour with unequal channels.
TWO_OUTPUTS = ((0, 0, 640, 480, "#123456"), (640, 0, 320, 240, "#c08040"))


@contextlib.contextmanager
def wayland_portal_desktop(
    outputs: tuple[tuple[int, int, int, int, str], ...] = TWO_OUTPUTS,
) -> Iterator[WaylandDesktop]:
    """Start sway (headless ``outputs``), a session bus and pipewire; yield where they are; stop them.

    One such desktop at a time on a machine (a lock file, waited for): xdg-desktop-portal-wlr writes every
    screenshot to the same /tmp/out.png, and two of these desktops starting together sometimes left one
    portal without its Screenshot interface.
    """
    for program, package in NEEDED.items():
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (Debian package: {package})")
    with open(Path(tempfile.gettempdir()) / "invigil-wayland-portal.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _desktop(outputs) as desktop:
            yield desktop


@contextlib.contextmanager
def _desktop(outputs: tuple[tuple[int, int, int, int, str], ...]) -> Iterator[WaylandDesktop]:
    # Not under pytest's tmp_path, whose parent is 0700: sway, running as another user, must reach it.
    runtime_dir = Path(tempfile.mkdtemp(prefix="invigil-wayland-"))
    logs = runtime_dir / "logs"
    logs.mkdir()
    config = runtime_dir / "sway.conf"
    config.write_text(
        "xwayland disable\n"
        + "".join(
            f"output HEADLESS-{n} resolution {w}x{h} position {x} {y} bg {colour} solid_color\n"
            for n, (x, y, w, h, colour) in enumerate(outputs, start=1)
        )
    )
    # sway refuses to run as root (it could not drop privileges for good): run it as nobody, who then
    # owns the runtime directory; root's bus, portals and test still reach its socket.
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (runtime_dir, config):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(runtime_dir),
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "LANG": "C.UTF-8",
    }
    sway_env = {
        **base,
        "WLR_BACKENDS": "headless",
        "WLR_HEADLESS_OUTPUTS": str(len(outputs)),
        "WLR_LIBINPUT_NO_DEVICES": "1",
        "WLR_RENDERER": "pixman",  # no GPU here
    }
    procs: list[subprocess.Popen] = []
    try:
        with open(logs / "sway.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [*as_user, "sway", "--config", str(config)],
                    env=sway_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        display = _wait_for(
            "Wayland socket",
            lambda: next((p.name for p in runtime_dir.glob("wayland-*") if p.is_socket()), None),
            procs,
        )
        session_env = {
            **base,
            "WAYLAND_DISPLAY": display,
            "XDG_CURRENT_DESKTOP": "sway",  # picks xdg-desktop-portal-wlr
            "XDG_SESSION_TYPE": "wayland",
            "NO_AT_BRIDGE": "1",  # no accessibility bus from the gtk backend
            "GTK_A11Y": "none",
            "GSETTINGS_BACKEND": "memory",
        }
        # xdg-desktop-portal-wlr will not start without pipewire (it serves ScreenCast too).
        with open(logs / "pipewire.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    ["pipewire"],
                    env=session_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        _wait_for("pipewire socket", (runtime_dir / "pipewire-0").is_socket, procs)
        # Under load, xdg-desktop-portal sometimes comes up without Screenshot: its backend,
        # xdg-desktop-portal-wlr, never answers the first call (seen about once in ten starts with another
        # test run busy on the machine). A student's session starts its portal once at login; here a fresh
        # bus, with fresh portals, is started again, at most three times in all.
        for attempt in range(1, 4):
            bus_socket = runtime_dir / f"bus-{attempt}"
            # The bus's own environment is what it gives the portals it starts.
            with open(logs / "dbus.log", "ab") as log:
                bus = subprocess.Popen(
                    [
                        "dbus-daemon",
                        "--session",
                        "--nofork",
                        "--nopidfile",
                        f"--address=unix:path={bus_socket}",
                    ],
                    env=session_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            _wait_for("session bus", bus_socket.is_socket, [*procs, bus])
            address = f"unix:path={bus_socket}"
            if screenshot_portal_version({"DBUS_SESSION_BUS_ADDRESS": address}, timeout_s=10) is not None:
                procs.append(bus)
                break
            print(f"attempt {attempt}: the portal came up without Screenshot; starting a fresh bus")
            _stop(bus)
        else:
            raise AssertionError("xdg-desktop-portal never offered Screenshot (see dbus.log below)")
        yield WaylandDesktop(runtime_dir, display, address, outputs)
    except BaseException:
        for name in ("sway", "dbus", "pipewire"):
            print(f"--- {name}.log\n{_log_tail(logs / f'{name}.log')}")
        raise
    finally:
        for proc in reversed(procs):
            _stop(proc)
        doc = str(runtime_dir / "doc")  # the document portal's FUSE mount goes with its process
        with contextlib.suppress(AssertionError):
            _wait_for("unmount of doc/", lambda: doc not in Path("/proc/mounts").read_text(), [], 5)
        shutil.rmtree(runtime_dir, ignore_errors=True)
