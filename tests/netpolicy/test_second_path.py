"""The real agent in a laptop's network namespace, on the hall network, while a phone is tethered next to
it: the hall server hears of a second network path (a category, never the interface's name), raises a live
observation, and the review queue shows the span until the phone is unplugged."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from hall_server.review import queue
from hall_server.store import db

from hallnet import BIN, NamespacedServer, hall_net, sh, wait_for
from support import provision_exam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_xvfb import xvfb  # noqa: E402

PORT = 18080
PATH_EVENTS = (
    "SELECT unseal(exam_id, detail) FROM device_event WHERE kind = 'network_interface' ORDER BY received_at"
)


def rows(data_dir: Path, sql: str) -> list[tuple]:
    store = db.connect(data_dir)
    try:
        return store.execute(sql).fetchall()
    finally:
        store.close()


def test_a_phone_tethered_next_to_the_hall_network_is_reported_and_queued(tmp_path, monkeypatch):
    exam = provision_exam(tmp_path / "data")
    with db.connect(exam.data_dir) as store:
        store.execute("UPDATE exam SET capture_interval_s = 1")
    phone = f"inv-pho-{secrets.token_hex(3)}"
    with hall_net() as hn, xvfb("1024x768x24") as display:
        NamespacedServer(hn, exam.data_dir, PORT).start()
        monkeypatch.setenv("DISPLAY", display)
        state_dir = tmp_path / "state"
        agent = hn.start(
            hn.laptop_ns,
            [str(BIN / "invigil-agent"), "--server", f"http://{hn.appliance_ip}:{PORT}", "--insecure-dev",
             "--no-gui", "--no-mdns", "--duration", "14", "--student-number", "s0002",
             "--join-code", exam.join_code, "--state-dir", str(state_dir)],
            tmp_path / "agent.log",
        )  # fmt: skip
        try:
            assert wait_for(lambda: rows(exam.data_dir, "SELECT 1 FROM capture"), 30), (
                tmp_path / "agent.log"
            ).read_text()
            # The phone: a veth pair whose far end sits in the phone's own namespace, with the address a
            # phone's USB tethering hands out. It has a way out; the hall server is not reached through it.
            sh("ip", "netns", "add", phone)
            sh("ip", "-n", hn.laptop_ns, "link", "add", "usb0", "type", "veth", "peer", "name", "rndis",
               "netns", phone)  # fmt: skip
            sh("ip", "-n", phone, "addr", "add", "192.168.42.1/24", "dev", "rndis")
            sh("ip", "-n", phone, "link", "set", "rndis", "up")
            sh("ip", "-n", hn.laptop_ns, "addr", "add", "192.168.42.129/24", "dev", "usb0")
            sh("ip", "-n", hn.laptop_ns, "link", "set", "usb0", "up")

            def path_events() -> list[dict]:
                return [json.loads(row[0]) for row in rows(exam.data_dir, PATH_EVENTS)]

            assert wait_for(lambda: any(e.get("state") == "present" for e in path_events()), 20), (
                path_events()
            )
            sh("ip", "-n", hn.laptop_ns, "link", "del", "usb0")  # unplugged
            assert wait_for(lambda: any(e.get("state") == "ended" for e in path_events()), 20), path_events()
            agent.wait(40)
        finally:
            subprocess.run(["ip", "netns", "del", phone], capture_output=True)
        log = (tmp_path / "agent.log").read_text()
        assert agent.returncode == 0, log
    events = path_events()
    assert events == [
        {"category": "tethering", "count": 1, "state": "present"},
        {"category": "tethering", "count": 0, "state": "ended"},
    ]
    assert "usb0" not in json.dumps(events) and "rndis" not in json.dumps(events)
    observations = rows(exam.data_dir, "SELECT kind, unseal(exam_id, detail) FROM observation")
    assert ("second_network_path", json.dumps({"category": "tethering"})) in [
        (kind, json.dumps(json.loads(detail))) for kind, detail in observations
    ]
    store = db.connect(exam.data_dir)
    try:
        built = queue.build(store, exam.exam_id)
    finally:
        store.close()
    # A moment at its report (the screen when the phone came), lasting until it was unplugged.
    found = [m for m in built.moments if "second_network_path" in m.moment.kinds]
    assert [m.student_number for m in found] == ["s0002"], built.moments
    assert found[0].moment.detail["category"] == "tethering" and found[0].moment.detail["seconds"] >= 1
    assert found[0].moment.capture_ids
