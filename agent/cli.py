"""``invigil-agent`` (also ``python -m agent``): join the hall, show the status, capture until leaving.

A thin layer (argparse: the agent extra has no click) over ``agent.bundle``, ``agent.mdns``,
``agent.transport`` and ``agent.runtime``; every failure a student can meet ends in one plain message and
a non-zero exit. docs/agent.md describes each option.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.bundle import AgentBundle, BundleError, load_bundle, write_ca_file
from agent.capture import capture_settings, new_record_id
from agent.check import run_check
from agent.devices import (
    CategoriesError,
    DeviceChecker,
    load_categories,
    psutil_interfaces,
    psutil_process_names,
)
from agent.display import check_display_server
from agent.focus import system_probe
from agent.grab import CaptureUnavailable, MssGrabber
from agent.i18n import LANGUAGES, _, set_language
from agent.netpaths import NO_HALL, PathProbe
from agent.osinfo import os_description, without_wmi
from agent.runtime import AgentRuntime, Announcer, RuntimeSettings, SessionInfo
from agent.spool import DEFAULT_MAX_BYTES, Spool, key_from_wire
from agent.status import TerminalStatus, TkStatus, tk_available
from agent.transport import HallClient, Refused, Unreachable
from agent.uploader import Uploader
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now

log = logging.getLogger("agent")

EXAMPLE = """Example:
  invigil-agent --bundle invigil-hall-a.json
  invigil-agent --server https://10.20.0.1:8443 --bundle invigil-hall-a.json --student-number s1234567
  invigil-agent check --bundle invigil-hall-a.json      (the practice check, days before the exam)
"""
CHECK_EXAMPLE = """Example:
  invigil-agent check --bundle invigil-hall-a.json
  invigil-agent check --out ~/invigil-check --lang nl
"""


class AgentExit(Exception):
    """Stop with this message for the student (exit status 1, or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def default_state_dir() -> Path:
    """``%LOCALAPPDATA%\\Invigil`` on Windows (leaving deletes it, and so does the uninstaller), else a
    per-user directory under the system temp dir."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "Invigil"
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"invigil-agent-{user}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invigil-agent",
        description="Join the exam hall and share your screens with the invigilators while the exam runs.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--bundle", metavar="FILE", help="the agent bundle from your hall (hall CA and server addresses)")
    add(
        "--server",
        metavar="URL",
        help="the hall server, when mDNS cannot find it (e.g. https://10.20.0.1:8443)",
    )
    add("--insecure-dev", action="store_true", help="developers only: no bundle, no certificate check")
    add("--student-number", help="your student number (asked when missing)")
    add("--join-code", help="the join code shown in the hall (asked when missing)")
    add("--no-gui", action="store_true", help="show a status line in the terminal instead of a window")
    add("--no-mdns", action="store_true", help="do not browse for the hall or announce this laptop")
    add("--find-timeout", type=float, default=5.0, metavar="S", help="how long to browse mDNS (default 5)")
    add("--categories", action="append", default=[], metavar="FILE", help="extra process categories (JSON)")
    add(
        "--state-dir",
        type=Path,
        help=f"where the spool lives while the exam runs (default {default_state_dir()})",
    )
    add("--spool-max-mb", type=int, default=DEFAULT_MAX_BYTES // 2**20, help="spool cap in MiB (default 500)")
    add(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="how long leaving may send (default 60)",
    )
    add("--duration", type=float, metavar="S", help="leave by itself after S seconds (demos and tests)")
    add(
        "--source-address",
        metavar="IP",
        help="send from this local address (labs and demos running several agents on one machine)",
    )
    add("--lang", choices=LANGUAGES, help="the language of Invigil's messages (default: the system's)")
    add("-v", "--verbose", action="store_true", help="log what the agent does to stderr")
    return parser


def build_check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invigil-agent check",
        description="Practise before the exam: see what Invigil would record and what to fix. Sends nothing.",
        epilog=CHECK_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--bundle", metavar="FILE", help="the agent bundle from your hall, to check this agent fits it")
    add("--categories", action="append", default=[], metavar="FILE", help="extra process categories (JSON)")
    add(
        "--out",
        type=Path,
        default=Path("invigil-check"),
        metavar="DIR",
        help="where to put the pictures of your screens (default ./invigil-check)",
    )
    add("--lang", choices=LANGUAGES, help="the language of Invigil's messages (default: the system's)")
    return parser


def check(argv: Sequence[str], grab_factory: Callable[[], object] | None = None) -> int:
    """``invigil-agent check``: exit 0 when the laptop is ready (warnings allowed), 1 when not."""
    args = build_check_parser().parse_args(argv)
    set_language(args.lang)
    bundle = load_bundle(args.bundle) if args.bundle else None
    categories = load_categories(args.categories)
    permission = None
    try:
        display_server = check_display_server()
    except CaptureUnavailable as exc:
        display_server = "none"
        grab_factory = _unavailable(exc)
    if display_server == "wayland" and grab_factory is None:
        from agent.portal import PERMISSION_TIMEOUT_S, PortalGrabber

        grab_factory = lambda: PortalGrabber(timeout_s=PERMISSION_TIMEOUT_S)  # noqa: E731
    if display_server == "macos":
        from agent.macos_permission import check_finding

        permission = check_finding
    report = run_check(
        grab_factory=grab_factory or MssGrabber,  # type: ignore[arg-type]
        out_dir=args.out,
        display_server=display_server,
        categories=categories,
        agent_version=agent_version(),
        bundle=bundle,
        list_processes=psutil_process_names,
        list_interfaces=psutil_interfaces,
        list_paths=_check_paths(bundle).paths,
        **({"permission": permission} if permission else {}),
    )
    print("\n".join(report.lines()))
    return 0 if report.ready else 1


def _check_paths(bundle: AgentBundle | None) -> PathProbe:
    """The check's second-path probe: towards the bundle's hall server (or the default route without a
    bundle), never connecting, since the check usually runs away from the hall."""
    url = urllib.parse.urlsplit(bundle.server_urls[0]) if bundle and bundle.server_urls else None
    host = url.hostname if url and url.hostname else NO_HALL
    return PathProbe(host, (url.port if url else None) or 443, connect=False)


def _unavailable(exc: CaptureUnavailable) -> Callable[[], object]:
    def grab_factory() -> object:
        raise exc

    return grab_factory


def practice_check() -> None:
    """The Start-menu entry "Invigil practice check": ``invigil-agent check`` with its arguments."""
    main(["check", *sys.argv[1:]])


def candidate_urls(args: argparse.Namespace, bundle: AgentBundle | None) -> list[str]:
    """Where to look for the hall: --server first, else mDNS, then the bundle's addresses."""
    if args.server:
        return [args.server.rstrip("/")]
    urls: list[str] = []
    if not args.no_mdns:
        try:
            from agent.mdns import find_hall

            for hall in find_hall(args.find_timeout):
                scheme = "https" if hall.fingerprint or bundle else "http"  # fp: the hall serves TLS
                urls += [
                    f"{scheme}://{address}:{hall.port}" for address in hall.addresses if ":" not in address
                ]
        except Exception as exc:  # no multicast route, no zeroconf: the bundle's URLs still work
            log.warning("mDNS browse failed: %s", exc)
    return urls + list(bundle.server_urls if bundle else ())


def connect(
    urls: Sequence[str], ca_file: str | None, insecure_dev: bool, source_address: str | None = None
) -> HallClient:
    """The first URL whose server answers (TLS verified against the hall CA unless --insecure-dev)."""
    problems = []
    for url in urls:
        client = HallClient(
            url, ca_file=ca_file, insecure_dev=insecure_dev, timeout_s=15.0, source_address=source_address
        )
        try:
            client.request("GET", "/health")
            return client
        except (Unreachable, Refused) as exc:
            problems.append(str(exc))
    if not urls:
        raise AgentExit(
            _("Invigil cannot find the hall server: ask the invigilator for its address (--server URL).")
        )
    raise AgentExit(_("Invigil cannot reach the hall server:") + "\n  " + "\n  ".join(problems))


def ask(prompt: str, given: str | None, gui: bool) -> str:
    if given:
        return given.strip()
    if gui:
        import tkinter
        from tkinter import simpledialog

        root = tkinter.Tk()
        root.withdraw()
        answer = simpledialog.askstring("Invigil", prompt, parent=root)
        root.destroy()
    else:
        answer = input(f"{prompt}: ")
    if not answer or not answer.strip():
        raise AgentExit(_("Nothing entered: start Invigil again when you are ready."))
    return answer.strip()


def agent_version() -> str:
    try:
        from importlib.metadata import version

        return version("invigil")
    except Exception:
        return "0.1.0"


def run(argv: Sequence[str] | None = None, grab_factory: Callable[[], object] | None = None) -> int:
    """Parse, join, run until leaving; returns the exit status. ``main`` wraps it for the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        return check(argv[1:], grab_factory)
    args = build_parser().parse_args(argv)
    set_language(args.lang)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    display_server = check_display_server()  # raises CaptureUnavailable (Wayland without portal, no display)
    if args.bundle is None and not args.insecure_dev:
        raise AgentExit(
            "Start Invigil with the bundle from your hall, e.g. invigil-agent --bundle invigil-hall.json "
            "(it lets Invigil check that it talks to the real hall server). "
            "Ask the invigilator if you have none."
        )
    bundle = load_bundle(args.bundle) if args.bundle else None
    categories = load_categories(args.categories)
    if display_server == "wayland" and grab_factory is None:
        grab_factory = ask_portal_permission()  # raises CaptureUnavailable before the student joins
    if display_server == "macos" and grab_factory is None:
        from agent.macos_permission import PermissionGuardedGrab, ensure_screen_recording

        ensure_screen_recording()  # prompts and raises with what to do, before the student joins
        grab_factory = lambda: PermissionGuardedGrab(MssGrabber())  # noqa: E731
    gui = not args.no_gui and tk_available()
    state_dir = args.state_dir or default_state_dir()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_file = write_ca_file(bundle, state_dir) if bundle else None
    agent_id = new_record_id()
    os_name = os_description()
    try:
        urls = candidate_urls(args, bundle)
        client = connect(urls, str(ca_file) if ca_file else None, bundle is None, args.source_address)
        student_number = ask(_("Your student number"), args.student_number, gui)
        join_code = ask(_("The join code shown in the hall"), args.join_code, gui)
        answer = client.enrol(
            Enrolment(student_number, join_code, agent_id, utc_now(), agent_version(), os_name)
        )
    except (Refused, Unreachable, AgentExit) as exc:
        forget_state(state_dir, ca_file)
        if isinstance(exc, Refused):
            raise AgentExit(
                _("The hall server did not let you join: {reason}").format(reason=exc.message or exc.code)
            ) from None
        raise AgentExit(str(exc)) from None
    exam = answer.get("exam", {})
    try:
        spool_key = key_from_wire(answer.get("spool_key"))
    except ValueError as exc:
        raise AgentExit(str(exc)) from None
    if spool_key is None:
        log.warning("the hall server issues no spool key: a spool left by a crash will not be sent")
    spool = Spool(state_dir / "spool", max_bytes=args.spool_max_mb * 2**20, key=spool_key)
    if spool.leftovers_deleted:
        log.info("deleted %d records a session that never joined again left behind", spool.leftovers_deleted)
    uploader = Uploader(client, spool, new_id=new_record_id)
    uploader.state.capture_interval_s = float(exam.get("capture_interval_s", 5))
    uploader.state.connected = True
    announcer = None if args.no_mdns else start_announcer(agent_id)
    runtime = AgentRuntime(
        state_dir=state_dir,
        spool=spool,
        uploader=uploader,
        session=SessionInfo(bundle.hall if bundle else "", str(exam.get("title", "")), student_number),
        grab_factory=grab_factory or MssGrabber,  # type: ignore[arg-type]
        focus_factory=lambda: system_probe(display_server),
        devices=DeviceChecker(
            categories,
            new_record_id,
            list_paths=PathProbe(client.host, client.port, args.source_address).paths,
        ),
        announcer=announcer,
        settings=RuntimeSettings(
            capture=capture_settings(answer.get("tile_updates")),
            drain_timeout_s=args.drain_timeout,
            duration_s=args.duration,
        ),
        new_id=new_record_id,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runtime.leave("signal"))
    runtime.start({"os": os_name, "agent_version": agent_version(), "display_server": display_server})
    (TkStatus(runtime) if gui else TerminalStatus(runtime)).show()
    runtime.finished.wait()
    if runtime.left_cleanly:
        print(_("You have left the exam. Everything was sent; Invigil deleted its data on this laptop."))
        return 0
    print(
        _("You have left the exam. Some captures could not be sent; Invigil deleted its data on this laptop.")
    )
    return 3


def ask_portal_permission() -> Callable[[], object]:
    """Grab once through the screenshot portal, with time for a permission dialog, before the student joins.

    GNOME asks the student the first time an app takes screenshots: better at start, with time to answer,
    than silently failing every capture of the exam. Returns the grab factory for the runtime.
    """
    from agent.portal import PERMISSION_TIMEOUT_S, PortalGrabber

    print(
        "Invigil is asking your desktop for permission to take screenshots. "
        'If a window asks whether Invigil may take screenshots, choose "Allow".',
        file=sys.stderr,
    )
    with PortalGrabber(timeout_s=PERMISSION_TIMEOUT_S) as trial:
        trial()
    return PortalGrabber


def forget_state(state_dir: Path, ca_file: Path | None) -> None:
    """Undo what a failed join left: the CA copy, and the state dir if nothing else is in it."""
    if ca_file is not None:
        ca_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()  # only when empty: a spool left by a crash is drained by the next join


def start_announcer(agent_id: str) -> Announcer | None:
    """Announce ``_invigil-agent._tcp`` (agent.mdns); a laptop without multicast still takes the exam."""
    try:
        from agent.mdns import AgentAnnouncer

        return AgentAnnouncer(agent_id, state="enrolled")
    except Exception as exc:
        log.warning("cannot announce this laptop over mDNS: %s", exc)
        return None


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``invigil-agent``)."""
    without_wmi()
    try:
        sys.exit(run(argv))
    except (AgentExit, BundleError, CategoriesError, CaptureUnavailable) as exc:
        print(f"invigil-agent: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "status", 2 if isinstance(exc, CaptureUnavailable) else 1))
    except KeyboardInterrupt:
        sys.exit(130)
