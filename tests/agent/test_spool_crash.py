"""Nothing readable after a crash: the real agent on Xvfb, killed mid-exam while the hall server is down,
leaves only sealed spool records; joining again gets the key back and drains them; a spool nobody can open
any more is deleted at the next start."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from test_agent_cli import agent_args, query, set_interval

from agent.capture import new_record_id
from agent.spool import MAGIC, Spool, key_from_wire
from agent.transport import HallClient
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now

from agent_xvfb import set_background, xvfb
from support import LiveServer

#: What an image, or the text of a window title, looks like on disk when it is not sealed.
PLAINTEXT_MARKS = (b"\x89PNG", b"IHDR", b"\xff\xd8\xff", b"WEBP", b"JFIF", b"capture_id", b"window_title")


def start_agent(display: str, args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env["DISPLAY"] = display
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def image_records(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*-image.rec")) if spool_dir.exists() else []


def test_an_agent_killed_mid_exam_leaves_nothing_readable_and_drains_after_joining_again(exam, tmp_path):
    set_interval(exam, 1)
    state_dir = tmp_path / "state"
    spool_dir = state_dir / "spool"
    server = LiveServer(exam.data_dir).start()
    try:
        with xvfb("640x400x24") as display:
            set_background(display, "#c03030")
            args = agent_args(
                exam, state_dir, "--server", server.url, "--insecure-dev", "--no-gui", "--no-mdns"
            )
            agent = start_agent(display, args)
            wait_for(lambda: query(exam, "SELECT 1 FROM capture"), 30, "the agent's first capture")
            server.kill()  # the hall's network is gone: from now on everything stays in the spool
            for colour in ("#30c030", "#3030c0", "#c0c030"):
                set_background(display, colour)
                time.sleep(1.2)
            wait_for(lambda: len(image_records(spool_dir)) >= 2, 20, "two spooled screens")
            agent.send_signal(signal.SIGKILL)  # a crash: no leave, no clean-up
            agent.communicate(timeout=10)

            files = [path for path in state_dir.rglob("*") if path.is_file()]
            assert image_records(spool_dir)
            for path in files:
                data = path.read_bytes()
                assert not [mark for mark in PLAINTEXT_MARKS if mark in data], path.name
                if path.suffix == ".rec":
                    assert data.startswith(MAGIC)
            spooled = len(list(spool_dir.glob("*.rec")))

            server = LiveServer(exam.data_dir).start()  # the network is back
            # The key is the hall's to give: the same student joining again gets it, and it opens the images.
            answer = HallClient(server.url, timeout_s=5).enrol(
                Enrolment("s0002", exam.join_code, new_record_id(), utc_now())
            )
            peeked = Spool(spool_dir, key=key_from_wire(answer["spool_key"])).peek()
            assert peeked is not None and len(peeked.body) > 0
            if peeked.kind == "image":
                Image.open(io.BytesIO(peeked.body)).verify()
            before = query(exam, "SELECT count(*) FROM capture WHERE changed = 1")[0][0]
            args = agent_args(
                exam, state_dir, "--server", server.url, "--insecure-dev", "--no-gui", "--no-mdns"
            )
            rejoined = start_agent(display, [*args, "--duration", "3", "-v"])
            out, err = rejoined.communicate(timeout=90)
    finally:
        server.stop()
    assert rejoined.returncode == 0, err
    assert "Everything was sent" in out
    assert "never joined again" not in err  # its old spool opened with the key it got back
    after = query(exam, "SELECT count(*) FROM capture WHERE changed = 1")[0][0]
    assert after >= before + 2  # the spooled screens of the crashed session arrived
    assert spooled >= 2 and not state_dir.exists()


def test_a_spool_no_enrolment_can_open_is_deleted_at_the_next_start(exam, live_server, tmp_path):
    set_interval(exam, 1)
    state_dir = tmp_path / "state"
    orphan_id = new_record_id()
    orphan = Spool(state_dir / "spool")  # sealed with a key that died with its process
    for n in range(3):
        orphan.append({"kind": "device_event", "event": {"id": f"{orphan_id[:-1]}{n}", "kind": "monitors"}})
    del orphan
    with xvfb("640x400x24") as display:
        args = agent_args(exam, state_dir, "--server", live_server.url, "--insecure-dev", "--no-gui")
        out, err = start_agent(display, [*args, "--no-mdns", "--duration", "2", "-v"]).communicate(timeout=60)
    assert "deleted 3 records a session that never joined again left behind" in err
    assert "Everything was sent" in out
    ids = {row[0] for row in query(exam, "SELECT event_id FROM device_event")}
    assert not {f"{orphan_id[:-1]}{n}" for n in range(3)} & ids
    assert not state_dir.exists()
