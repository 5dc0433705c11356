"""Test support shared by every test folder: provisioning an exam, small real images, and the real hall
server under gunicorn on a free loopback port (datasette's ds_localhost_http_server pattern).

Import it as ``from support import ...`` (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import requests
from PIL import Image

from hall_server.store import crypto, db, exams
from invigil.timeutil import utc_now

BIN = Path(sys.executable).parent


@dataclass
class ExamSetup:
    data_dir: Path
    exam_id: int
    hall_id: int
    join_code: str
    students: list[str]


def provision_exam(
    data_dir: Path,
    *,
    students: int = 5,
    join_code: str = "HALLA234",
    title: str = "Linear Algebra",
    hall: str = "Hall A",
    starts_in_min: int = -10,
    duration_min: int = 180,
) -> ExamSetup:
    """Create a hall, an exam running now and a roster s0001..sNNNN, through the store library."""
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        master = crypto.load_or_create_master_key(data_dir)
        hall_id = exams.create_hall(store, hall)
        start = utc_now() + timedelta(minutes=starts_in_min)
        exam_id = exams.create_exam(
            store,
            master,
            hall_id=hall_id,
            title=title,
            starts_at=start,
            ends_at=start + timedelta(minutes=duration_min),
            join_code=join_code,
        )
        numbers = [f"s{i:04d}" for i in range(1, students + 1)]
        exams.add_roster(store, exam_id, [exams.RosterEntry(n, f"Student {n}") for n in numbers])
    finally:
        store.close()
    return ExamSetup(data_dir, exam_id, hall_id, join_code, numbers)


def stored_screen(setup: ExamSetup, session_id: int, capture_id: str) -> Image.Image:
    """The whole screen the hall server holds for a capture (a tile update put back together), in gray."""
    from hall_server.store.screens import Screens

    store = db.connect(setup.data_dir)
    try:
        body = Screens.of_data_dir(setup.data_dir).exam(store, setup.exam_id).screen(session_id, capture_id)
    finally:
        store.close()
    return Image.open(io.BytesIO(body)).convert("L")


def png_bytes(width: int = 320, height: int = 200, seed: int = 0) -> bytes:
    """A small real PNG whose content depends on ``seed``."""
    image = Image.new("L", (width, height), 255)
    pixels = image.load()
    for x in range(0, width, 7):
        pixels[x, (seed * 13 + x) % height] = seed % 256  # type: ignore[index]
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``invigil-server serve`` as its own process group on a free loopback port."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout_s: float = 20.0, verify: str | bool = True) -> LiveServer:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [
                    str(BIN / "invigil-server"),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited: {self.log_path.read_text()[-2000:]}"
            try:
                if requests.get(f"{self.url}/api/v1/health", timeout=5, verify=verify).status_code == 200:
                    return self
            except requests.RequestException:  # not up yet, or slow to answer its first request
                time.sleep(0.1)
        raise AssertionError(f"server did not answer in {timeout_s} s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die mid-request, as in a crash."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
