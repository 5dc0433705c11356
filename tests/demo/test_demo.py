"""`make demo` end to end: provisioning, server, proxy, three real agents on Xvfb; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hall_server.store import db

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_a_hall_and_stops_cleanly_on_ctrl_c(tmp_path):
    data = tmp_path / "demo-data"
    env = {**os.environ, "INVIGIL_DEMO_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    deadline = time.monotonic() + 120
    assert demo.stdout is not None
    for line in demo.stdout:
        output.append(line)
        if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
            break
    assert "Dashboard:" in "".join(output), "".join(output)
    time.sleep(30)  # captures every 5 s; the blocked-site attempt starts after 15 s
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=90)
    assert demo.returncode == 0, "".join(output) + rest

    store = db.connect(data)
    per_student = dict(
        store.execute(
            "SELECT r.student_number, SUM(c.changed) FROM agent_session s "
            "JOIN roster r ON r.id = s.roster_id JOIN capture c ON c.session_id = s.id "
            "GROUP BY r.student_number"
        ).fetchall()
    )
    assert set(per_student) == {"s1001", "s1002", "s1003"} and all(n >= 1 for n in per_student.values())
    blocked = store.execute(
        "SELECT r.student_number FROM observation o JOIN agent_session s ON s.id = o.session_id "
        "JOIN roster r ON r.id = s.roster_id WHERE o.kind = 'blocked_site'"
    ).fetchall()
    assert {row[0] for row in blocked} == {"s1003"}
    states = [row[0] for row in store.execute("SELECT state FROM agent_session").fetchall()]
    assert states == ["left", "left", "left"]
    leftovers = [p for p in (data / "demo").iterdir() if p.name.startswith("agent-") and p.is_dir()]
    assert leftovers == []  # each agent deleted its state when it left
