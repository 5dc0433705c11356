"""The rule above every policy: the proxy never connects to the appliance it runs on, except to the hall
server's agent API (stdlib only; ``choose_address`` is pure, ``is_own_address`` asks the kernel).

A policy may allow a name that resolves to the appliance: ``localhost``, or the appliance's own name for a
help page. Through the proxy a laptop would then reach every service on this machine, loopback ones included
(Redis, the hall server's other processes, the proxy itself). So every upstream connection is decided on
the addresses its host resolves to, just before it is opened: loopback (127.0.0.0/8, ::1), the unspecified
addresses (0.0.0.0/8 and ::, which reach this machine) and every address this machine holds are refused,
whatever the policy allows. The one exception is the host and port of ``invigil_server_url``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from invigil.policy import Decision

RULE = "appliance rule"
Endpoint = tuple[str, int]


def agent_api(server_url: str) -> Endpoint | None:
    """Host and port of the hall server's agent API in ``server_url`` (None when there is no URL).

    Raises ``ValueError`` for a URL without a host or with a bad port."""
    if not server_url:
        return None
    parts = urlsplit(server_url)
    if not parts.hostname:
        raise ValueError(f"the hall server URL names no host: {server_url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


def plain_address(address: str) -> str:
    """The canonical text of an IP address: IPv4-mapped IPv6 as IPv4, IPv6 compressed, a zone id kept.

    Raises ``ValueError`` for anything that is no IP address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def is_loopback(address: str) -> bool:
    """Loopback, or an unspecified address (connecting to 0.0.0.0 or :: reaches this machine)."""
    ip = ipaddress.ip_address(plain_address(address).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_loopback or ip in _THIS_NETWORK
    return ip.is_loopback or ip.is_unspecified


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def is_own_address(address: str) -> bool:
    """Whether this machine holds ``address``: the kernel lets a socket bind to it.

    Asking the kernel at the moment of the connection is always current (addresses come and go with DHCP)
    and covers every interface. With ``net.ipv4.ip_nonlocal_bind`` on, every address binds and so every
    destination counts as the appliance: the proxy then refuses everything rather than too little."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address, 0, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )[0]
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            # Not ours (or unusable without a zone); any other failure counts as ours: refuse, not allow.
            return exc.errno not in (errno.EADDRNOTAVAIL, errno.EINVAL)
    return True


@dataclass(frozen=True)
class Destination:
    """Where the proxy may connect for a host: ``address``, or None with the refusal in ``decision``.
    ``agent_api`` says the address is this appliance's agent API."""

    address: str | None
    decision: Decision
    agent_api: bool = False


def choose_address(
    host: str,
    port: int,
    addresses: Sequence[str],
    agent_api_endpoints: Iterable[Endpoint],
    is_own: Callable[[str], bool],
) -> Destination:
    """Decide a connection to ``host``:``port`` on the ``addresses`` it resolved to (in resolver order).

    A host none of whose addresses is the appliance gets its first address. One that resolves to the
    appliance gets the hall server's agent API if that is among its addresses and ports, and is refused
    otherwise, even when it also resolves elsewhere: no real site resolves to this machine.
    """
    if not addresses:
        return Destination(None, Decision(False, f"{host} does not resolve to any address"))
    endpoints = {(plain_address(ip), api_port) for ip, api_port in agent_api_endpoints}
    appliance = [a for a in addresses if is_loopback(a) or is_own(a)]
    if not appliance:
        return Destination(addresses[0], Decision(True, "not the appliance"))
    for address in appliance:
        if (plain_address(address), port) in endpoints:
            return Destination(
                address, Decision(True, f"{RULE}: the hall server's agent API"), agent_api=True
            )
    api = ", ".join(sorted(f"{_format(ip)}:{api_port}" for ip, api_port in endpoints)) or "(none configured)"
    shown = ", ".join(plain_address(a) for a in appliance[:3])
    return Destination(
        None,
        Decision(
            False,
            f"{RULE}: the proxy connects to this appliance only for the hall server's agent API ({api}), "
            f"whatever the policy allows; {_format(host)}:{port} is {shown}",
        ),
    )


def _format(host: str) -> str:
    return f"[{host}]" if ":" in host else host
