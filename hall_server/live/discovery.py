"""mDNS discovery on the hall side: advertise the hall, watch which agents announce themselves.

``HallAdvertiser`` publishes ``_invigil._tcp`` so agents know where the API is; ``AgentBrowser`` follows
``_invigil-agent._tcp`` so the dashboard can show seats before (or without) enrolment traffic. Both are
started by the server's process that owns the hall interface (``serve``) and by tests. mDNS is a hint
only: the roster works from enrolment alone when campus networks filter multicast (docs/discovery.md).

Zeroconf is bound to the addresses the caller passes (the hall interface), never to every interface.
Imports invigil, stdlib and zeroconf only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from zeroconf import ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

from invigil import protocol as p
from invigil.timeutil import to_wire, utc_now

log = logging.getLogger(__name__)

AGENT_STATES = p.AGENT_STATES
RESOLVE_TIMEOUT_MS = 3000


def cert_fingerprint(der: bytes | None) -> str:
    """SHA-256 (hex) of the server certificate in DER form, or "" without one."""
    return hashlib.sha256(der).hexdigest() if der else ""


def check_addresses(addresses: list[str]) -> list[str]:
    """Validate the addresses zeroconf binds to: at least one, each a concrete unicast IP (never 0.0.0.0)."""
    if not addresses:
        raise ValueError("mDNS needs the hall interface's addresses; none given")
    for text in addresses:
        ip = ipaddress.ip_address(text)
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"{text} is not an interface address")
    return list(addresses)


def hall_txt(
    hall_id: str | int, exam_id: str | int | None, api_port: int, fingerprint: str, protocol: int
) -> dict[str, str]:
    """The hall's TXT record (pure). Ids only: no names, no student data."""
    return {
        "hall": str(hall_id),
        "exam": "" if exam_id is None else str(exam_id),
        "proto": str(protocol),
        "fp": fingerprint,
        "port": str(api_port),
    }


@dataclass(frozen=True)
class AgentTxt:
    agent_id: str
    protocol: int | None
    state: str


def parse_agent_txt(props: Mapping[str, str | None]) -> AgentTxt:
    """Read an agent's TXT record (pure); raises ``ValueError`` naming the bad field.

    An unknown protocol is kept (as ``None`` when unreadable) so the dashboard can name an old agent.
    """
    agent_id = props.get("agent") or ""
    if not p.ID_RE.match(agent_id):
        raise ValueError(f"agent id {agent_id!r} is not a valid id")
    proto_text = props.get("proto") or ""
    protocol = int(proto_text) if proto_text.isdigit() else None
    state = props.get("state") or ""
    if state not in AGENT_STATES:
        raise ValueError(f"agent state {state!r} is not one of {', '.join(AGENT_STATES)}")
    return AgentTxt(agent_id, protocol, state)


class HallAdvertiser:
    """Publishes this hall on ``_invigil._tcp``. Started by ``serve`` (and tests); ``close()`` withdraws it.

    Pass ``zeroconf`` to share one instance with an ``AgentBrowser``; it is then left open on close.
    """

    def __init__(
        self,
        *,
        addresses: list[str],
        hall_id: str | int,
        exam_id: str | int | None,
        api_port: int,
        fingerprint: str = "",
        protocol: int = p.PROTOCOL_VERSION,
        zeroconf: Zeroconf | None = None,
    ) -> None:
        self.addresses = check_addresses(addresses)
        self._owns_zc = zeroconf is None
        self.zc = zeroconf or Zeroconf(interfaces=self.addresses)
        self._hall_id = hall_id
        self._api_port = api_port
        self._protocol = protocol
        self._instance = f"invigil-hall-{hall_id}"
        self._closed = False
        self.info = self._service_info(exam_id, fingerprint)
        self.zc.register_service(self.info, allow_name_change=True)

    def _service_info(self, exam_id: str | int | None, fingerprint: str) -> ServiceInfo:
        return ServiceInfo(
            p.HALL_SERVICE,
            f"{self._instance}.{p.HALL_SERVICE}",
            port=self._api_port,
            properties=hall_txt(self._hall_id, exam_id, self._api_port, fingerprint, self._protocol),
            server=f"{self._instance}.local.",
            parsed_addresses=self.addresses,
        )

    def update(self, *, exam_id: str | int | None, fingerprint: str = "") -> None:
        """Re-announce with another exam or certificate; called when the hall's running exam changes."""
        info = self._service_info(exam_id, fingerprint)
        info.name = self.info.name  # keep the name zeroconf settled on at registration
        self.zc.update_service(info)
        self.info = info

    def close(self) -> None:
        """Send goodbye records (agents forget the hall at once) and release the sockets we opened."""
        if self._closed:
            return
        self._closed = True
        self.zc.unregister_service(self.info)
        if self._owns_zc:
            self.zc.close()


@dataclass(frozen=True)
class SeenAgent:
    """One agent as discovery knows it; ``gone`` once it withdrew (or its records expired)."""

    agent_id: str
    addresses: tuple[str, ...]
    protocol: int | None
    state: str
    first_seen: datetime
    last_seen: datetime
    gone: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the dashboard's seat events."""
        times = {"first_seen": to_wire(self.first_seen), "last_seen": to_wire(self.last_seen)}
        return {**asdict(self), "addresses": list(self.addresses), **times}


class AgentBrowser(ServiceListener):
    """Follows ``_invigil-agent._tcp`` and keeps a thread-safe table of agents, keyed by agent id.

    ``on_change(agent)`` is called (from zeroconf's browser thread) for every appearance, state change and
    removal; the dashboard publishes seat changes from it and must not block long.
    """

    def __init__(
        self,
        *,
        addresses: list[str] | None = None,
        zeroconf: Zeroconf | None = None,
        on_change: Callable[[SeenAgent], None] | None = None,
    ) -> None:
        self._owns_zc = zeroconf is None
        self.zc = zeroconf or Zeroconf(interfaces=check_addresses(addresses or []))
        self.on_change = on_change
        self._lock = threading.Lock()
        self._agents: dict[str, SeenAgent] = {}
        self._names: dict[str, str] = {}  # mDNS instance name -> agent id
        self._started_at = utc_now()
        self._last_seen_at: datetime | None = None
        self._browser: ServiceBrowser | None = ServiceBrowser(self.zc, p.AGENT_SERVICE, listener=self)

    def snapshot(self) -> list[SeenAgent]:
        """Every agent seen since start, gone ones included."""
        with self._lock:
            return sorted(self._agents.values(), key=lambda agent: agent.agent_id)

    def discovery_health(self) -> dict[str, Any]:
        """What the dashboard shows about discovery itself ("sees nothing: mDNS filtered here?")."""
        with self._lock:
            present = sum(1 for agent in self._agents.values() if not agent.gone)
            return {
                "browsing": self._browser is not None,
                "agents_seen": len(self._agents),
                "agents_present": present,
                "started_at": to_wire(self._started_at),
                "last_seen_at": to_wire(self._last_seen_at) if self._last_seen_at else None,
            }

    # ServiceListener hooks: called by zeroconf's ServiceBrowser thread.
    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._resolve(zc, type_, name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._resolve(zc, type_, name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        now = utc_now()
        with self._lock:
            agent_id = self._names.pop(name, None)
            old = self._agents.get(agent_id) if agent_id else None
            if old is None:
                return
            agent = self._agents[old.agent_id] = replace(old, gone=True, last_seen=now)
        self._notify(agent)

    def _resolve(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = zc.get_service_info(type_, name, timeout=RESOLVE_TIMEOUT_MS)
        if info is None:
            log.info("agent %s announced but did not resolve", name)
            return
        try:
            txt = parse_agent_txt(info.decoded_properties)
        except ValueError as exc:
            log.warning("ignoring agent announcement %s: %s", name, exc)
            return
        now = utc_now()
        addresses = tuple(info.parsed_addresses())
        with self._lock:
            old = self._agents.get(txt.agent_id)
            fresh = SeenAgent(txt.agent_id, addresses, txt.protocol, txt.state, now, now)
            if old is not None:
                fresh = replace(fresh, first_seen=old.first_seen)
            changed = old is None or replace(old, last_seen=now) != fresh
            self._agents[txt.agent_id] = fresh
            self._names[name] = txt.agent_id
            self._last_seen_at = now
        if changed:
            self._notify(fresh)

    def _notify(self, agent: SeenAgent) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(agent)
        except Exception:  # a dashboard bug must not stop discovery
            log.exception("on_change failed for agent %s", agent.agent_id)

    def close(self) -> None:
        """Stop browsing; closes zeroconf only if this browser opened it."""
        with self._lock:
            browser, self._browser = self._browser, None
        if browser is not None:
            browser.cancel()
        if self._owns_zc:
            self.zc.close()
