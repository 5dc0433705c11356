"""The Windows installer run for real under Wine on Xvfb: a silent per-user install, the practice check, the
installed agent joining a real hall server over TLS with a bundle, mss's Windows (GDI) grabber capturing
Wine's desktop with a notepad window, the focused app and title from user32, tile updates through the spool,
leaving, and an uninstall after which the prefix holds no file the installer or the agent left.

Wine stands in for Windows and is no proof of it: docs/agent.md lists what ran here and what awaits a real
Windows. ``make agent-windows`` builds the installer (``make test`` does so first).
"""

from __future__ import annotations

import re
import time

import mss
import numpy as np
import pytest
from agent_wine import REPO, wait_for, windows_path, wine_prefix
from PIL import Image
from test_agent_cli import query, set_interval

from agent.encode import quantise_gray4
from provisioning import bundle as provisioning_bundle
from provisioning import certs

from agent_xvfb import set_background, xvfb
from support import LiveServer, stored_screen

VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
INSTALLER = REPO / "dist" / f"invigil-agent-{VERSION}-setup.exe"
KNOWN_TEXT = "Invigil under Wine: the quick brown fox 4711"


def hall_server(exam, tmp_path) -> tuple[LiveServer, str]:
    """The hall server over TLS and the bundle that pins its CA."""
    ca = certs.make_ca("Hall W")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    certs.write_pair(certs.make_server_cert(ca, ["localhost", "127.0.0.1"]), cert, key)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    server = LiveServer(exam.data_dir, ("--tls-cert", str(cert), "--tls-key", str(key)))
    server.url = server.url.replace("http://", "https://")
    server.start(verify=str(tmp_path / "ca.pem"))
    bundle = tmp_path / "hall.json"
    bundle.write_text(
        provisioning_bundle.dumps(provisioning_bundle.build_bundle("Hall W", ca.cert_pem, [server.url]))
    )
    return server, windows_path(bundle)


def x11_levels(display: str) -> np.ndarray:
    """What the X server shows now, in the gray levels the agent stores (the host's own mss, on X11)."""
    with mss.MSS(display=display) as grabber:
        shot = np.asarray(grabber.grab(grabber.monitors[1]))
    return quantise_gray4(shot[:, :, 2::-1])


def test_the_installed_agent_captures_wine_and_leaves_nothing(exam, tmp_path):
    if not INSTALLER.exists():
        pytest.fail(f"{INSTALLER.name} is missing: run make agent-windows")
    set_interval(exam, 1)
    server, bundle = hall_server(exam, tmp_path)
    known = tmp_path / "known.txt"
    known.write_text(KNOWN_TEXT + "\r\n")
    other = tmp_path / "other.txt"
    other.write_text("A second window\r\n" * 20)
    try:
        with xvfb("1024x768x24") as display, wine_prefix(tmp_path / "prefix", display) as wine:
            set_background(display, "#205080")
            before = wine.files()
            install = wine.run([windows_path(INSTALLER), "/S"])
            assert install.returncode == 0, install.stderr[-2000:]
            wine.wait_idle()
            home = wine.local_app_data / "Programs" / "Invigil"
            python = windows_path(home / "Python" / "python.exe")
            assert (home / "uninstall.exe").exists() and (home / "Invigil.launch.py").exists()
            assert {p.name for p in (wine.start_menu / "Invigil").iterdir()} == {
                "Invigil.lnk",
                "Invigil practice check.lnk",
            }

            notepad = wine.popen(["notepad.exe", windows_path(known)])
            time.sleep(3)  # the window maps and takes the focus

            checked = wine.run(
                [
                    python,
                    windows_path(home / "Invigil_practice_check.launch.py"),
                    "--bundle",
                    bundle,
                    "--out",
                    windows_path(tmp_path / "check"),
                ],
            )
            assert "[ OK ] Screen capture: windows" in checked.stdout, checked.stdout + checked.stderr[-3000:]
            assert (tmp_path / "check" / "screen-1.png").exists()
            assert "Hall W" in checked.stdout

            started = time.monotonic()
            agent = wine.popen(
                [
                    python,
                    windows_path(home / "Invigil.launch.py"),
                    "--bundle",
                    bundle,
                    "--student-number",
                    "s0002",
                    "--join-code",
                    exam.join_code,
                    "--no-gui",
                    "--no-mdns",
                    "--duration",
                    "14",
                    "-v",
                ]
            )
            wait_for(lambda: query(exam, "SELECT 1 FROM capture WHERE changed = 1"), 90, "the first capture")
            joined_after = time.monotonic() - started
            state_dir = wine.local_app_data / "Invigil"
            assert state_dir.exists()
            time.sleep(2)
            second = wine.popen(["notepad.exe", windows_path(other)])  # the screen and the focus change
            time.sleep(4)
            screen_now = x11_levels(display)
            out, err = agent.communicate(timeout=120)
            assert agent.returncode == 0, err[-3000:]
            assert "Everything was sent" in out
            assert not state_dir.exists()  # leaving deleted the agent's state under %LOCALAPPDATA%

            captures = query(
                exam,
                "SELECT session_id, capture_id, base_capture_id, unseal(exam_id, focused_app), "
                "unseal(exam_id, window_title) FROM capture WHERE changed = 1 ORDER BY rowid",
            )
            assert len(captures) >= 2
            assert any(row[2] for row in captures), "no tile update was sent"
            focus = {(row[3], row[4]) for row in captures}
            assert {("notepad", f"{known.name} - Notepad"), ("notepad", f"{other.name} - Notepad")} <= focus
            os_row = query(exam, "SELECT os, agent_version FROM agent_session")[0]
            assert os_row[0].startswith("Windows 10.0") and os_row[1] == VERSION
            # The last stored screen (a tile update put back together) is what the X server showed.
            session_id, capture_id = captures[-1][0], captures[-1][1]
            stored = np.asarray(stored_screen(exam, session_id, capture_id)) // 17
            Image.fromarray((stored * 17).astype(np.uint8)).save(tmp_path / "stored.png")
            Image.fromarray((screen_now * 17).astype(np.uint8)).save(tmp_path / "x11.png")
            assert stored.shape == screen_now.shape
            assert (stored == screen_now).mean() > 0.99
            background = np.bincount(screen_now.ravel()).argmax()
            assert (stored != background).mean() > 0.02  # the notepad window, not just the background

            notepad.kill()
            second.kill()
            wine.run(["taskkill", "/f", "/im", "notepad.exe"])
            uninstall = wine.run([windows_path(home / "uninstall.exe"), "/S"])
            assert uninstall.returncode == 0
            wait_for(lambda: not home.exists(), 60, "the uninstaller")
            wine.wait_idle()
            # NSIS's uninstaller runs from a copy in %TEMP% that Windows deletes at the next restart
            # (MoveFileEx on reboot); wineboot -r is Wine's restart.
            wine.run(["wineboot", "-r"])
            wine.wait_idle()
            after = wine.files()
            user_reg = (wine.prefix / "user.reg").read_text(errors="replace")
    finally:
        server.stop()
    left = after - before
    # The one thing left is the empty folder NSIS ran its uninstaller from: Wine's restart deleted the
    # program in it but not the folder (no file: every file of the prefix is as before the install).
    assert {name for name in left if not re.fullmatch(r"users/[^/]+/Temp/~nsu\d*\.tmp", name)} == set(), left
    assert not [name for name in left if (tmp_path / "prefix" / "drive_c" / name).is_file()]
    assert "Invigil" not in user_reg
    print(f"wine: start to joined {joined_after:.1f} s")
