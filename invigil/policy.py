"""The per-exam network policy: its text grammar and the allow/block decision (pure, stdlib only).

Organisers write one rule per line (see docs/policy.md)::

    allow exam.example.nl              # this host, every port and path
    allow *.uni.example                # every subdomain, NOT uni.example itself
    allow docs.python.org/3/library/   # URL level: this path and below, on a segment boundary
    allow 10.0.0.0/24                  # IP literals and networks
    block *.chatgpt.com                # block wins over any allow

Anything no rule allows is denied. ``parse_policy`` reports every bad line with its number at once.
``Policy.decide_host`` decides a bare host (CONNECT target, SNI or DNS name), ``Policy.decide_url`` the URL
of an intercepted request.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote

from invigil.hosts import is_ip, normalize_host

__all__ = ["Decision", "Policy", "PolicyError", "Rule", "normalize_host", "parse_policy"]

Action = Literal["allow", "block"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_LINE_CHARS = 2000
URL_SCHEMES = ("http", "https", "ws", "wss")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "".join(sorted(_UNRESERVED)) + "!$&'()*+,;=:@"
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


class PolicyError(ValueError):
    """A policy text has bad lines. ``errors`` lists every one as ``(line_number, what_to_fix)``."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = tuple(errors)
        self.line = self.errors[0][0]
        super().__init__("\n".join(f"line {line}: {message}" for line, message in self.errors))


@dataclass(frozen=True)
class Rule:
    """One policy line. ``host`` is canonical (see ``normalize_host``); ``kind`` says how it matches."""

    action: Action
    kind: Literal["exact", "suffix", "network"]
    host: str
    path: str | None = None
    line: int = field(default=0, compare=False)
    network: IPNetwork | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """The rule as a policy line (what ``parse_policy`` reads back into an equal rule)."""
        target = f"*.{self.host}" if self.kind == "suffix" else self.host
        if ":" in target and self.kind == "exact":
            target = f"[{target}]"
        return f"{self.action} {target}{self.path or ''}"

    def matches_host(self, host: str) -> bool:
        """Whether a canonical ``host`` falls under this rule's host part (paths are checked elsewhere)."""
        if self.kind == "exact":
            return host == self.host
        if self.kind == "suffix":
            return host.endswith("." + self.host) and not is_ip(host)
        assert self.network is not None
        return is_ip(host) and ipaddress.ip_address(host) in self.network

    def matches_path(self, path: str) -> bool:
        """Segment-boundary prefix match of a canonical path. Blocks compare case-insensitively, since some
        servers do; allows compare exactly, so a case trick can only lose access."""
        if self.path is None:
            return True
        prefix = self.path.rstrip("/")
        if self.action == "block":
            path, prefix = path.lower(), prefix.lower()
        return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Decision:
    """What the policy says about a host or URL. ``reason`` names the rule and its line, for staff to read.

    ``url_rules_apply`` (host decisions only) means path rules exist for this host: a proxy that does not
    intercept TLS can only decide at host level, and must inspect the URL to enforce them.
    """

    allowed: bool
    reason: str
    rule: Rule | None = None
    url_rules_apply: bool = False


def _denied(reason: str) -> Decision:
    return Decision(False, reason)


def _by_rule(rule: Rule, url_rules_apply: bool = False) -> Decision:
    verb = "allowed" if rule.action == "allow" else "blocked"
    return Decision(rule.action == "allow", f"{verb} by line {rule.line}: {rule.text}", rule, url_rules_apply)


@dataclass(frozen=True)
class Policy:
    """A parsed policy: rules in file order. Build it with ``parse_policy``."""

    rules: tuple[Rule, ...] = ()

    def decide_host(self, host: str, port: int | None = None) -> Decision:
        """Decide a bare host (CONNECT target, TLS SNI, DNS name) before any URL is known.

        A host-level block wins; then a host-level allow; then a URL-level allow for this host allows the host
        with ``url_rules_apply`` set. Otherwise denied. Never raises.
        """
        try:
            canonical = normalize_host(host)
        except ValueError as exc:
            return _denied(f"invalid host {str(host)[:100]!r}: {exc}")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            return _denied(f"invalid port {port!r}")
        rules = [rule for rule in self.rules if rule.matches_host(canonical)]
        has_path_rules = any(rule.path is not None for rule in rules)
        for rule in rules:
            if rule.action == "block" and rule.path is None:
                return _by_rule(rule)
        for rule in rules:
            if rule.action == "allow" and rule.path is None:
                return _by_rule(rule, has_path_rules)
        for rule in rules:
            if rule.action == "allow":
                return _by_rule(rule, True)
        return _denied(f"no rule allows {canonical} (default deny)")

    def decide_url(self, url: str) -> Decision:
        """Decide a full ``http(s)``/``ws(s)`` URL, as the proxy sees it on an intercepted request.

        The path is judged in every way a server might read it (raw, percent-decoded once or twice, ``//``
        kept or merged, ``;params`` kept or dropped): a block matching any reading blocks, and an allow
        must hold for all of them. Never raises: unparsable input is denied with the reason.
        """
        try:
            host, raw_path = split_url(url)
        except ValueError as exc:
            return _denied(f"unparsable URL: {exc}")
        rules = [rule for rule in self.rules if rule.matches_host(host)]
        views = path_views(raw_path)
        for rule in rules:
            if rule.action == "block" and any(rule.matches_path(view) for view in views):
                return _by_rule(rule)
        allows = [rule for rule in rules if rule.action == "allow"]
        for rule in allows:
            if rule.path is None:
                return _by_rule(rule)
        unallowed = [view for view in views if not any(rule.matches_path(view) for rule in allows)]
        if allows and not unallowed:
            return _by_rule(next(rule for rule in allows if rule.matches_path(views[0])))
        if allows:
            return _denied(f"no rule allows path {unallowed[0][:200]} on {host} (default deny)")
        return _denied(f"no rule allows {host} (default deny)")

    def to_text(self) -> str:
        """The policy as canonical text, one rule per line; ``parse_policy(p.to_text()) == p``."""
        return "".join(rule.text + "\n" for rule in self.rules)

    def hosts_summary(self) -> dict[str, list[str]]:
        """Rule targets grouped by action, for the organiser's CLI and the invigilator's exam page."""
        summary: dict[str, list[str]] = {"allow": [], "block": []}
        for rule in self.rules:
            summary[rule.action].append(rule.text.split(" ", 1)[1])
        return summary


def parse_policy(text: str) -> Policy:
    """Parse a policy text. Raises ``PolicyError`` listing every bad line with its number.

    The same errors wherever a policy is read: an organiser setting an exam's policy sees what the proxy
    and the sentinel would refuse.
    """
    rules: list[Rule] = []
    errors: list[tuple[int, str]] = []
    seen: dict[tuple[object, ...], int] = {}
    # Split on newlines only (not str.splitlines): line numbers must match what the organiser's editor shows.
    for number, raw in enumerate(text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rule = _parse_line(line, number)
        except ValueError as exc:
            errors.append((number, str(exc)))
            continue
        key = (rule.action, rule.kind, rule.host, rule.path.rstrip("/") if rule.path else None)
        if key in seen:
            errors.append((number, f"duplicate of line {seen[key]}; remove one"))
            continue
        seen[key] = number
        rules.append(rule)
    if errors:
        raise PolicyError(errors)
    return Policy(tuple(rules))


def _parse_line(line: str, number: int) -> Rule:
    if len(line) > MAX_LINE_CHARS:
        raise ValueError(f"line is longer than {MAX_LINE_CHARS} characters")
    words = line.split()
    if words[0].lower() not in ("allow", "block"):
        raise ValueError(f"unknown action {words[0]!r}; start the line with 'allow' or 'block'")
    action: Action = "allow" if words[0].lower() == "allow" else "block"
    if len(words) != 2:
        raise ValueError(
            f"write exactly one host or host/path after '{action}', e.g. '{action} exam.example.nl'"
        )
    target = words[1]
    if _SCHEME_RE.match(target) and "://" in target:
        raise ValueError(f"leave out the scheme: write '{action} {target.split('://', 1)[1]}'")
    if "?" in target or "\\" in target:
        raise ValueError("a rule is a host or host/path; remove the '?query' or backslash")
    host_part, path = _split_target(target)
    if "@" in host_part:
        raise ValueError(f"remove the 'user@' part: write '{action} {target.rsplit('@', 1)[1]}'")
    wildcard = host_part.startswith("*.")
    if "*" in host_part[2 if wildcard else 0 :]:
        raise ValueError("'*' may only start a host, as in '*.example.nl' (subdomains of example.nl)")
    try:
        host = normalize_host(host_part[2:] if wildcard else host_part)
    except ValueError as exc:
        raise ValueError(f"bad host {host_part!r}: {exc}") from None
    network = None
    if path is not None and is_ip(host) and (prefix_len := path[1:].split("/", 1)[0]).isdigit():
        network = _parse_network(host, prefix_len)
        path = path[1 + len(prefix_len) :] or None
    if path is not None:
        path = _parse_rule_path(path)
    if wildcard:
        if is_ip(host):
            raise ValueError(f"'*.' cannot precede an IP address; write a network such as '{host}/24'")
        if action == "allow" and "." not in host:
            raise ValueError(f"'allow *.{host}' would allow a whole top-level domain; name the sites instead")
        return Rule(action, "suffix", host, path, number)
    if network is not None:
        return Rule(action, "network", str(network), path, number, network)
    return Rule(action, "exact", host, path, number)


def _split_target(target: str) -> tuple[str, str | None]:
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket:
            raise ValueError("missing ']' after the IPv6 address")
        host = "[" + host + "]"
    else:
        host, slash, rest = target.partition("/")
        rest = slash + rest
    if rest.startswith(":") or (not target.startswith("[") and host.count(":") == 1):
        raise ValueError("rules cover every port; remove the ':port'")
    if rest and not rest.startswith("/"):
        raise ValueError(f"unexpected {rest!r} after the host")
    return host, (rest if rest and rest != "/" else None)


def _parse_network(host: str, prefix_len: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(f"{host}/{prefix_len}")
    except ValueError as exc:
        if "host bits set" in str(exc):
            suggestion = ipaddress.ip_network(f"{host}/{prefix_len}", strict=False)
            raise ValueError(f"{host}/{prefix_len} has host bits set; did you mean {suggestion}?") from None
        raise ValueError(f"bad network {host}/{prefix_len}: {exc}") from None


def _parse_rule_path(path: str) -> str | None:
    segments = [_canonical_segment(s) for s in path.split("/")[1:]]
    if any(s in (".", "..") for s in segments):
        raise ValueError("write the path without '.' or '..' segments")
    if "" in segments[:-1]:
        raise ValueError("the path has an empty segment ('//'); remove the extra slash")
    canonical = "/" + "/".join(segments)
    return None if canonical == "/" else canonical


def split_url(url: str) -> tuple[str, str]:
    """Split an absolute URL into (canonical host, raw path), as a browser would read it (WHATWG-like):
    tabs and newlines are dropped, backslashes count as slashes, ``user:pass@`` is discarded (the host is
    after the last ``@``), and the port is checked. Raises ``ValueError``."""
    if not isinstance(url, str):
        raise ValueError("URL must be text")
    text = re.sub(r"[\t\n\r]", "", url).strip(_C0_AND_SPACE)
    match = _SCHEME_RE.match(text)
    if not match or match.group(1).lower() not in URL_SCHEMES:
        raise ValueError(f"not an absolute {'/'.join(URL_SCHEMES)} URL")
    rest = text[match.end() :].replace("\\", "/").lstrip("/")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    path = re.split(r"[?#]", rest[len(authority) :], maxsplit=1)[0]
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        host, bracket, port = hostport.partition("]")
        if not bracket:
            raise ValueError("missing ']' after the IPv6 address")
        host += "]"
        if port and not port.startswith(":"):
            raise ValueError(f"unexpected {port!r} after the IPv6 address")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and not (port.isascii() and port.isdigit() and int(port) < 65536):
        raise ValueError(f"invalid port {port[:20]!r}")
    try:
        decoded = unquote(host, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("host has percent-escapes that are not UTF-8") from None
    return normalize_host(decoded), path or "/"


#: How a server may percent-decode a path before it resolves dot segments: not at all (RFC 3986: only
#: escapes of unreserved characters count as those characters), once (what it decoded is literal text, so
#: "%252e" is a directory named "%2e"), or once and then again for unreserved escapes ("%252e" is ".").
_DECODINGS = ("none", "once", "twice")


def path_views(raw_path: str) -> list[str]:
    """Every canonical reading of a URL path a server might take; the first is the standard (RFC 3986) one."""
    views: list[str] = []
    for decoding, merge_slashes, drop_params in itertools.product(_DECODINGS, (False, True), (False, True)):
        view = _canonical_path(raw_path, decoding, merge_slashes, drop_params)
        if view not in views:
            views.append(view)
    return views


def _canonical_path(raw: str, decoding: str, merge_slashes: bool, drop_params: bool) -> str:
    path = raw.replace("\\", "/")
    if decoding != "none":
        path = unquote(path, errors="surrogateescape").replace("\\", "/")
    output: list[str] = []
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if drop_params:
            segment = segment.split(";", 1)[0]
        if decoding == "once":
            segment = quote(segment, safe=_PATH_SAFE, errors="surrogateescape")  # literal text, "%" too
        segment = _canonical_segment(segment)
        if segment == "..":
            if output:
                output.pop()
        elif segment == "." or (segment == "" and merge_slashes and not last):
            pass
        else:
            output.append(segment)
        if last and segment in (".", ".."):
            output.append("")
    return "/" + "/".join(output)


def _canonical_segment(segment: str) -> str:
    """Decode escapes of unreserved characters, upper-case the other escapes, escape everything unsafe."""
    parts = _ESCAPE_RE.split(segment)  # alternates: text, hex digits, text, ...
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            char = chr(int(part, 16))
            out.append(char if char in _UNRESERVED else "%" + part.upper())
        else:
            out.append(quote(part, safe=_PATH_SAFE, errors="surrogateescape"))
    return "".join(out)
