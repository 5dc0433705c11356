"""The sentinel: passive DNS and TLS ClientHello watching on the hall interface (docs/sentinel.md).

It reports, as site events attributed to the laptop's address, DNS queries for hosts outside the policy
(source ``dns``) and traffic that went around the proxy (source ``sentinel``: the hall server raises a
``bypass_site`` observation): other resolvers, DNS-over-HTTPS/-TLS, TLS without a server name (direct IP
connections), TLS to hosts outside the policy, and VPN ports. A kernel BPF filter lets only DNS queries,
TLS ClientHellos, SYNs to DoT/VPN ports and VPN datagrams reach Python.

Parsing (``dns_query_name``, ``client_hello_sni``) and judging (``classify``) are pure functions over
bytes and plain values; ``packet_facts`` is the only code that touches scapy packets. Not imported by the
mitmproxy addon; ``netpolicy/sentinel_cli.py`` is the command line.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from invigil.hosts import is_ip
from invigil.policy import Policy
from invigil.seatpolicy import SeatPolicy
from netpolicy.gate import canonical_or_raw

log = logging.getLogger("invigil.sentinel")

_DOH = json.loads((Path(__file__).with_name("doh.json")).read_text(encoding="utf-8"))
DOH_HOSTS = frozenset(_DOH["hosts"])
DOH_ADDRESSES = frozenset(str(ipaddress.ip_address(a)) for a in _DOH["addresses"])
DOT_PORT = 853
#: (transport, destination port) -> what runs there. Reported whatever the destination.
VPN_PORTS = {
    ("udp", 51820): "WireGuard",
    ("udp", 1194): "OpenVPN",
    ("tcp", 1194): "OpenVPN",
    ("udp", 500): "IPsec IKE",
    ("udp", 4500): "IPsec NAT-T",
    ("tcp", 1723): "PPTP",
}
#: Names a laptop looks up without anyone visiting a site: reverse lookups, Firefox's DoH canary.
QUIET_SUFFIXES = (".arpa", "use-application-dns.net")

# The first byte of TCP data; (tcp[12] & 0xf0) >> 2 is the TCP header length. BPF can index into TCP
# (and read its flags) for IPv4 only, so IPv6 TCP to the watched ports passes whole and Python sorts it.
_TCP_DATA = "tcp[((tcp[12:1] & 0xf0) >> 2)"
BPF_FILTER = " or ".join(
    (
        "udp dst port 53",
        "udp dst port (51820 or 1194 or 500 or 4500)",
        "(ip and tcp dst port 53 and tcp[tcpflags] & tcp-push != 0)",
        "(ip and tcp dst port (853 or 1194 or 1723) and tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn)",
        "(ip6 and tcp dst port (53 or 443 or 853 or 1194 or 1723))",
        # Last: a load past the end of a packet (a SYN has no data) ends the whole filter with "no".
        f"(ip and tcp and {_TCP_DATA}:1] = 0x16 and {_TCP_DATA} + 5:1] = 0x01)",
    )
)


@dataclass(frozen=True)
class Facts:
    """What one captured packet says, independent of scapy. ``kind`` is what the sentinel recognised."""

    kind: Literal["dns", "tls", "syn", "datagram"]
    client_ip: str
    dst_ip: str
    dst_port: int
    transport: Literal["tcp", "udp"]
    name: str | None = None  # DNS query name, or TLS server name (SNI)
    name_complete: bool = True  # False: the ClientHello was cut before its SNI could be seen


@dataclass(frozen=True)
class Report:
    source: Literal["dns", "sentinel"]
    client_ip: str
    host: str
    reason: str


@dataclass(frozen=True)
class Settings:
    """``appliance``: the proxy/appliance addresses (traffic to them is the proxy's business, from them is
    not a laptop's); ``resolvers``: the hall's resolvers (default: the appliance); ``proxied_ports``:
    TCP ports the gateway redirects to the transparent proxy (80, 443 in gateway mode)."""

    appliance: frozenset[str] = frozenset()
    resolvers: frozenset[str] = frozenset()
    proxied_ports: frozenset[int] = frozenset()
    dedupe_s: float = 60.0

    @property
    def hall_resolvers(self) -> frozenset[str]:
        return self.resolvers or self.appliance


def dns_query_name(message: bytes) -> str | None:
    """The first question's name of a DNS *query* (QR=0), lower-case without the final dot; else None."""
    if len(message) < 12:
        return None
    flags, questions = struct.unpack_from("!H H", message, 2)
    if flags & 0x8000 or questions == 0:
        return None
    labels: list[str] = []
    offset = 12
    while offset < len(message):
        length = message[offset]
        if length == 0:
            name = ".".join(labels).lower()
            return name or None
        if length & 0xC0 or offset + 1 + length > len(message):  # compression has no place in a question
            return None
        labels.append(message[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
        if offset > 12 + 255:
            return None
    return None


def client_hello_sni(data: bytes) -> tuple[bool, str | None, bool]:
    """Read the start of a TCP stream: (is a TLS ClientHello, its SNI host name or None, complete).

    ``complete`` is False when the bytes end before the extensions do (a large ClientHello, e.g. with
    post-quantum key shares, spans several segments and only the first is captured) and no SNI was seen.
    """
    if len(data) < 9 or data[0] != 0x16 or data[1] != 0x03 or data[5] != 0x01:
        return False, None, True
    end = min(len(data), 5 + struct.unpack_from("!H", data, 3)[0])
    offset = 5 + 4 + 2 + 32  # record header, handshake header, client version, random
    try:
        offset += 1 + data[offset]  # session id
        offset += 2 + struct.unpack_from("!H", data, offset)[0]  # cipher suites
        offset += 1 + data[offset]  # compression methods
        extensions_end = offset + 2 + struct.unpack_from("!H", data, offset)[0]
        offset += 2
        while offset + 4 <= min(end, extensions_end):
            kind, length = struct.unpack_from("!H H", data, offset)
            body = data[offset + 4 : offset + 4 + length]
            if kind == 0 and len(body) == length:  # server_name: list length, type, name length, name
                if len(body) >= 5 and body[2] == 0:
                    name_length = struct.unpack_from("!H", body, 3)[0]
                    return True, body[5 : 5 + name_length].decode("ascii", "replace").lower(), True
                return True, None, True
            offset += 4 + length
    except (IndexError, struct.error):
        return True, None, False
    return True, None, extensions_end <= end


def classify(facts: Facts, policy: Policy, settings: Settings) -> Report | None:
    """Whether (and why) one packet's facts are worth a site event. Pure."""
    if facts.client_ip in settings.appliance:
        return None  # the appliance's own traffic (the proxy's upstream connections, its resolver)
    if facts.dst_ip in settings.appliance and facts.kind != "dns":
        return None  # to the proxy: it decides and reports itself. DNS to the appliance is still judged.

    def report(source: Literal["dns", "sentinel"], host: str, reason: str) -> Report:
        return Report(source, facts.client_ip, host, reason)

    where = (
        f"{facts.dst_ip}:{facts.dst_port}"
        if ":" not in facts.dst_ip
        else f"[{facts.dst_ip}]:{facts.dst_port}"
    )
    vpn = VPN_PORTS.get((facts.transport, facts.dst_port))
    if vpn and facts.kind in ("datagram", "syn"):
        return report(
            "sentinel",
            facts.dst_ip,
            f"VPN traffic ({vpn}, {facts.transport.upper()} {facts.dst_port}) to {where}",
        )
    if facts.kind == "syn" and facts.dst_port == DOT_PORT:
        return report("sentinel", facts.dst_ip, f"DNS-over-TLS connection to {where}")
    if facts.kind == "dns":
        name = facts.name
        if not name or name.endswith(QUIET_SUFFIXES):
            return None
        host = canonical_or_raw(name)
        if settings.hall_resolvers and facts.dst_ip not in settings.hall_resolvers:
            return report("sentinel", host, f"DNS query to {facts.dst_ip}, not the hall's resolver")
        if host in DOH_HOSTS:
            return report("sentinel", host, "DNS lookup of a DNS-over-HTTPS resolver")
        decision = policy.decide_host(host)
        return None if decision.allowed else report("dns", host, f"DNS query: {decision.reason}")
    if facts.kind != "tls" or facts.transport != "tcp" or facts.dst_port in settings.proxied_ports:
        return None
    sni = canonical_or_raw(facts.name) if facts.name else None
    if sni in DOH_HOSTS or facts.dst_ip in DOH_ADDRESSES:
        return report("sentinel", sni or facts.dst_ip, f"DNS-over-HTTPS resolver (TLS to {where})")
    if facts.dst_port == DOT_PORT:
        return report("sentinel", sni or facts.dst_ip, f"DNS-over-TLS to {where}")
    if sni is None or is_ip(sni):
        if not facts.name_complete:
            return None  # the SNI may sit in a segment the filter did not pass: say nothing rather than guess
        return report(
            "sentinel", facts.dst_ip, f"TLS without a server name to {where} (direct IP connection)"
        )
    decision = policy.decide_host(sni)
    if decision.allowed:
        return None
    return report("sentinel", sni, f"TLS to {where} around the proxy: {decision.reason}")


def packet_facts(packet: Any) -> Facts | None:
    """The facts of one scapy packet (IPv4/IPv6, TCP/UDP), or None if it is nothing the sentinel reads."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    network = packet.getlayer(IP) or packet.getlayer(IPv6)
    if network is None:
        return None
    src, dst = str(ipaddress.ip_address(network.src)), str(ipaddress.ip_address(network.dst))
    if packet.haslayer(UDP):
        segment = packet[UDP]
        data = bytes(segment.payload)
        if segment.dport == 53:
            return Facts("dns", src, dst, 53, "udp", dns_query_name(data))
        return Facts("datagram", src, dst, int(segment.dport), "udp")
    if not packet.haslayer(TCP):
        return None
    segment = packet[TCP]
    data, port = bytes(segment.payload), int(segment.dport)
    flags = int(segment.flags)
    if port == 53 and len(data) > 2:
        return Facts("dns", src, dst, 53, "tcp", dns_query_name(data[2:]))  # TCP DNS has a length prefix
    if flags & 0x02 and not flags & 0x10:
        return Facts("syn", src, dst, port, "tcp")
    hello, sni, complete = client_hello_sni(data)
    return Facts("tls", src, dst, port, "tcp", sni, complete) if hello else None


@dataclass
class Dedupe:
    """Report each (client, host, reason) at most once per ``window_s`` (clock: the packets' own time)."""

    window_s: float = 60.0
    last: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def fresh(self, report: Report, now: float) -> bool:
        key = (report.client_ip, report.host, report.reason)
        seen = self.last.get(key)
        if seen is not None and now - seen < self.window_s:
            return False
        if len(self.last) > 50_000:  # bounded: forget what is older than the window
            self.last = {k: t for k, t in self.last.items() if now - t < self.window_s}
        self.last[key] = now
        return True


class Sentinel:
    """Judges captured packets and hands reports to ``emit`` (the CLI queues them for the hall server).

    ``policies`` is a callable returning the current policy file (``invigil.seatpolicy``), so the CLI can
    swap in a reloaded one. Each packet is judged by the policy of the laptop that sent it, as the proxy
    judges its connections: its exam's, or for an address in no running exam the empty policy (everything
    it looks up is outside the policy). ``handle`` is scapy's ``prn``.
    """

    def __init__(self, policies: Callable[[], SeatPolicy], settings: Settings, emit: Any) -> None:
        self.policies = policies
        self.settings = settings
        self.emit = emit
        self.dedupe = Dedupe(settings.dedupe_s)
        self.packets = 0
        self.reports = 0
        self.malformed = 0

    def handle(self, packet: Any) -> None:
        """Take one packet the BPF filter passed (or read from a pcap); runs in scapy's sniffing loop."""
        self.packets += 1
        try:
            facts = packet_facts(packet)
        except Exception as exc:  # noqa: BLE001 - one odd packet must not stop the capture thread
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 1000 == 0:
                log.warning("%d packet(s) not understood, the latest: %r", self.malformed, exc)
            return
        if facts is None:
            return
        found = classify(facts, self.policies().policy_for(facts.client_ip), self.settings)
        if found is not None and self.dedupe.fresh(found, float(packet.time)):
            self.reports += 1
            self.emit(found, float(packet.time))
