"""Wine for the agent's Windows tests: a prefix made once (cached under .cache/wine), copied per test.

Debian's ``wine64`` keeps its loader in Wine's library directory, not on PATH. The cached prefix is set to
Windows 10 (``winecfg /v win10``), and Wine's crash debugger is switched off so that a crashing program
ends instead of waiting for a debugger nobody attaches. Wine stands in for Windows; it is not Windows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WINE_DIR = Path("/usr/lib/wine")
WINE = WINE_DIR / "wine64"
WINESERVER = WINE_DIR / "wineserver"
CACHE = REPO / ".cache" / "wine"
USER = "root" if os.getuid() == 0 else os.environ.get("USER", "user")


def windows_path(path: Path) -> str:
    """Wine maps the Linux root to drive Z:."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


class WinePrefix:
    """One Wine prefix on one X display; ``run``/``popen`` start Windows programs in it."""

    def __init__(self, prefix: Path, display: str) -> None:
        self.prefix = prefix
        self.display = display
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")},
            "WINEPREFIX": str(prefix),
            "WINEDEBUG": "-all",
            "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono or Gecko installer dialogs
            "DISPLAY": display,
        }

    @property
    def drive_c(self) -> Path:
        return self.prefix / "drive_c"

    @property
    def profile(self) -> Path:
        return self.drive_c / "users" / USER

    @property
    def local_app_data(self) -> Path:
        return self.profile / "AppData" / "Local"

    @property
    def start_menu(self) -> Path:
        return self.profile / "AppData" / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs"

    def run(self, args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return subprocess.run(
            [str(WINE), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
        options = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            **kwargs,
        }
        return subprocess.Popen([str(WINE), *args], env=self.env, text=True, **options)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until every Windows process of the prefix ended (``wineserver -w``)."""
        subprocess.run([str(WINESERVER), "-w"], env=self.env, timeout=timeout, check=False)

    def kill(self) -> None:
        subprocess.run([str(WINESERVER), "-k"], env=self.env, timeout=30, check=False)

    def files(self) -> set[str]:
        """Every file and folder of the prefix's C: drive, relative (dosdevices' links to / left out)."""
        return {str(path.relative_to(self.drive_c)) for path in self.drive_c.rglob("*")}


def _make_template(template: Path, display: str) -> None:
    building = template.with_name(template.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    wine = WinePrefix(building, display)
    wine.run(["wineboot", "-i"], timeout=300)
    wine.run(["winecfg", "/v", "win10"])
    wine.run(
        [
            "reg",
            "delete",
            r"HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug",
            "/v",
            "Debugger",
            "/f",
        ]
    )
    wine.kill()
    building.rename(template)


@contextlib.contextmanager
def wine_prefix(target: Path, display: str) -> Iterator[WinePrefix]:
    """A fresh copy of the cached prefix at ``target``, its wineserver stopped on exit."""
    if not WINE.exists():
        pytest.skip("Wine is not installed (Debian package: wine64)")
    version = subprocess.run(
        [str(WINE), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    template = CACHE / f"prefix-{version}"
    CACHE.mkdir(parents=True, exist_ok=True)
    if not template.exists():
        _make_template(template, display)
    shutil.copytree(template, target, symlinks=True)
    wine = WinePrefix(target, display)
    try:
        yield wine
    finally:
        wine.kill()


def wait_for(condition, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)
    return result
