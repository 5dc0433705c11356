"""``invigil-agent`` end to end: the real command on Xvfb against the real hall server, and under strace."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hall_server.store import db
from provisioning import bundle as provisioning_bundle
from provisioning import certs

from agent_xvfb import set_background, xvfb
from support import BIN, LiveServer


def query(exam, sql: str, *args) -> list[tuple]:
    """Read the hall's store as the server does (personal columns open with ``unseal``)."""
    store = db.connect(exam.data_dir)
    try:
        return store.execute(sql, args).fetchall()
    finally:
        store.close()


def set_interval(exam, seconds: int) -> None:
    with sqlite3.connect(exam.data_dir / "invigil.db") as db:
        db.execute("UPDATE exam SET capture_interval_s = ?", (seconds,))


def agent_args(exam, state_dir: Path, *extra: str, student: str = "s0002") -> list[str]:
    return [
        "--student-number",
        student,
        "--join-code",
        exam.join_code,
        "--state-dir",
        str(state_dir),
        *extra,
    ]


def run_agent(args: list[str], display: str | None, timeout: float = 60, prefix: tuple[str, ...] = ()):
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "DISPLAY")}
    if display:
        env["DISPLAY"] = display
    return subprocess.run(
        [*prefix, str(BIN / "invigil-agent"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_agent_joins_captures_a_changing_screen_and_leaves_nothing(exam, live_server, tmp_path):
    set_interval(exam, 1)
    state_dir = tmp_path / "state"
    with xvfb("1280x800x24") as display:
        set_background(display, "#c03030")
        env = {**os.environ, "DISPLAY": display}
        env.pop("WAYLAND_DISPLAY", None)
        args = agent_args(exam, state_dir, "--server", live_server.url, "--insecure-dev", "--no-gui")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", *args, "--no-mdns", "--duration", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not query(exam, "SELECT 1 FROM capture") and time.monotonic() < deadline:
            time.sleep(0.1)
        set_background(display, "#3030c0")  # the screen changes while the agent runs
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Recorded: your screens every 1 s; no camera, no microphone, no keystrokes." in out
    assert "Everything was sent" in out
    images = query(
        exam, "SELECT sha256, width, height, trigger FROM capture WHERE changed = 1 ORDER BY rowid"
    )
    assert len({row[0] for row in images}) >= 2  # the red screen and the blue one
    assert {(row[1], row[2]) for row in images} == {(1280, 800)}
    assert images[0][3] == "start"
    assert query(exam, "SELECT count(*) FROM capture WHERE changed = 0")[0][0] >= 1
    kinds = {row[0] for row in query(exam, "SELECT kind FROM device_event")}
    assert {"agent_started", "monitors", "left"} <= kinds
    assert not state_dir.exists()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (Debian package: strace)")
def test_the_agent_opens_no_camera_microphone_keyboard_or_audio_server(exam, live_server, tmp_path):
    set_interval(exam, 1)
    trace = tmp_path / "trace.txt"
    with xvfb() as display:
        set_background(display, "#808080")
        result = run_agent(
            # The full agent: Tk window (if Tk works), mDNS announcement, device checks, focus probe.
            agent_args(
                exam, tmp_path / "state", "--server", live_server.url, "--insecure-dev", "--duration", "4"
            ),
            display,
            prefix=("strace", "-f", "-qq", "-e", "trace=open,openat,connect", "-o", str(trace)),
        )
    assert result.returncode == 0, result.stderr
    assert query(exam, "SELECT count(*) FROM capture WHERE changed = 1")[0][0] >= 1
    text = trace.read_text()
    assert f"htons({live_server.port})" in text  # the trace saw the uploads: it covers a real session
    opened = re.findall(r'open(?:at)?\([^"]*"([^"]+)"', text)
    assert opened, "strace recorded no open calls"
    forbidden = [
        path for path in opened if path.startswith(("/dev/video", "/dev/snd", "/dev/input", "/dev/dsp"))
    ]
    assert forbidden == []
    sockets = re.findall(r'sun_path="?([^",}]+)', text)
    audio = [path for path in sockets if re.search(r"pulse|pipewire|jack|esound|\.esd|/snd/", path)]
    assert audio == []


def test_a_wayland_session_is_refused_with_what_to_do(tmp_path):
    env = {**os.environ, "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    result = subprocess.run(
        [str(BIN / "invigil-agent"), "--insecure-dev"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "Wayland" in result.stderr and "Xorg" in result.stderr and "log out" in result.stderr


def test_without_a_bundle_the_agent_refuses(exam, tmp_path):
    result = run_agent(agent_args(exam, tmp_path / "state", "--server", "https://127.0.0.1:9"), ":0")
    assert result.returncode == 1 and "--bundle" in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_wrong_join_code_is_told_and_leaves_nothing(exam, live_server, tmp_path):
    args = agent_args(exam, tmp_path / "state", "--server", live_server.url, "--insecure-dev", "--no-gui")
    args[args.index(exam.join_code)] = "WRONG234"
    result = run_agent([*args, "--no-mdns"], ":0")
    assert result.returncode == 1 and "did not let you join" in result.stderr
    assert not (tmp_path / "state").exists()


def test_the_bundle_pins_the_hall_ca(exam, tmp_path):
    ca = certs.make_ca("Hall A")
    pair = certs.make_server_cert(ca, ["localhost", "127.0.0.1"])
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    certs.write_pair(pair, cert, key)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    server = LiveServer(exam.data_dir, ("--tls-cert", str(cert), "--tls-key", str(key)))
    server.url = server.url.replace("http://", "https://")
    server.start(verify=str(tmp_path / "ca.pem"))
    try:
        good = tmp_path / "hall.json"
        good.write_text(
            provisioning_bundle.dumps(provisioning_bundle.build_bundle("Hall A", ca.cert_pem, [server.url]))
        )
        impostor = tmp_path / "impostor.json"
        other_ca = certs.make_ca("Somebody else").cert_pem
        impostor.write_text(
            provisioning_bundle.dumps(provisioning_bundle.build_bundle("Hall A", other_ca, [server.url]))
        )
        with xvfb() as display:
            joined = run_agent(
                agent_args(
                    exam, tmp_path / "s1", "--bundle", str(good), "--no-gui", "--no-mdns", "--duration", "1"
                ),
                display,
            )
            refused = run_agent(
                agent_args(exam, tmp_path / "s2", "--bundle", str(impostor), "--no-gui", "--no-mdns"), display
            )
    finally:
        server.stop()
    assert joined.returncode == 0, joined.stderr
    assert "Invigil: Hall A - Linear Algebra - student s0002" in joined.stdout
    assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()
