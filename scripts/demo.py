"""`make demo`: a demo hall with a running exam, the hall server, and three agents sending screens.

Until the agent CLI lands (issue 3) the three agents are driven here with the agent's own transport, so what
reaches the server is exactly what a real agent sends. Stops cleanly with Ctrl-C.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from PIL import Image, ImageDraw

from agent.transport import HallClient, Refused, Unreachable
from hall_server import crypto, db, exams
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat, Unchanged
from invigil.timeutil import utc_now

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "demo-data"
BIN = Path(sys.executable).parent
STUDENTS = [("s1001", "Ada Jansen"), ("s1002", "Bram de Vries"), ("s1003", "Chen Li")]


def provision() -> str:
    shutil.rmtree(DATA, ignore_errors=True)
    db.migrate(DATA)
    store = db.connect(DATA)
    master = crypto.load_or_create_master_key(DATA)
    hall = exams.create_hall(store, "Demo Hall")
    start = utc_now() - timedelta(minutes=5)
    exam = exams.create_exam(
        store,
        master,
        hall_id=hall,
        title="Demo: Statistics 1",
        starts_at=start,
        ends_at=start + timedelta(hours=3),
        capture_interval_s=5,
    )
    exams.add_roster(store, exam, [exams.RosterEntry(number, name) for number, name in STUDENTS])
    code = store.execute("SELECT join_code FROM exam WHERE id = ?", [exam]).fetchone()[0]
    store.close()
    return str(code)


def screen(name: str, tick: int) -> bytes:
    image = Image.new("L", (1280, 800), 245)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1280, 40), fill=60)
    draw.text((12, 12), f"Exam portal - {name}", fill=255)
    for line in range(12 + tick % 8):
        draw.text(
            (40, 80 + 22 * line), f"Answer {line + 1}: the mean of the sample is {line * 3.5:.1f}", fill=20
        )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def run_agent(url: str, code: str, number: str, name: str, stop: threading.Event) -> None:
    client = HallClient(url)
    client.enrol(Enrolment(number, code, uuid.uuid4().hex, utc_now(), "demo", sys.platform))
    client.post_device_events([DeviceEvent(uuid.uuid4().hex, "agent_started", utc_now(), {"demo": True})])
    last_id, tick = "", 0
    while not stop.is_set():
        try:
            if tick % 3 == 2 and last_id:
                client.put_unchanged(uuid.uuid4().hex, Unchanged(0, utc_now(), last_id))
            else:
                body = screen(name, tick)
                last_id = uuid.uuid4().hex
                meta = CaptureMeta(
                    0, utc_now(), hashlib.sha256(body).hexdigest(), 1280, 800, window_title="Exam portal"
                )
                client.put_capture(last_id, meta, body, "image/png")
            client.heartbeat(Heartbeat(utc_now()))
        except (Refused, Unreachable) as exc:
            print(f"[{number}] {exc}", file=sys.stderr)
        tick += 1
        stop.wait(5)


def main() -> int:
    code = provision()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "invigil-server"), "serve", "--data-dir", str(DATA), "--bind", f"127.0.0.1:{port}"],
        start_new_session=True,
    )
    stop = threading.Event()
    try:
        for _ in range(100):
            try:
                HallClient(url).request("GET", "/health")
                break
            except Unreachable:
                time.sleep(0.1)
        agents = [
            threading.Thread(target=run_agent, args=(url, code, n, name, stop), daemon=True)
            for n, name in STUDENTS
        ]
        for agent in agents:
            agent.start()
        print(
            f"\nInvigil demo running.\n  hall server:  {url}/api/v1/health\n"
            f"  API document: {url}/api/v1/openapi.json\n  join code:    {code}\n  data:         {DATA}\n"
            "Three agents send a screen every 5 s. Ctrl-C stops.\n"
        )
        store = db.connect(DATA)
        while True:
            time.sleep(10)
            captures, unchanged = store.execute(
                "SELECT SUM(changed), SUM(1 - changed) FROM capture"
            ).fetchone()
            print(f"stored: {captures or 0} screens, {unchanged or 0} unchanged records", flush=True)
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        stop.set()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
