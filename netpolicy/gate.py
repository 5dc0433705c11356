"""What the proxy decides at each step of a connection, the block page, and the policy file watcher (pure,
stdlib only apart from reading the policy file).

The mitmproxy addon (``netpolicy/addon.py``) is the I/O shell around these functions; keeping them here
lets the main test suite check them without mitmproxy installed.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from invigil.hosts import normalize_host
from invigil.policy import Decision, Policy, PolicyError, parse_policy, split_url


def canonical_or_raw(host: str) -> str:
    """The canonical host for the event log, or the raw text when it is no valid host at all."""
    try:
        return normalize_host(host)
    except ValueError:
        return host.strip().lower()[:253]


def decide_tls(
    policy: Policy, sni: str | None, connect_host: str | None, destination_ip: str | None
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
    policy: Policy, url: str, target_host: str, host_header: str | None
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
<html lang="en"><head><meta charset="utf-8"><title>Blocked during the exam</title>
<style>body{{font-family:sans-serif;max-width:42em;margin:4em auto;padding:0 1em;color:#222}}
h1{{color:#a40000}}code{{background:#f3f3f3;padding:.1em .3em;word-break:break-all}}</style></head>
<body><h1>This site is blocked during the exam</h1>
<p>The network policy of <strong>{exam}</strong> does not allow <code>{target}</code>.</p>
<p>Reason: {reason}</p>
<p>This attempt has been recorded. If you need this site for the exam, raise your hand.</p>
</body></html>
"""


def block_page(exam_title: str, target: str, reason: str) -> str:
    """The HTML the intercepting proxy answers a blocked request with (status 403)."""
    return BLOCK_PAGE.format(
        exam=html.escape(exam_title or "this exam"),
        target=html.escape(target[:300]),
        reason=html.escape(reason),
    )


@dataclass
class PolicyFile:
    """The policy file and the policy last read from it. ``load`` at start; ``reload_if_changed`` polls.

    The file is re-read when its mtime, size or inode changes (an editor's atomic rename changes the
    inode). A file with errors leaves the previous policy in force.
    """

    path: Path
    policy: Policy | None = None
    stamp: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int]:
        info = os.stat(self.path)
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def load(self) -> Policy:
        """Read and parse the file. Raises ``OSError`` or ``PolicyError`` (with every bad line)."""
        stamp = self._stat()
        text = self.path.read_text(encoding="utf-8")
        self.policy = parse_policy(text)
        self.stamp = stamp
        return self.policy

    def reload_if_changed(self) -> tuple[bool, str | None]:
        """Returns (changed, problem). ``problem`` names what is wrong with a changed file that was not
        taken (its line-numbered errors, or why it cannot be read); the old policy then stays."""
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
            policy = parse_policy(text)
        except PolicyError as exc:
            return False, str(exc)
        except (OSError, UnicodeDecodeError) as exc:
            return False, f"cannot read {self.path}: {exc}"
        self.policy = policy
        return True, None
