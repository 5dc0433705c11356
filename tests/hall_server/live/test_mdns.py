"""mDNS discovery: pure TXT parsing, and real multicast between a hall and an agent.

The multicast test builds two network namespaces joined by a veth pair on a private subnet that exists only
inside them, and runs tests/hall_server/live/ns_peer.py in each; nothing leaves those namespaces.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import mdns as agent_mdns
from agent.mdns import HallAnnouncement, agent_txt, parse_hall_txt
from hall_server.live import discovery as hall_discovery
from hall_server.live.discovery import AgentTxt, cert_fingerprint, check_addresses, hall_txt, parse_agent_txt
from invigil.protocol import PROTOCOL_VERSION

PEER = Path(__file__).with_name("ns_peer.py")
FP = cert_fingerprint(b"not really DER, but bytes all the same")


# --- pure TXT records: each side builds what the other side parses ------------------------------------


def test_hall_txt_round_trips_through_the_agent_parser() -> None:
    txt = hall_txt(hall_id=3, exam_id=17, api_port=8443, fingerprint=FP, protocol=PROTOCOL_VERSION)
    hall = parse_hall_txt(txt, ("10.0.0.1",), srv_port=8443, name="invigil-hall-3")
    assert hall == HallAnnouncement(("10.0.0.1",), 8443, "3", "17", PROTOCOL_VERSION, FP, "invigil-hall-3")
    assert hall.compatible


def test_agent_txt_round_trips_through_the_hall_parser() -> None:
    txt = agent_txt("agent-Abc_12345", "capturing")
    assert set(txt) == {"agent", "proto", "state"}  # nothing personal fits in here
    assert parse_agent_txt(txt) == AgentTxt("agent-Abc_12345", PROTOCOL_VERSION, "capturing")


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"exam": "1", "proto": "1", "port": "443"}, "no hall id"),
        ({"hall": "1", "proto": "1", "port": "0"}, "no usable port"),
        ({"hall": "1", "proto": "1", "port": "x"}, "no usable port"),
        ({"hall": "1", "proto": "1", "port": "443", "fp": "abc"}, "not a SHA-256"),
    ],
)
def test_bad_hall_txt_is_refused_by_name(props: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hall_txt(props, (), srv_port=None)


def test_hall_txt_falls_back_to_srv_port_and_keeps_an_unknown_protocol() -> None:
    hall = parse_hall_txt({"hall": "A", "proto": "two", "exam": None}, (), srv_port=443)
    assert (hall.port, hall.protocol, hall.exam_id, hall.compatible) == (443, None, "", False)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"agent": "short", "proto": "1", "state": "waiting"}, "not a valid id"),
        ({"agent": "../../etc/pw", "proto": "1", "state": "waiting"}, "not a valid id"),
        ({"agent": "agent-0001", "proto": "1", "state": "sleeping"}, "not one of"),
        ({"agent": None, "state": "waiting"}, "not a valid id"),
    ],
)
def test_bad_agent_txt_is_refused_by_name(props: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_agent_txt(props)


def test_both_sides_agree_on_the_agent_states() -> None:
    assert agent_mdns.AGENT_STATES == hall_discovery.AGENT_STATES


def test_old_agent_protocol_is_kept_for_the_dashboard() -> None:
    assert parse_agent_txt({"agent": "agent-0001", "proto": "", "state": "waiting"}).protocol is None


@pytest.mark.parametrize("addresses", [[], ["0.0.0.0"], ["224.0.0.251"], ["not-an-ip"]])
def test_zeroconf_is_never_bound_to_all_or_no_interfaces(addresses: list[str]) -> None:
    with pytest.raises(ValueError):
        check_addresses(addresses)


def test_fingerprint_is_sha256_of_der_or_empty() -> None:
    assert len(FP) == 64 and cert_fingerprint(None) == "" and cert_fingerprint(b"") == ""


# --- real multicast between two network namespaces ---------------------------------------------------


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Pair:
    hall_ns: str
    agent_ns: str
    hall_ip: str
    agent_ip: str


@pytest.fixture
def netns_pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    hall_ns, agent_ns = f"inv-hall-{tag}", f"inv-agent-{tag}"
    made = subprocess.run(["ip", "netns", "add", hall_ns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create network namespaces here (need root): {made.stderr.strip()}")
    subnet = f"10.213.{secrets.randbelow(250) + 1}"
    pair = Pair(hall_ns, agent_ns, f"{subnet}.1", f"{subnet}.2")
    try:
        sh("ip", "netns", "add", agent_ns)
        # The veth pair is created inside the hall namespace, its peer moved straight into the agent's:
        # neither end ever exists in the root namespace.
        sh("ip", "-n", hall_ns, "link", "add", "vh", "type", "veth", "peer", "name", "va", "netns", agent_ns)
        for ns, dev, ip in ((hall_ns, "vh", pair.hall_ip), (agent_ns, "va", pair.agent_ip)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "multicast", "on", "up")
            sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield pair
    finally:
        for ns in (hall_ns, agent_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Peer:
    """An ns_peer.py process inside a namespace; its JSON-line events arrive on a queue."""

    def __init__(self, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PEER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []  # every event, so a wait never loses an earlier one
        self.taken: set[int] = set()
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.arrived:
                self.events.append(json.loads(line))
                self.arrived.notify_all()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_for(self, timeout_s: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first event not yet returned whose fields equal ``match``."""
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                for index, event in enumerate(self.events):
                    if index not in self.taken and all(event.get(k) == v for k, v in match.items()):
                        self.taken.add(index)
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or not self.reader.is_alive():  # timed out, or the peer exited and all is read
                    break
                self.arrived.wait(min(left, 0.2))
        stderr = "" if self.proc.poll() is None else (self.proc.stderr.read() if self.proc.stderr else "")
        raise AssertionError(f"no event {match} within {timeout_s}s; peer exit={self.proc.poll()} {stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


def test_agent_finds_hall_and_hall_follows_agent_over_real_multicast(netns_pair: Pair) -> None:
    peers: list[Peer] = []
    try:
        hall = Peer(netns_pair.hall_ns, "hall", netns_pair.hall_ip, "7", "42", "8443", FP)
        peers.append(hall)
        hall.wait_for(event="ready")
        agent = Peer(netns_pair.agent_ns, "agent", netns_pair.agent_ip, "agent-7f3a9c21")
        peers.append(agent)
        ready = agent.wait_for(event="ready")
        assert ready["source"] == netns_pair.agent_ip  # the helper picks the veth, the only route

        agent.send("find 8")
        halls = agent.wait_for(event="halls", timeout_s=12)
        assert [
            (h["hall_id"], h["exam_id"], h["port"], h["protocol"], h["fingerprint"])
            for h in halls["compatible"]
        ] == [("7", "42", 8443, PROTOCOL_VERSION, FP)]
        assert halls["compatible"][0]["addresses"] == [netns_pair.hall_ip]
        assert [(h["hall_id"], h["protocol"]) for h in halls["incompatible"]] == [("old-hall", 0)]

        hall.send("exam 43")  # the hall moves on to the next exam: agents browsing now see it
        hall.wait_for(event="exam")
        agent.send("find 8")
        halls = agent.wait_for(event="halls", timeout_s=12)
        assert [(h["hall_id"], h["exam_id"]) for h in halls["compatible"]] == [("7", "43")]

        seen = hall.wait_for(event="agent", agent_id="agent-7f3a9c21")
        assert (seen["state"], seen["addresses"], seen["protocol"], seen["gone"]) == (
            "waiting",
            [netns_pair.agent_ip],
            PROTOCOL_VERSION,
            False,
        )

        agent.send("state capturing")
        hall.wait_for(event="agent", agent_id="agent-7f3a9c21", state="capturing", gone=False)

        agent.send("close")
        agent.wait_for(event="closed")
        gone = hall.wait_for(event="agent", agent_id="agent-7f3a9c21", gone=True)
        assert gone["state"] == "capturing" and gone["first_seen"] == seen["first_seen"]

        hall.send("health")
        health = hall.wait_for(event="health")
        assert health["browsing"] is True
        assert (health["agents_seen"], health["agents_present"]) == (1, 0)
        assert health["last_seen_at"] is not None

        hall.send("quit")
        hall.wait_for(event="closed")
    finally:
        for peer in peers:
            peer.stop()


def test_served_hall_server_advertises_itself_and_sees_agents(netns_pair: Pair, tmp_path: Path) -> None:
    """The real `invigil-server serve` with INVIGIL_MDNS_ADDRESSES, inside the hall namespace."""
    from support import free_port, provision_exam

    setup = provision_exam(tmp_path / "data")
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns_pair.hall_ns,
                "env",
                f"INVIGIL_MDNS_ADDRESSES={netns_pair.hall_ip}",
                str(Path(sys.executable).parent / "invigil-server"),
                "serve",
                "--data-dir",
                str(setup.data_dir),
                "--bind",
                f"{netns_pair.hall_ip}:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    agent = None
    try:
        deadline = time.monotonic() + 20
        while "mDNS: advertising" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        agent = Peer(netns_pair.agent_ns, "agent", netns_pair.agent_ip, "agent-served01")
        agent.wait_for(event="ready")
        agent.send("find 8")
        halls = agent.wait_for(event="halls", timeout_s=12)
        assert [(h["hall_id"], h["exam_id"], h["port"]) for h in halls["compatible"]] == [
            (str(setup.hall_id), str(setup.exam_id), port)
        ]
        seen = "mDNS: agent agent-served01 present"
        deadline = time.monotonic() + 15
        while seen not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seen in log_path.read_text(), log_path.read_text()[-2000:]
    finally:
        if agent is not None:
            agent.stop()
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
