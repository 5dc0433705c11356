"""The proxy's per-seat policy file: each running exam's policy and which laptop address sits in which exam
(pure, stdlib only; docs/proxy.md "Per-seat policy").

The hall server writes it (``hall_server/policy_publish.py``) to ``<data_dir>/proxy/hall-policy.json``; the
proxy's addon and the sentinel read it and decide each connection or packet by the exam of the laptop behind
its client address::

    {"version": 1, "written_at": "2026-01-20T09:00:00.000Z",
     "exams": {"3": {"title": "Linear Algebra", "intercept": false, "policy": "allow exam.example.nl\\n"}},
     "seats": {"10.20.0.57": "3"}}

Each exam's policy is parsed on its own (``invigil.policy``), so two exams may share lines. An address in
no seat gets the "not enrolled" policy (``NOT_ENROLLED``): nothing but the hall server. Both sides use this
one module, so what the server agrees to write is exactly what the proxy agrees to read.

A file that is not JSON (its first character is not ``{``) is a plain one-exam policy: the same policy for
every seat, the proxy's single-policy mode (``invigil-proxy --policy exam.policy``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from invigil.hosts import is_ip, normalize_host
from invigil.policy import Policy, PolicyError, parse_policy

__all__ = [
    "FILE_NAME",
    "FORMAT_VERSION",
    "NOT_ENROLLED",
    "ExamRules",
    "SeatPolicy",
    "SeatPolicyError",
    "canonical_address",
    "parse_policy_document",
    "parse_seat_policy",
    "seat_policy_text",
]

FORMAT_VERSION = 1
FILE_NAME = "hall-policy.json"
#: What a laptop in no running exam is told (the block page, the CONNECT refusal, the site event's reason).
NOT_ENROLLED = (
    "this laptop ({address}) is in no running exam: start the Invigil agent and join the exam first"
)
MAX_TITLE_CHARS = 200


class SeatPolicyError(ValueError):
    """A per-seat policy file is unusable. ``problems`` lists every one; ``str()`` gives one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class ExamRules:
    """What one running exam's seats get: its policy, whether their TLS is intercepted, and the title named
    on the block page."""

    exam_id: int
    title: str
    intercept: bool
    policy: Policy


@dataclass(frozen=True)
class SeatPolicy:
    """A parsed policy file. ``single`` is set for a plain one-exam policy file (every seat gets it);
    otherwise ``seats`` maps a canonical client address to an exam of ``exams``."""

    exams: Mapping[int, ExamRules] = field(default_factory=dict)
    seats: Mapping[str, int] = field(default_factory=dict)
    single: Policy | None = None
    written_at: str = ""

    def exam_of(self, address: str) -> ExamRules | None:
        """The running exam of the laptop at ``address`` (any spelling of it), or None: not enrolled.
        Never consulted in single-policy mode; an unparsable address is in no exam."""
        try:
            exam_id = self.seats.get(canonical_address(address))
        except ValueError:
            return None
        return None if exam_id is None else self.exams.get(exam_id)

    def policy_for(self, address: str) -> Policy:
        """The policy that judges traffic from ``address``: the single policy, the seat's exam's, or the
        empty policy (everything denied) for a laptop in no running exam."""
        if self.single is not None:
            return self.single
        exam = self.exam_of(address)
        return exam.policy if exam is not None else Policy()

    @property
    def rule_count(self) -> int:
        if self.single is not None:
            return len(self.single.rules)
        return sum(len(exam.policy.rules) for exam in self.exams.values())

    def summary(self) -> str:
        """For the log: how much the file holds."""
        if self.single is not None:
            return f"one policy for every seat, {self.rule_count} rule(s)"
        return f"{len(self.exams)} exam(s), {len(self.seats)} seat(s), {self.rule_count} rule(s)"


def canonical_address(address: str) -> str:
    """The one spelling of a client's IP address (IPv4-mapped IPv6 as IPv4, IPv6 compressed, no zone).
    Raises ``ValueError`` for anything that is not an IP address."""
    host = normalize_host(address)
    if not is_ip(host):
        raise ValueError(f"{address!r} is not an IP address")
    return host


def printable(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """``text`` with every non-printable character (line breaks, control and format characters, lone
    surrogates) replaced by a space, cut to ``limit``: a title fit for a log line or a page."""
    return "".join(char if char.isprintable() else " " for char in text)[:limit]


def seat_policy_text(
    exams: Mapping[int, tuple[str, bool, str]], seats: Mapping[str, int], written_at: str
) -> str:
    """The file for ``exams`` (exam id -> (title, intercept, policy text)) and ``seats`` (client address
    -> exam id). Raises ``SeatPolicyError`` naming every exam whose policy has errors (with its lines), and
    every seat that is no address or names no exam of ``exams``: the server never writes a file the proxy
    would refuse."""
    document = {
        "version": FORMAT_VERSION,
        "written_at": written_at,
        "exams": {
            str(exam_id): {"title": printable(title), "intercept": bool(intercept), "policy": text}
            for exam_id, (title, intercept, text) in sorted(exams.items())
        },
        "seats": {_spelled(address): str(exam_id) for address, exam_id in sorted(seats.items())},
    }
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    parse_seat_policy(text)
    return text


def _spelled(address: str) -> str:
    try:
        return canonical_address(address)
    except ValueError:
        return address  # parse_seat_policy names it


def parse_policy_document(text: str) -> SeatPolicy:
    """Read a policy file of either kind: per-seat JSON (first character ``{``) or a plain one-exam policy.
    Raises ``SeatPolicyError`` or ``PolicyError`` (both ``ValueError``) with every problem."""
    if text.lstrip("\ufeff \t\r\n").startswith("{"):
        return parse_seat_policy(text)
    return SeatPolicy(single=parse_policy(text))


def parse_seat_policy(text: str) -> SeatPolicy:
    """Parse per-seat JSON; every problem is reported at once, each exam's policy errors with their lines
    (``exam 3: line 8: duplicate of line 4``)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeatPolicyError([f"not valid JSON: {exc}"]) from None
    if not isinstance(document, dict):
        raise SeatPolicyError(["the file must hold a JSON object"])
    problems: list[str] = []
    if document.get("version") != FORMAT_VERSION:
        raise SeatPolicyError(
            [f"version {document.get('version')!r} is not {FORMAT_VERSION}: this proxy reads version 1"]
        )
    written_at = document.get("written_at", "")
    if not isinstance(written_at, str):
        problems.append("written_at must be text")
        written_at = ""
    exams = _parse_exams(document.get("exams"), problems)
    raw_exams = document.get("exams")
    named = set(raw_exams) if isinstance(raw_exams, dict) else set()
    seats = _parse_seats(document.get("seats"), exams, named, problems)
    if problems:
        raise SeatPolicyError(problems)
    return SeatPolicy(exams, seats, None, written_at)


def _parse_exams(raw: Any, problems: list[str]) -> dict[int, ExamRules]:
    if not isinstance(raw, dict):
        problems.append("exams must be an object of exam id -> {title, intercept, policy}")
        return {}
    exams: dict[int, ExamRules] = {}
    for key, entry in raw.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 19):
            problems.append(f"exam id {key!r} is not a number")
            continue
        if not isinstance(entry, dict):
            problems.append(f"exam {key}: must be an object with title, intercept and policy")
            continue
        title, intercept, text = entry.get("title", ""), entry.get("intercept"), entry.get("policy")
        if not isinstance(title, str):
            problems.append(f"exam {key}: title must be text")
        if not isinstance(intercept, bool):
            problems.append(f"exam {key}: intercept must be true or false")
        if not isinstance(text, str):
            problems.append(f"exam {key}: policy must be the policy's text")
            continue
        try:
            policy = parse_policy(text)
        except PolicyError as exc:
            problems += [f"exam {key}: line {line}: {message}" for line, message in exc.errors]
            continue
        if isinstance(title, str) and isinstance(intercept, bool):
            exams[int(key)] = ExamRules(int(key), printable(title), intercept, policy)
    return exams


def _parse_seats(
    raw: Any, exams: Mapping[int, ExamRules], named: set[str], problems: list[str]
) -> dict[str, int]:
    if not isinstance(raw, dict):
        problems.append("seats must be an object of client address -> exam id")
        return {}
    seats: dict[str, int] = {}
    for address, exam_key in raw.items():
        try:
            canonical = canonical_address(address)
        except ValueError as exc:
            problems.append(f"seat {str(address)[:60]!r}: {exc}")
            continue
        if not (isinstance(exam_key, str) and exam_key.isascii() and exam_key.isdigit()):
            problems.append(f"seat {canonical}: exam id {exam_key!r} is not a number")
            continue
        if canonical in seats:
            problems.append(f"seat {canonical}: listed twice")
            continue
        if int(exam_key) not in exams:
            if exam_key not in named:  # a seat of an exam with errors: those are reported already
                problems.append(f"seat {canonical}: exam {exam_key} is not in the file")
            continue
        seats[canonical] = int(exam_key)
    return seats
