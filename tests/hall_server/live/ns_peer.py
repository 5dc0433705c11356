"""One side of the mDNS test, run inside a network namespace by test_mdns.py (``ip netns exec``).

Speaks JSON lines: writes events to stdout, reads one command per line on stdin.

    ns_peer.py hall  IP HALL_ID EXAM_ID PORT FINGERPRINT   (also advertises an incompatible hall "old-hall")
    ns_peer.py agent IP AGENT_ID
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

_out = threading.Lock()


def emit(**event: object) -> None:
    with _out:
        print(json.dumps(event), flush=True)


def run_hall(ip: str, hall_id: str, exam_id: str, port: int, fingerprint: str) -> None:
    from zeroconf import Zeroconf

    from hall_server.live.discovery import AgentBrowser, HallAdvertiser

    zc = Zeroconf(interfaces=[ip])
    hall = HallAdvertiser(
        addresses=[ip], hall_id=hall_id, exam_id=exam_id, api_port=port, fingerprint=fingerprint, zeroconf=zc
    )
    old = HallAdvertiser(
        addresses=[ip], hall_id="old-hall", exam_id="1", api_port=port, protocol=0, zeroconf=zc
    )
    browser = AgentBrowser(zeroconf=zc, on_change=lambda agent: emit(event="agent", **agent.to_json()))
    emit(event="ready")
    for line in sys.stdin:
        command = line.split()
        if command == ["health"]:
            emit(event="health", **browser.discovery_health())
        elif command == ["snapshot"]:
            emit(event="snapshot", agents=[agent.to_json() for agent in browser.snapshot()])
        elif command[:1] == ["exam"]:
            hall.update(exam_id=command[1], fingerprint=fingerprint)
            emit(event="exam", exam_id=command[1])
        elif command == ["quit"]:
            break
    browser.close()
    old.close()
    hall.close()
    zc.close()
    emit(event="closed")


def run_agent(ip: str, agent_id: str) -> None:
    from agent.mdns import AgentAnnouncer, browse_halls, multicast_source_address

    announcer = AgentAnnouncer(agent_id, addresses=[ip])
    emit(event="ready", source=multicast_source_address())
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["find"]:
            search = browse_halls(float(command[1]), addresses=[ip])
            emit(
                event="halls",
                compatible=[dataclasses.asdict(hall) for hall in search.compatible],
                incompatible=[dataclasses.asdict(hall) for hall in search.incompatible],
            )
        elif command[:1] == ["state"]:
            announcer.update_state(command[1])
            emit(event="state", state=command[1])
        elif command == ["close"]:
            break
    announcer.close()
    emit(event="closed")


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "hall":
        run_hall(args[0], args[1], args[2], int(args[3]), args[4] if len(args) > 4 else "")
    else:
        run_agent(args[0], args[1])
