"""``invigil-proxy``: start mitmdump from the proxy's own virtualenv with the Invigil addon (docs/proxy.md).

Runs from the main environment, builds the mitmdump command line and ``exec``s it, so the process a
service manager (or a test) started *is* mitmdump. Only mitmdump is ever run, never mitmweb.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from netpolicy.events import SERVER_URL_NEEDS_CREDENTIAL

REPO = Path(__file__).resolve().parents[1]
ADDON = Path(__file__).resolve().parent / "addon.py"
PROXY_VENV = REPO / ".venv-proxy"

#: Fixed mitmproxy settings and why (docs/proxy.md, "Fixed settings").
FIXED_SETTINGS = (
    # Open no upstream connection before the policy has seen the CONNECT host *and* the TLS SNI name:
    # a blocked host is never contacted, and its name is never resolved.
    "connection_strategy=lazy",
    # No HTTP/3 or QUIC handling at all; UDP flows are killed by the addon as well.
    "http3=false",
    # The addon logs one line per decision; mitmdump's own per-flow lines would repeat them.
    "flow_detail=0",
    # Halls may use public address space; who may reach the proxy is the listen address's and the
    # gateway firewall's business, and the policy denies by default anyway.
    "block_global=false",
)


NETWORK_MODES = {"proxy": "regular", "gateway": "transparent"}  # the appliance's mode -> mitmdump's


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invigil-proxy",
        description="Run the exam-hall allowlist proxy (mitmdump with the Invigil addon).",
        epilog=(
            "Example: invigil-proxy --policy /var/lib/invigil/proxy/hall-policy.json --listen-port 3128 "
            "--server-url http://127.0.0.1:8080 --service-token-file /var/lib/invigil/service.token\n"
            "A plain one-exam policy file instead gives every laptop that policy: "
            "invigil-proxy --policy exam.policy --exam-title 'Linear Algebra'\n"
            "Arguments after '--' are passed to mitmdump unchanged."
        ),
    )
    parser.add_argument(
        "--policy",
        required=True,
        help="The hall server's per-seat policy file (<data_dir>/proxy/hall-policy.json: each laptop gets "
        "its exam's policy), or one exam's policy file for every laptop (docs/proxy.md).",
    )
    parser.add_argument(
        "--mode",
        choices=("regular", "transparent"),
        default="regular",
        help="regular: laptops are configured to use the proxy; transparent: the gateway redirects to it.",
    )
    parser.add_argument(
        "--network-mode",
        choices=("proxy", "gateway"),
        default="",
        help="The appliance's INVIGIL_MODE (/etc/invigil/invigil.conf): proxy runs --mode regular, gateway "
        "--mode transparent.",
    )
    parser.add_argument(
        "--listen-host", default="127.0.0.1", help="Address to listen on (default: %(default)s)."
    )
    parser.add_argument(
        "--listen-port", type=int, default=3128, help="Port to listen on (default: %(default)s)."
    )
    parser.add_argument(
        "--intercept",
        action="store_true",
        help="Intercept TLS (only where the hall CA is trusted on the laptops): URL rules and a block page. "
        "With a per-seat file each exam's own setting counts, and this one for laptops in no exam.",
    )
    parser.add_argument(
        "--exam-title", default="", help="The exam's title on the block page (with a one-exam policy file)."
    )
    parser.add_argument(
        "--server-url",
        default="",
        help="Hall server base URL for site events; its host and port are the one place on this machine "
        "the proxy connects to.",
    )
    parser.add_argument(
        "--service-token-file",
        default="",
        help="File holding the hall's service token, <data_dir>/service.token (required with --server-url).",
    )
    parser.add_argument("--server-ca", default="", help="CA file to verify an https:// hall server.")
    parser.add_argument("--confdir", default="", help="mitmproxy's confdir (its CA lives there).")
    parser.add_argument("--policy-poll-ms", type=int, default=2000, help="Policy file check interval.")
    parser.add_argument("--mitmdump", default="", help="mitmdump to run (default: .venv-proxy/bin/mitmdump).")
    parser.add_argument(
        "--print-command", action="store_true", help="Print the command instead of running it."
    )
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return parser


def find_mitmdump(explicit: str = "") -> Path:
    """The mitmdump to run: ``--mitmdump``, ``$INVIGIL_MITMDUMP``, or the one in ``.venv-proxy``."""
    candidate = Path(explicit or os.environ.get("INVIGIL_MITMDUMP", "") or PROXY_VENV / "bin" / "mitmdump")
    if not os.access(candidate, os.X_OK):
        raise FileNotFoundError(
            f"mitmdump not found at {candidate}; create the proxy's environment with "
            "'bash scripts/setup-proxy-venv.sh' or pass --mitmdump PATH"
        )
    return candidate


def build_command(args: argparse.Namespace, mitmdump: Path) -> list[str]:
    """The mitmdump argv for parsed ``args`` (pure apart from resolving paths)."""
    settings = [
        *FIXED_SETTINGS,
        f"invigil_policy_file={Path(args.policy).resolve()}",
        f"invigil_policy_poll_ms={args.policy_poll_ms}",
        f"invigil_intercept={'true' if args.intercept else 'false'}",
        f"invigil_exam_title={args.exam_title}",
        f"invigil_server_url={args.server_url}",
        f"invigil_service_token_file={args.service_token_file}",
        f"invigil_server_ca={args.server_ca}",
    ]
    if args.confdir:
        settings.append(f"confdir={Path(args.confdir).resolve()}")
    command = [
        str(mitmdump),
        "--mode",
        args.mode,
        "--listen-host",
        args.listen_host,
        "--listen-port",
        str(args.listen_port),
        "-s",
        str(ADDON),
    ]
    for setting in settings:
        command += ["--set", setting]
    return command + list(args.extra)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.network_mode:
        args.mode = NETWORK_MODES[args.network_mode]
    if args.server_url and not args.service_token_file:
        parser.error(SERVER_URL_NEEDS_CREDENTIAL)
    try:
        mitmdump = find_mitmdump(args.mitmdump)
    except FileNotFoundError as exc:
        sys.exit(f"invigil-proxy: {exc}")
    if not Path(args.policy).is_file():
        sys.exit(f"invigil-proxy: policy file {args.policy} does not exist")
    command = build_command(args, mitmdump)
    if args.print_command:
        print(" ".join(command))
        return
    sys.stdout.flush()
    os.execv(command[0], command)  # noqa: S606 - replace this process with mitmdump, no shell
