"""What the proxy decides at each step of a connection, whose policy decides it, the block page, and the
policy file watcher (pure, stdlib only apart from reading the policy file).

The mitmproxy addon (``netpolicy/addon.py``) is the I/O shell around these functions; keeping them here
lets the main test suite check them without mitmproxy installed.

Every decision is made with the policy of the laptop behind the connection's client address (``seat_of``):
its exam's policy and interception setting from the per-seat file (``invigil.seatpolicy``), the one policy
of a plain policy file, or, for an address in no running exam, ``NotEnrolled``: nothing but the hall server's
agent API, so the laptop can still join.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from invigil.hosts import normalize_host
from invigil.policy import Decision, Policy, split_url
from invigil.seatpolicy import NOT_ENROLLED, SeatPolicy, parse_policy_document
from netpolicy.appliance import Endpoint

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


class Decider(Protocol):
    """What decides a connection: a ``Policy``, or ``NotEnrolled``."""

    def decide_host(self, host: str, port: int | None = None) -> Decision: ...

    def decide_url(self, url: str) -> Decision: ...


@dataclass(frozen=True)
class NotEnrolled:
    """The policy of a laptop whose address is in no running exam: it may reach the hall server's agent API
    (the host and port of ``--server-url``), to join, and nothing else; every refusal tells the student
    what to do."""

    address: str
    agent_api: Endpoint | None = None

    @property
    def reason(self) -> str:
        return NOT_ENROLLED.format(address=self.address)

    def decide_host(self, host: str, port: int | None = None) -> Decision:
        if self.agent_api is not None:
            api_host, api_port = self.agent_api
            try:
                same = normalize_host(host) == normalize_host(api_host)
            except ValueError:
                same = False
            if same and port in (None, api_port):
                return Decision(True, "the hall server's agent API, open to laptops in no running exam")
        return Decision(False, self.reason)

    def decide_url(self, url: str) -> Decision:
        try:
            host, _ = split_url(url)
            parts = urlsplit(url.strip())
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:
            return Decision(False, self.reason)
        return self.decide_host(host, port)


@dataclass(frozen=True)
class Seat:
    """Who is behind a client address, for the proxy: the policy that decides its connections, whether its
    TLS is intercepted, the exam named on its block page, and whether it is in a running exam at all."""

    policy: Decider
    intercept: bool
    exam_title: str
    enrolled: bool = True


def seat_of(
    document: SeatPolicy | None, address: str, intercept: bool, exam_title: str, agent_api: Endpoint | None
) -> Seat:
    """The seat behind ``address`` (the connection's peer address, never a header). ``intercept`` and
    ``exam_title`` are the proxy's options: they apply to a plain one-exam policy file, and ``intercept``
    also to laptops in no running exam; a per-seat file names each exam's own."""
    if document is None:
        return Seat(Policy(), intercept, exam_title)  # not configured yet: deny everything
    if document.single is not None:
        return Seat(document.single, intercept, exam_title)
    exam = document.exam_of(address)
    if exam is None:
        return Seat(NotEnrolled(address, agent_api), intercept, "", enrolled=False)
    return Seat(exam.policy, exam.intercept, exam.title)


def canonical_or_raw(host: str) -> str:
    """The canonical host for the event log, or the raw text when it is no valid host at all."""
    try:
        return normalize_host(host)
    except ValueError:
        return host.strip().lower()[:253]


def decide_tls(
    policy: Decider, sni: str | None, connect_host: str | None, destination_ip: str | None
) -> tuple[str, Decision]:
    """Decide a TLS ClientHello, before any upstream TLS; returns (host to log, decision).

    Regular mode passes ``connect_host`` (already allowed by ``http_connect``): the SNI name must be the
    same host, or a CONNECT to an allowed host could carry a TLS session for a blocked one (domain
    fronting, ECH outer names). Transparent mode has no CONNECT: it decides on the SNI name, or on the
    destination address when the client sends no SNI.
    """
    if connect_host is not None:
        connect = canonical_or_raw(connect_host)
        if sni is None:
            return connect, policy.decide_host(connect_host)
        try:
            same = normalize_host(sni) == normalize_host(connect_host)
        except ValueError as exc:
            return canonical_or_raw(sni), Decision(False, f"invalid TLS server name {sni[:100]!r}: {exc}")
        if not same:
            return canonical_or_raw(sni), Decision(
                False, f"TLS server name {canonical_or_raw(sni)} does not match CONNECT host {connect}"
            )
        return connect, policy.decide_host(sni)
    if sni is not None:
        return canonical_or_raw(sni), policy.decide_host(sni)
    if destination_ip is None:
        return "", Decision(False, "no TLS server name and no destination address")
    return canonical_or_raw(destination_ip), policy.decide_host(destination_ip)


def host_of_header(host_header: str) -> str:
    """The canonical host of a ``Host`` header or ``:authority`` (port and brackets removed).
    Raises ``ValueError``."""
    return split_url(f"http://{host_header}/")[0]


def decide_request(
    policy: Decider, url: str, target_host: str, host_header: str | None
) -> tuple[str, Decision]:
    """Decide one HTTP request before its body is read; returns (host to log, decision).

    ``url`` is the URL the proxy will fetch, ``target_host`` the host it will connect to, ``host_header``
    the Host header or ``:authority`` the server will read. A Host header naming another site than the
    target is refused: the server at an allowed address would otherwise serve a blocked site (fronting).
    """
    target = canonical_or_raw(target_host)
    if host_header:
        try:
            named = host_of_header(host_header)
        except ValueError as exc:
            return target, Decision(False, f"invalid Host header {host_header[:100]!r}: {exc}")
        if named != target:
            return target, Decision(False, f"Host header {named} does not match the requested host {target}")
    return target, policy.decide_url(url)


BLOCK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:42em;margin:4em auto;padding:0 1em;color:#222}}
h1{{color:#a40000}}code{{background:#f3f3f3;padding:.1em .3em;word-break:break-all}}</style></head>
<body><h1>{heading}</h1>
<p>{what}</p>
<p>Reason: {reason}</p>
<p>{then}</p>
</body></html>
"""


def block_page(exam_title: str, target: str, reason: str, enrolled: bool = True) -> str:
    """The HTML the proxy answers a blocked request with (status 403). A laptop in no running exam
    (``enrolled=False``) is told to join the exam first."""
    code = f"<code>{html.escape(target[:300])}</code>"
    if enrolled:
        return BLOCK_PAGE.format(
            title="Blocked during the exam",
            heading="This site is blocked during the exam",
            what=f"The network policy of <strong>{html.escape(exam_title or 'this exam')}</strong> does not "
            f"allow {code}.",
            reason=html.escape(reason),
            then="This attempt has been recorded. If you need this site for the exam, raise your hand.",
        )
    return BLOCK_PAGE.format(
        title="Join the exam first",
        heading="Start the Invigil agent and join the exam first",
        what=f"This laptop is in no running exam, so the hall's network lets it reach nothing but the hall "
        f"server, not {code}.",
        reason=html.escape(reason),
        then="Start the Invigil agent, enter the join code shown in the hall, then reload this page.",
    )


@dataclass
class PolicyFile:
    """The policy file and what was last read from it. ``load`` at start; ``reload_if_changed`` polls.

    Either kind of file (``invigil.seatpolicy.parse_policy_document``): the hall server's per-seat JSON or a
    plain one-exam policy. It is re-read when its mtime, size or inode changes (an atomic rename changes
    the inode). A file with errors leaves the previous document in force.
    """

    path: Path
    document: SeatPolicy | None = None
    stamp: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int]:
        info = os.stat(self.path)
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def load(self) -> SeatPolicy:
        """Read and parse the file. Raises ``OSError``, ``UnicodeDecodeError``, or ``ValueError`` (a
        ``PolicyError`` or ``SeatPolicyError`` with every problem)."""
        stamp = self._stat()
        text = self.path.read_text(encoding="utf-8")
        self.document = parse_policy_document(text)
        self.stamp = stamp
        return self.document

    def reload_if_changed(self) -> tuple[bool, str | None]:
        """Returns (changed, problem). ``problem`` names what is wrong with a changed file that was not
        taken (its numbered errors, or why it cannot be read); the old document then stays."""
        try:
            stamp = self._stat()
        except OSError as exc:
            if self.stamp is None:
                return False, None
            self.stamp = None  # report once, re-read when it comes back
            return False, f"cannot read {self.path}: {exc.strerror}"
        if stamp == self.stamp:
            return False, None
        self.stamp = stamp
        try:
            text = self.path.read_text(encoding="utf-8")
            document = parse_policy_document(text)
        except (OSError, UnicodeDecodeError) as exc:
            return False, f"cannot read {self.path}: {exc}"
        except ValueError as exc:
            return False, str(exc)
        self.document = document
        return True, None
