"""A second network path: does the laptop have another way out than the hall network?

A phone's USB tethering, a mobile-broadband modem or a second Wi-Fi adapter on a phone hotspot next to the
hall Wi-Fi gives the laptop a route around the hall proxy and the sentinel. The agent reports such a path
as a *category* (``tethering``, ``mobile``, ``second_path``) with a count, never the interface's or the
network's name (an interface name such as ``enx00e04c6812ab`` carries a hardware address).

What counts is pure (:func:`second_paths`): an interface that is up, is not the one the laptop reaches the
hall server through, is not virtual (a VM host's bridge, a container network; VPNs and tunnels are reported
as such by ``agent.devices``), holds a usable address (IPv4 outside loopback and link-local, or a global
IPv6 address), and does not itself reach the hall server (a laptop on the hall's Wi-Fi *and* its wired
network has two hall paths, not a way around). psutil and the sockets sit behind injected callables.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

#: Category by interface name (lower case, fnmatch), first match wins; the rest is ``second_path``.
PATH_PATTERNS: tuple[tuple[str, str], ...] = (
    ("usb*", "tethering"),  # Linux RNDIS/CDC tethering
    ("rndis*", "tethering"),
    ("bnep*", "tethering"),  # Bluetooth PAN
    ("*iphone*", "tethering"),  # Windows "iPhone USB", macOS "iPhone USB"
    ("*remote ndis*", "tethering"),
    ("*bluetooth network*", "tethering"),
    ("*bluetooth pan*", "tethering"),
    ("wwan*", "mobile"),
    ("wwp*", "mobile"),
    ("rmnet*", "mobile"),
    ("ccmni*", "mobile"),
    ("*cellular*", "mobile"),
    ("*mobile broadband*", "mobile"),
    ("*mobiel breedband*", "mobile"),  # Windows in Dutch
)
#: Interfaces that are never a way out: loopback, VM hosts' and containers' networks, macOS's own links.
#: VPN and tunnel names are left out here: ``agent.devices`` reports them under their own category.
VIRTUAL_PATTERNS: tuple[str, ...] = (
    "lo",
    "lo0",
    "loopback*",
    "docker*",
    "br-*",
    "virbr*",
    "veth*",
    "vnet*",
    "vboxnet*",
    "vmnet*",
    "lxcbr*",
    "lxdbr*",
    "incusbr*",
    "podman*",
    "cni*",
    "flannel*",
    "cali*",
    "vethernet*",  # Windows Hyper-V / WSL switch
    "*virtualbox*",
    "*vmware*",
    "*hyper-v*",
    "isatap*",
    "teredo*",
    "*pseudo-interface*",
    "awdl*",
    "llw*",
    "anpi*",
    "bridge*",
    "ap1",
    "gif*",
    "stf*",
)


def path_category(name: str) -> str:
    lowered = name.lower()
    for pattern, category in PATH_PATTERNS:
        if fnmatch.fnmatchcase(lowered, pattern):
            return category
    return "second_path"


def is_virtual(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in VIRTUAL_PATTERNS)


def usable_address(text: str) -> bool:
    """An address another network gave this interface: IPv4 outside loopback and link-local (169.254/16,
    what an interface without DHCP gives itself), or a global IPv6 address."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 4:
        return not (address.is_loopback or address.is_link_local or address.is_unspecified)
    return address.is_global


def second_paths(
    addresses: Mapping[str, Iterable[str]],
    up: Mapping[str, bool],
    hall_address: str | None,
    reaches_hall: Callable[[str], bool] = lambda _address: False,
    skip: Collection[str] = (),
) -> dict[str, int]:
    """Category -> how many interfaces give the laptop another way out (pure but ``reaches_hall``).

    ``addresses`` maps interface name -> its addresses, ``up`` interface name -> is up, ``hall_address`` is
    the local address the laptop reaches the hall server from (None: unknown, so nothing can be told apart
    and nothing is reported). ``reaches_hall(address)`` says whether the hall server answers from that
    address; ``skip`` names the interfaces reported otherwise (the VPNs and tunnels ``agent.devices`` found).
    """
    if hall_address is None:
        return {}
    found: dict[str, int] = {}
    for name, names_addresses in addresses.items():
        if not up.get(name, False) or name in skip or is_virtual(name):
            continue
        usable = [a for a in names_addresses if usable_address(a)]
        if not usable or hall_address in usable:
            continue
        if any(reaches_hall(a) for a in usable):
            continue
        category = path_category(name)
        found[category] = found.get(category, 0) + 1
    return dict(sorted(found.items()))


#: Where the check looks when it has no hall: an address of TEST-NET-1 (RFC 5737), which follows the
#: default route; a UDP "connect" to it sends nothing.
NO_HALL = "192.0.2.1"


def local_address_towards(host: str, port: int, source_address: str | None = None) -> str | None:
    """The local address the operating system picks to reach ``host`` (a UDP "connect" sends nothing)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _name, sockaddr in infos:
        with contextlib.suppress(OSError), socket.socket(family, kind, proto) as sock:
            if source_address:
                sock.bind((source_address, 0))
            sock.connect(sockaddr)
            return str(sock.getsockname()[0])
    return None


def psutil_addresses() -> dict[str, list[str]]:
    """Interface name -> its IPv4/IPv6 addresses, from ``psutil.net_if_addrs``."""
    import psutil

    families = (socket.AF_INET, socket.AF_INET6)
    return {
        name: [entry.address for entry in entries if entry.family in families]
        for name, entries in psutil.net_if_addrs().items()
    }


@dataclass
class PathProbe:
    """The real sources of :func:`second_paths` for an agent that talks to the hall server at host:port.

    ``reaches_hall`` tries a TCP connection to the hall server from a candidate address, once per address
    (remembered): it runs only for an interface that looks like a second path, so not every interval.
    ``connect=False`` (the student's check at home, where the hall is not there) never tries."""

    host: str
    port: int
    source_address: str | None = None
    connect: bool = True
    timeout_s: float = 1.0
    list_addresses: Callable[[], Mapping[str, Iterable[str]]] = psutil_addresses
    _reaches: dict[str, bool] = field(default_factory=dict)
    _resolved: str | None = None

    def hall_address(self) -> str | None:
        if self._resolved is None:  # looked up once: a name's lookup must not stall every interval
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
                self._resolved = str(infos[0][4][0])
            except (OSError, IndexError):
                return None
        return local_address_towards(str(self._resolved), self.port, self.source_address)

    def reaches_hall(self, address: str) -> bool:
        if not self.connect:
            return False
        if address not in self._reaches:
            try:
                with socket.create_connection(
                    (self.host, self.port), timeout=self.timeout_s, source_address=(address, 0)
                ):
                    self._reaches[address] = True
            except OSError:
                self._reaches[address] = False
        return self._reaches[address]

    def paths(self, up: Mapping[str, bool], skip: Collection[str] = ()) -> dict[str, int]:
        return second_paths(self.list_addresses(), up, self.hall_address(), self.reaches_hall, skip)
