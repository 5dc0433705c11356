"""``invigil-config``: check ``/etc/invigil/invigil.conf`` for the unit about to start.

Every unit of the Debian package reads the file with ``EnvironmentFile=`` and runs ``invigil-config check
UNIT`` as its ``ExecStartPre=``, so a broken value stops that unit with one line per bad key that names the
key and says what to write, instead of a traceback or a program started with an empty argument. The gateway
units run ``invigil-config is-gateway`` as ``ExecCondition=``: in proxy mode they are skipped, not failed.

What each unit needs: every unit the keys ``common`` checks; the server also a valid hall-server setting for
every ``INVIGIL_*`` variable (``hall_server.settings``); the sentinel an existing hall interface (a missing
one fails the sentinel loudly, never the server, whose mDNS then stays off with a log line); the gateway
units the hall address with its prefix; the proxy and the sentinel, which reach the server at
``https://127.0.0.1``, a server certificate that names 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hall_server.settings import load_settings
from provisioning import tlsdir

CONF = "/etc/invigil/invigil.conf"
DATA_DIR = "/var/lib/invigil"  # the units' sandbox (ReadWritePaths=) allows writes there only
MODES = ("proxy", "gateway")
UNITS = ("server", "proxy", "sentinel", "gateway", "retention", "screen-text")
ON_OFF = ("on", "off", "true", "false", "yes", "no", "1", "0")

Problems = list[str]


def _port(env: Mapping[str, str], key: str, example: str) -> Problems:
    text = env.get(key, "")
    if text.isdigit() and 1 <= int(text) <= 65535:
        return []
    return [f"{key}={text!r} is not a TCP port: write {key}={example}"]


def _required(env: Mapping[str, str], key: str, example: str, meaning: str) -> Problems:
    if env.get(key, "").strip():
        return []
    return [f"{key} is missing or empty: write {key}={example} ({meaning})"]


def common(env: Mapping[str, str]) -> Problems:
    """The keys every unit uses."""
    problems: Problems = []
    if env.get("INVIGIL_DATA_DIR", "") != DATA_DIR:
        problems.append(
            f"INVIGIL_DATA_DIR={env.get('INVIGIL_DATA_DIR', '')!r}: the units may write only {DATA_DIR}; "
            f"write INVIGIL_DATA_DIR={DATA_DIR} (put the data elsewhere with a bind mount there)"
        )
    mode = env.get("INVIGIL_MODE", "")
    if mode not in MODES:
        problems.append(
            f"INVIGIL_MODE={mode!r} is not a network mode: write INVIGIL_MODE=proxy (laptops use the "
            "proxy, PAC file) or INVIGIL_MODE=gateway (the appliance is the hall's router and DHCP server)"
        )
    try:
        ipaddress.ip_address(env.get("INVIGIL_BIND_ADDRESS", ""))
    except ValueError:
        problems.append(
            f"INVIGIL_BIND_ADDRESS={env.get('INVIGIL_BIND_ADDRESS', '')!r} is not an IP address: write "
            "INVIGIL_BIND_ADDRESS=0.0.0.0 (every interface) or the hall interface's address"
        )
    problems += _port(env, "INVIGIL_API_PORT", "8443")
    problems += _port(env, "INVIGIL_PROXY_PORT", "8080")
    if not problems and env["INVIGIL_API_PORT"] == env["INVIGIL_PROXY_PORT"]:
        problems.append("INVIGIL_API_PORT and INVIGIL_PROXY_PORT are the same port: write two different ones")
    problems += _required(env, "INVIGIL_HALL_NAME", '"Hall A"', "the hall's name, shown to staff")
    problems += _required(env, "INVIGIL_HALL_INTERFACE", "enp3s0", "the interface facing the laptops")
    if env.get("INVIGIL_MDNS", "").lower() not in ON_OFF:
        problems.append(
            f"INVIGIL_MDNS={env.get('INVIGIL_MDNS', '')!r}: write INVIGIL_MDNS=on (agents find the hall by "
            "mDNS on the hall interface) or INVIGIL_MDNS=off"
        )
    return problems


def server(env: Mapping[str, str]) -> Problems:
    try:
        load_settings(env)
    except ValueError as exc:  # the setting's own message names its INVIGIL_* variable
        return [f"{exc}: correct that line"]
    return []


def interface_exists(env: Mapping[str, str]) -> Problems:
    name = env.get("INVIGIL_HALL_INTERFACE", "")
    present = [interface for _, interface in socket.if_nameindex()]
    if name in present:
        return []
    return [
        f"INVIGIL_HALL_INTERFACE={name!r}: no such interface on this machine (it has {', '.join(present)}): "
        "write the interface facing the laptops"
    ]


def loopback_in_certificate(env: Mapping[str, str], tls_dir: Path = Path(DATA_DIR) / "tls") -> Problems:
    """The proxy and the sentinel reach the server at https://127.0.0.1: its certificate must name it."""
    names = tlsdir.server_names(tls_dir)
    if not names or "127.0.0.1" in names:
        return []
    listed = " ".join(f"--name {name}" for name in names)
    return [
        f"the server certificate ({tls_dir}) names {', '.join(names)} but not 127.0.0.1, where the proxy and "
        f"the sentinel reach the server: run invigil-provision certs init --hall "
        f'"{env.get("INVIGIL_HALL_NAME", "")}" {listed} --name 127.0.0.1'
    ]


def gateway(env: Mapping[str, str]) -> Problems:
    text = env.get("INVIGIL_HALL_ADDRESS", "")
    try:
        network = ipaddress.ip_interface(text)
    except ValueError:
        network = None
    if network is None or "/" not in text or network.version != 4:
        return [
            f"INVIGIL_HALL_ADDRESS={text!r}: write the appliance's IPv4 address on the hall interface with "
            "its prefix, e.g. INVIGIL_HALL_ADDRESS=10.20.0.1/22 (gateway mode gives out the rest by DHCP)"
        ]
    return []


CHECKS: dict[str, tuple[Callable[[Mapping[str, str]], Problems], ...]] = {
    "server": (common, server),
    "proxy": (common, loopback_in_certificate),
    "sentinel": (common, interface_exists, loopback_in_certificate),
    "gateway": (common, interface_exists, gateway),
    "retention": (common, server),
    "screen-text": (common, server),
}


def check(unit: str, env: Mapping[str, str]) -> Problems:
    """Every problem of ``env`` for ``unit`` (empty when it may start)."""
    problems: Problems = []
    for step in CHECKS[unit]:
        problems += step(env)
        if problems and step is common:
            break  # the later checks build on the common keys
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="invigil-config",
        description=f"Check {CONF} (as exported by systemd's EnvironmentFile=) for one unit.",
        epilog="Example: invigil-config check sentinel   (exit 1 and one line per bad key)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="Check the keys the unit needs.")
    checking.add_argument("unit", choices=UNITS)
    commands.add_parser("is-gateway", help="Exit 0 in gateway mode, 1 otherwise (for ExecCondition=).")
    args = parser.parse_args(argv)
    if args.command == "is-gateway":
        return 0 if os.environ.get("INVIGIL_MODE") == "gateway" else 1
    problems = check(args.unit, os.environ)
    for problem in problems:
        print(f"{CONF}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
