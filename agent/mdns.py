"""mDNS on the agent side: announce this laptop to the hall, and find the hall's API.

``AgentAnnouncer`` publishes ``_invigil-agent._tcp`` (agent id, protocol, state) so the invigilator's seat
view fills in; ``find_hall`` / ``browse_halls`` look for ``_invigil._tcp``. mDNS only says where to look: the
agent still verifies the server's certificate against the hall CA in its bundle, and enrolment works without
mDNS (docs/discovery.md).

Nothing personal is announced: no student number, no name, not the laptop's hostname (which often carries
the owner's name); the mDNS host name is derived from the random agent id.
Imports invigil, stdlib and zeroconf only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from zeroconf import ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

from invigil import protocol as p

log = logging.getLogger(__name__)

AGENT_STATES = p.AGENT_STATES
MDNS_GROUP = "224.0.0.251"
#: Once a hall has answered, stop browsing after this long without a new one.
SETTLE_S = 1.0


def multicast_source_address() -> str:
    """The IPv4 address the OS would send mDNS from (the interface of the multicast route).

    A UDP ``connect`` sends nothing; it only asks the kernel to choose a route. Raises ``OSError`` when
    there is no route for multicast (then pass the addresses explicitly).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((MDNS_GROUP, 5353))
        return str(probe.getsockname()[0])


def _interfaces(addresses: list[str] | None) -> list[str]:
    chosen = list(addresses) if addresses else [multicast_source_address()]
    for text in chosen:
        ip = ipaddress.ip_address(text)
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"{text} is not an interface address")
    return chosen


def agent_txt(agent_id: str, state: str, protocol: int = p.PROTOCOL_VERSION) -> dict[str, str]:
    """The agent's TXT record (pure): its random id, protocol version and state, nothing else."""
    if not p.ID_RE.match(agent_id):
        raise ValueError(f"agent id {agent_id!r} is not a valid id")
    if state not in AGENT_STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(AGENT_STATES)}")
    return {"agent": agent_id, "proto": str(protocol), "state": state}


@dataclass(frozen=True)
class HallAnnouncement:
    """A hall as its mDNS record describes it; ``fingerprint`` is the SHA-256 of its certificate (or "")."""

    addresses: tuple[str, ...]
    port: int
    hall_id: str
    exam_id: str
    protocol: int | None
    fingerprint: str
    name: str = ""

    @property
    def compatible(self) -> bool:
        return self.protocol == p.PROTOCOL_VERSION


def parse_hall_txt(
    props: Mapping[str, str | None], addresses: tuple[str, ...], srv_port: int | None, name: str = ""
) -> HallAnnouncement:
    """Read a hall's TXT record (pure); raises ``ValueError`` naming the bad field."""
    hall_id = props.get("hall") or ""
    if not hall_id:
        raise ValueError("hall record has no hall id")
    port_text = props.get("port") or ""
    port = int(port_text) if port_text.isdigit() else srv_port
    if port is None or not 0 < port < 65536:
        raise ValueError(f"hall record has no usable port ({port_text!r})")
    proto_text = props.get("proto") or ""
    fingerprint = (props.get("fp") or "").lower()
    if fingerprint and not p.SHA256_RE.match(fingerprint):
        raise ValueError(f"certificate fingerprint {fingerprint!r} is not a SHA-256 hex digest")
    return HallAnnouncement(
        addresses=addresses,
        port=port,
        hall_id=hall_id,
        exam_id=props.get("exam") or "",
        protocol=int(proto_text) if proto_text.isdigit() else None,
        fingerprint=fingerprint,
        name=name,
    )


class AgentAnnouncer:
    """Announces this agent on ``_invigil-agent._tcp``: ``update_state()`` as it enrols, captures and leaves,
    ``close()`` on exit (goodbye records: the seat shows "gone")."""

    def __init__(
        self, agent_id: str, *, state: str = "waiting", addresses: list[str] | None = None, port: int = 9
    ) -> None:
        self.addresses = _interfaces(addresses)
        self.zc = Zeroconf(interfaces=self.addresses)
        self.agent_id = agent_id
        self.state = state
        self._instance = f"invigil-agent-{agent_id}"[:63]
        self._port = port
        self._closed = False
        self.info = self._service_info(state)
        self.zc.register_service(self.info, allow_name_change=True)

    def _service_info(self, state: str) -> ServiceInfo:
        # port: agents serve nothing; SRV needs one, 9 is "discard".
        return ServiceInfo(
            p.AGENT_SERVICE,
            f"{self._instance}.{p.AGENT_SERVICE}",
            port=self._port,
            properties=agent_txt(self.agent_id, state),
            server=f"{self._instance}.local.",
            parsed_addresses=self.addresses,
        )

    def update_state(self, state: str) -> None:
        """Re-announce with a new state ("waiting", "enrolled", "capturing", "leaving")."""
        info = self._service_info(state)
        info.name = self.info.name  # keep the name zeroconf settled on at registration
        self.zc.update_service(info)
        self.info, self.state = info, state

    def close(self) -> None:
        """Withdraw the announcement and close the sockets; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.zc.unregister_service(self.info)
        self.zc.close()


@dataclass
class HallSearch:
    """What a browse found: halls this agent can talk to, and halls speaking another protocol version
    (so the agent can tell the student plainly to update, instead of silently finding nothing)."""

    compatible: list[HallAnnouncement] = field(default_factory=list)
    incompatible: list[HallAnnouncement] = field(default_factory=list)


class _HallCollector(ServiceListener):
    """Collects resolved hall records; its callbacks run in zeroconf's browser thread."""

    def __init__(self) -> None:
        self.found: dict[str, HallAnnouncement] = {}
        self.last_change = 0.0
        self.changed = threading.Condition()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = zc.get_service_info(type_, name, timeout=2000)
        if info is None:
            return
        try:
            hall = parse_hall_txt(
                info.decoded_properties, tuple(info.parsed_addresses()), info.port, name=name
            )
        except ValueError as exc:
            log.warning("ignoring hall announcement %s: %s", name, exc)
            return
        with self.changed:
            self.found[name] = hall
            self.last_change = time.monotonic()
            self.changed.notify_all()

    update_service = add_service

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        with self.changed:
            self.found.pop(name, None)
            self.changed.notify_all()


def browse_halls(timeout_s: float, addresses: list[str] | None = None) -> HallSearch:
    """Browse ``_invigil._tcp`` for at most ``timeout_s``; returns early ``SETTLE_S`` after the last new hall.

    ``addresses`` picks the interfaces to ask on (default: the one the OS routes multicast through).
    """
    collector = _HallCollector()
    zc = Zeroconf(interfaces=_interfaces(addresses))
    try:
        browser = ServiceBrowser(zc, p.HALL_SERVICE, listener=collector)
        deadline = time.monotonic() + timeout_s
        with collector.changed:
            while (now := time.monotonic()) < deadline:
                if collector.found and now - collector.last_change >= SETTLE_S:
                    break
                collector.changed.wait(min(deadline - now, 0.1))
            halls = sorted(collector.found.values(), key=lambda hall: (hall.hall_id, hall.name))
        browser.cancel()
    finally:
        zc.close()
    search = HallSearch()
    for hall in halls:
        if hall.compatible:
            search.compatible.append(hall)
        else:
            log.warning(
                "hall %s speaks protocol %s, this agent %s", hall.hall_id, hall.protocol, p.PROTOCOL_VERSION
            )
            search.incompatible.append(hall)
    return search


def find_hall(timeout_s: float = 5.0, addresses: list[str] | None = None) -> list[HallAnnouncement]:
    """Halls this agent can enrol with (same protocol version); others are logged, see ``browse_halls``."""
    return browse_halls(timeout_s, addresses).compatible
