"""Gateway mode: the nftables ruleset and dnsmasq configuration that make the appliance the exam network's
gateway (pure text generators, stdlib only; docs/gateway.md).

The hall interface's laptops get the appliance as router and resolver (DHCP). Web traffic (TCP 80/443) is
redirected to mitmdump in transparent mode, DNS goes only to the appliance's resolver, and everything
else the laptops send towards other networks is dropped and counted in named nft counters, which the
dashboard (or ``nft list counters table inet invigil``) can show. Nothing is forwarded or masqueraded: the
proxy makes its own upstream connections, so a laptop never talks to the outside directly.

Of the appliance itself a laptop reaches only the hall server's agent API (``--service-port``), the
appliance's DNS and DHCP, mDNS, and the proxy through the redirect: packets for loopback (127.0.0.0/8,
::1) are dropped on the hall interface whatever the kernel's ``route_localnet``, and every other port of
the appliance is dropped in the input chain. The proxy keeps the same rule for the connections it makes
(docs/proxy.md, "The appliance rule").

Run ``python -m netpolicy.gateway --help``; it prints the text, ``nft -f``/dnsmasq read it.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TABLE = "invigil"
#: Named counters (nft ``counter name ...``) and what they count. The order is the order in the ruleset.
COUNTERS = {
    "web_redirected": "TCP 80/443 from the hall redirected to the transparent proxy",
    "dropped_quic": "UDP 443 (QUIC/HTTP3) from the hall: browsers fall back to TCP, which the proxy sees",
    "dropped_dns": "DNS, DNS-over-TLS (53/853) from the hall to any resolver but the appliance",
    "dropped_loopback": "packets from the hall addressed to loopback (127.0.0.0/8, ::1)",
    "dropped_forward": "anything else the hall sent towards another network",
    "dropped_inbound": "connections from other networks towards the hall",
    "dropped_input": "hall traffic to the appliance on ports it does not serve",
}
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
#: Firefox disables its own DNS-over-HTTPS when this canary name does not resolve (NXDOMAIN).
DOH_CANARY = "use-application-dns.net"


@dataclass(frozen=True)
class Gateway:
    """What the generators need to know. Validated on creation (``ValueError`` names the problem)."""

    hall_interface: str
    appliance_address: str  # the appliance's address on the hall network, with its prefix: 10.20.0.1/22
    proxy_port: int = 8081  # mitmdump --mode transparent listens here (HTTP and HTTPS alike)
    proxy_workers: int = 1  # mitmdump processes on proxy_port, proxy_port + 1, ...: one per core
    service_tcp_ports: tuple[int, ...] = (
        8443,
    )  # the hall server's agent API: the one TCP service laptops reach
    dhcp_lease: str = "4h"
    dns_log: str = "/var/log/invigil/dns.log"
    upstream_dns: tuple[str, ...] = ()  # '' = dnsmasq uses /etc/resolv.conf
    interface: ipaddress.IPv4Interface = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _IFNAME_RE.fullmatch(self.hall_interface):
            raise ValueError(f"not an interface name: {self.hall_interface!r}")
        try:
            interface = ipaddress.IPv4Interface(self.appliance_address)
        except ValueError:
            raise ValueError(
                "appliance address must be IPv4 with its prefix, e.g. 10.20.0.1/22: "
                f"{self.appliance_address!r}"
            ) from None
        if interface.network.prefixlen > 29:
            raise ValueError(f"the hall network {interface.network} is too small for laptops")
        if not 1 <= self.proxy_workers <= 64:
            raise ValueError(f"proxy workers must be 1 to 64: {self.proxy_workers}")
        for port in (*self.proxy_ports, *self.service_tcp_ports):
            if not 0 < port < 65536:
                raise ValueError(f"not a port number: {port}")
        if {80, 443} & set(self.proxy_ports):
            raise ValueError("the transparent proxy port must not be 80 or 443 (those are redirected to it)")
        if not re.fullmatch(r"\d+[mhd]?", self.dhcp_lease):
            raise ValueError(f"DHCP lease time like 4h or 90m: {self.dhcp_lease!r}")
        for server in self.upstream_dns:
            ipaddress.ip_address(server)
        if "\n" in self.dns_log:
            raise ValueError("the DNS log path must be one line")
        object.__setattr__(self, "interface", interface)

    @property
    def proxy_ports(self) -> tuple[int, ...]:
        return tuple(range(self.proxy_port, self.proxy_port + self.proxy_workers))

    @property
    def address(self) -> str:
        return str(self.interface.ip)

    def dhcp_range(self) -> tuple[str, str]:
        """First and last address handed out: the hall network minus the appliance and the first ten."""
        hosts = [ip for ip in self.interface.network.hosts() if ip != self.interface.ip]
        start = hosts[min(9, len(hosts) - 2)]
        return str(start), str(hosts[-1])


def nft_ruleset(gw: Gateway) -> str:
    """The ``table inet invigil`` ruleset for ``nft -f``: it replaces an earlier copy of itself and leaves
    every other table (the uplink's own firewall) alone."""
    hall = f'"{gw.hall_interface}"'
    services = ", ".join(str(port) for port in sorted({*gw.service_tcp_ports}))
    ports = gw.proxy_ports
    if len(ports) == 1:
        target, proxy_ports = f":{ports[0]}", str(ports[0])
    else:  # one mitmdump per core; NAT is per connection, so a connection stays with its worker
        spread = ", ".join(f"{index} : {port}" for index, port in enumerate(ports))
        target, proxy_ports = f":numgen inc mod {len(ports)} map {{ {spread} }}", f"{ports[0]}-{ports[-1]}"
    counters = "\n".join(
        f'\tcounter {name} {{\n\t\tcomment "{text}"\n\t}}' for name, text in COUNTERS.items()
    )
    lines = [
        "#!/usr/sbin/nft -f",
        f"# Invigil gateway for {gw.hall_interface} ({gw.interface.network}); generated by netpolicy.gateway",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        counters,
        "",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        "\t\t# Web traffic for other hosts goes to mitmdump --mode transparent, which decides on the SNI",
        "\t\t# name or Host header and reads the original destination (SO_ORIGINAL_DST).",
        f"\t\tiifname {hall} fib daddr type != local tcp dport {{ 80, 443 }} "
        f"counter name web_redirected redirect to {target}",
        "\t}",
        "",
        "\tchain hall_filter {",
        "\t\t# After the redirect: what is not for the appliance itself never gets past here, forwarding on",
        "\t\t# or off. Broadcast and multicast stay (DHCP, mDNS).",
        "\t\ttype filter hook prerouting priority filter; policy accept;",
        f"\t\tiifname != {hall} accept",
        "\t\tip daddr 127.0.0.0/8 counter name dropped_loopback drop",
        "\t\tip6 daddr ::1 counter name dropped_loopback drop",
        "\t\tfib daddr type { local, broadcast, multicast } accept",
        "\t\tudp dport 443 counter name dropped_quic drop",
        "\t\tmeta l4proto { tcp, udp } th dport { 53, 853 } counter name dropped_dns drop",
        "\t\tcounter name dropped_forward drop",
        "\t}",
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tiifname != {hall} accept",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept",
        f"\t\ttcp dport {proxy_ports} ct status dnat accept",
        "\t\tmeta l4proto { tcp, udp } th dport 53 accept",
        "\t\tudp dport 67 accept",
        "\t\tudp dport 5353 accept",
        f"\t\ttcp dport {{ {services} }} accept",
        "\t\tudp dport 443 counter name dropped_quic drop",
        "\t\tcounter name dropped_input drop",
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\tiifname {hall} counter name dropped_forward drop",
        f"\t\toifname {hall} counter name dropped_inbound drop",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def dnsmasq_config(gw: Gateway) -> str:
    """dnsmasq configuration: DHCP on the hall interface with the appliance as router and resolver, and
    every query logged. The sentinel reads queries off the wire (docs/sentinel.md); this log is for people."""
    first, last = gw.dhcp_range()
    lines = [
        f"# Invigil gateway for {gw.hall_interface}; generated by netpolicy.gateway",
        f"interface={gw.hall_interface}",
        "bind-interfaces",
        f"listen-address={gw.address}",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        f"dhcp-range={first},{last},{gw.interface.netmask},{gw.dhcp_lease}",
        f"dhcp-option=option:router,{gw.address}",
        f"dhcp-option=option:dns-server,{gw.address}",
        "dhcp-authoritative",
        f"# Firefox turns its DNS-over-HTTPS off when {DOH_CANARY} does not resolve.",
        f"address=/{DOH_CANARY}/",
        "log-queries",
        "log-dhcp",
        f"log-facility={gw.dns_log}",
    ]
    if gw.upstream_dns:
        lines.append("no-resolv")
        lines += [f"server={server}" for server in gw.upstream_dns]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m netpolicy.gateway",
        description="Print the nftables rules or dnsmasq configuration for gateway mode (docs/gateway.md).",
        epilog=(
            "Example: python -m netpolicy.gateway --hall-interface enp2s0 --appliance-address 10.20.0.1/22 "
            "--print-nft > /etc/invigil/gateway.nft && nft -f /etc/invigil/gateway.nft"
        ),
    )
    parser.add_argument("--hall-interface", required=True, help="The interface facing the laptops.")
    parser.add_argument(
        "--appliance-address", required=True, help="The appliance's address there with prefix: 10.20.0.1/22."
    )
    parser.add_argument("--proxy-port", type=int, default=8081, help="mitmdump's transparent port.")
    parser.add_argument(
        "--proxy-workers",
        type=int,
        default=1,
        help="mitmdump processes on --proxy-port and the ports after it (one per core; default 1).",
    )
    parser.add_argument(
        "--service-port",
        type=int,
        action="append",
        default=None,
        help="TCP port of the hall server's agent API, the one TCP service of the appliance the laptops "
        "reach (repeatable; default 8443).",
    )
    parser.add_argument("--dhcp-lease", default="4h", help="DHCP lease time (default %(default)s).")
    parser.add_argument("--dns-log", default="/var/log/invigil/dns.log", help="dnsmasq's query log.")
    parser.add_argument(
        "--upstream-dns", action="append", default=[], help="Resolver dnsmasq asks (default: resolv.conf)."
    )
    parser.add_argument(
        "--output", default="", help="Write to this file (0644, replaced whole) instead of standard output."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--print-nft", action="store_true", help="Print the nftables ruleset.")
    what.add_argument("--print-dnsmasq", action="store_true", help="Print the dnsmasq configuration.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        gw = Gateway(
            args.hall_interface,
            args.appliance_address,
            proxy_port=args.proxy_port,
            proxy_workers=args.proxy_workers,
            service_tcp_ports=tuple(args.service_port or (8443,)),
            dhcp_lease=args.dhcp_lease,
            dns_log=args.dns_log,
            upstream_dns=tuple(args.upstream_dns),
        )
    except ValueError as exc:
        parser.error(str(exc))
    text = nft_ruleset(gw) if args.print_nft else dnsmasq_config(gw)
    if not args.output:
        print(text, end="")
        return
    output = Path(args.output)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.replace(output)


if __name__ == "__main__":
    main()
