"""``invigil-sentinel``: watch the hall interface (or read a pcap) and report what went around the proxy.

Live capture needs only CAP_NET_RAW: the socket is not put into promiscuous mode (as the hall's gateway
the appliance receives the laptops' packets anyway) and the BPF filter runs in the kernel.
docs/sentinel.md describes what is reported and why.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invigil.policy import Policy
from invigil.seatpolicy import SeatPolicy
from netpolicy.events import SERVER_URL_NEEDS_CREDENTIAL, SiteEventSender, make_site_event, read_token
from netpolicy.gate import PolicyFile
from netpolicy.sentinel import BPF_FILTER, Report, Sentinel, Settings

log = logging.getLogger("invigil.sentinel")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invigil-sentinel",
        description="Passive DNS and TLS SNI sentinel: reports hosts outside the policy and traffic around "
        "the proxy (other resolvers, DNS-over-HTTPS/TLS, direct IP connections, VPN ports).",
        epilog=(
            "Example: invigil-sentinel --interface enp2s0 "
            "--policy-file /var/lib/invigil/proxy/hall-policy.json "
            "--proxy-address 10.20.0.1 --proxied-port 80 --proxied-port 443 "
            "--server-url http://127.0.0.1:8080 --service-token-file /var/lib/invigil/service.token"
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--interface", help="The hall interface to watch (never put into promiscuous mode).")
    source.add_argument("--read-pcap", metavar="FILE", help="Read packets from a pcap file instead.")
    parser.add_argument(
        "--policy-file",
        required=True,
        help="The hall server's per-seat policy file (<data_dir>/proxy/hall-policy.json), or one exam's "
        "policy for every laptop (docs/policy.md).",
    )
    parser.add_argument("--server-url", default="", help="Hall server base URL ('' = print events as JSON).")
    parser.add_argument(
        "--service-token-file",
        default="",
        help="File holding the hall's service token, <data_dir>/service.token (required with --server-url).",
    )
    parser.add_argument("--server-ca", default="", help="CA file to verify an https:// hall server.")
    parser.add_argument(
        "--proxy-address",
        action="append",
        default=[],
        help="Address of the proxy/appliance (repeatable): traffic to it is the proxy's business.",
    )
    parser.add_argument(
        "--resolver-address",
        action="append",
        default=[],
        help="The hall's resolver (repeatable; default: the proxy addresses). DNS elsewhere is reported.",
    )
    parser.add_argument(
        "--proxied-port",
        type=int,
        action="append",
        default=[],
        help="TCP port the gateway redirects to the transparent proxy (repeatable; gateway mode: 80, 443).",
    )
    parser.add_argument("--dedupe-s", type=float, default=60.0, help="Report a (laptop, host) once per this.")
    parser.add_argument("--policy-poll-s", type=float, default=2.0, help="Policy file check interval.")
    return parser


def _load_policy(path: str) -> PolicyFile:
    policy_file = PolicyFile(Path(path))
    try:
        policy_file.load()
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"invigil-sentinel: cannot read policy file {path}: {exc}")
    except ValueError as exc:  # PolicyError, SeatPolicyError: every problem, numbered
        sys.exit(f"invigil-sentinel: policy file {path} has errors:\n{exc}")
    return policy_file


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.server_url and not args.service_token_file:
        parser.error(SERVER_URL_NEEDS_CREDENTIAL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    policy_file = _load_policy(args.policy_file)
    sender: SiteEventSender | None = None
    if args.server_url:
        try:
            sender = SiteEventSender(
                args.server_url,
                token=read_token(args.service_token_file),
                ca_file=args.server_ca,
                flush_interval_s=0.2,
            ).start()
        except (OSError, ValueError) as exc:
            sys.exit(f"invigil-sentinel: {exc}")

    def emit(report: Report, at: float) -> None:
        log.info("%s %s %s: %s", report.source, report.client_ip, report.host, report.reason)
        event = make_site_event(
            report.client_ip,
            report.host,
            False,
            report.reason,
            source=report.source,
            at=datetime.fromtimestamp(at, UTC),
        )
        if sender is not None:
            sender.add(event)
        else:
            print(json.dumps(event.as_wire()), flush=True)

    settings = Settings(
        appliance=frozenset(args.proxy_address),
        resolvers=frozenset(args.resolver_address),
        proxied_ports=frozenset(args.proxied_port),
        dedupe_s=args.dedupe_s,
    )
    sentinel = Sentinel(lambda: policy_file.document or SeatPolicy(single=Policy()), settings, emit)
    try:
        if args.read_pcap:
            _read_pcap(args.read_pcap, sentinel)
        else:
            _capture(args.interface, sentinel, policy_file, args.policy_poll_s)
    finally:
        log.info("%d packet(s) read, %d report(s)", sentinel.packets, sentinel.reports)
        if sender is not None:
            sender.close(timeout_s=5.0)


def _read_pcap(path: str, sentinel: Sentinel) -> None:
    import scapy.layers.inet6
    import scapy.layers.l2  # noqa: F401 - registers the link types PcapReader dissects
    from scapy.utils import PcapReader

    try:
        with PcapReader(path) as packets:
            for packet in packets:
                sentinel.handle(packet)
    except (OSError, ValueError) as exc:  # scapy raises Scapy_Exception (a plain Exception) on junk
        sys.exit(f"invigil-sentinel: cannot read {path}: {exc}")


def _capture(interface: str, sentinel: Sentinel, policy_file: PolicyFile, poll_s: float) -> None:
    import scapy.layers.inet6
    import scapy.layers.l2  # noqa: F401 - registers the link types the capture dissects
    from scapy.sendrecv import AsyncSniffer

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listening = threading.Event()
    sniffer = AsyncSniffer(
        iface=interface,
        filter=BPF_FILTER,
        prn=sentinel.handle,
        store=False,
        promisc=False,
        started_callback=listening.set,  # the socket (with its filter) is open: nothing is missed after
    )
    sniffer.start()
    for _ in range(100):  # up to 10 s; a thread that died opening the socket ends the wait at once
        if listening.wait(0.1) or sniffer.thread is None or not sniffer.thread.is_alive():
            break
    if not listening.is_set():
        sys.exit(f"invigil-sentinel: cannot capture on {interface} (needs CAP_NET_RAW and the interface)")
    log.info("watching %s", interface)
    while not stop.wait(max(0.1, poll_s)):
        if not sniffer.running:
            sys.exit(f"invigil-sentinel: capture on {interface} stopped")
        changed, problem = policy_file.reload_if_changed()
        if problem:
            log.error("policy %s not reloaded, keeping the previous policy:\n%s", policy_file.path, problem)
        elif changed:
            log.info("policy %s reloaded", policy_file.path)
    sniffer.stop()
