"""The per-session hash chain over everything a session recorded: captures (changed and unchanged), device
events and site events.

Each stored record gets ``chain_hash = sha256(previous head || canonical JSON of its fields)``, server receive
time included, and the session's head moves to it. The link is made inside the write transaction that
inserts the record, and writers are serialised by the write gate, so chain order is commit order. The
first link starts from a genesis hash bound to the session's own row (exam, student, agent, enrolment time).

Ingest makes one :func:`link` after each INSERT that stored a row; reports carry the head, and
``invigil-server verify`` checks every link (:func:`verify_store`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from hall_server.store import sealed

#: The columns hashed for each kind of record, in this order; never change them (old chains would break).
FIELDS: dict[str, tuple[str, ...]] = {
    "capture": (
        "capture_id",
        "exam_id",
        "monitor",
        "agent_time",
        "received_at",
        "changed",
        "sha256",
        "size",
        "width",
        "height",
        "format",
        "trigger",
        "focused_app",
        "window_title",
        "since_capture_id",
    ),
    "device_event": ("event_id", "exam_id", "kind", "agent_time", "received_at", "detail"),
    "site_event": (
        "source",
        "event_id",
        "exam_id",
        "time",
        "received_at",
        "client_ip",
        "host",
        "url",
        "decision",
        "reason",
    ),
}
#: Columns hashed only when they hold a value, after those above: what a tile update adds (the capture it
#: updates and which tiles it carries). Whole screens hash exactly as they did before updates existed.
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "capture": ("base_capture_id", "base_session_id", "tile", "tile_map"),
    "device_event": (),
    "site_event": (),
}
#: The primary key of each table besides session_id, which names a record in a broken-link message.
KEYS = {"capture": ("capture_id",), "device_event": ("event_id",), "site_event": ("source", "event_id")}
TIME_FIELD = {"capture": "received_at", "device_event": "received_at", "site_event": "received_at"}
GENESIS_FIELDS = ("id", "exam_id", "roster_id", "agent_id", "enrolled_at")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def genesis(session: dict[str, Any]) -> str:
    """The head of a session before its first record."""
    fields = {name: session[name] for name in GENESIS_FIELDS}
    return hashlib.sha256(b"invigil-chain-v1\x00" + canonical_json(fields)).hexdigest()


def link_hash(previous: str, kind: str, seq: int, fields: dict[str, Any]) -> str:
    payload = canonical_json({"kind": kind, "seq": seq, "fields": fields})
    return hashlib.sha256(bytes.fromhex(previous) + payload).hexdigest()


def _select(kind: str) -> str:
    """The hashed columns, sealed ones opened: a chain is over what was recorded, not how it is stored."""
    return sealed.select_list(kind, FIELDS[kind] + OPTIONAL_FIELDS[kind])


def _fields(kind: str, values: Any) -> dict[str, Any]:
    """The hashed fields of one row selected with :func:`_select` (optional ones only when set)."""
    fields = dict(zip(FIELDS[kind] + OPTIONAL_FIELDS[kind], values, strict=True))
    for name in OPTIONAL_FIELDS[kind]:
        if fields[name] is None:
            del fields[name]
    return fields


def link(db: sqlite_utils.Database, kind: str, session_id: int, *key: str) -> str:
    """Append the record just inserted to its session's chain; returns the new head.

    Call inside the write transaction that inserted it, right after the INSERT stored it (rowcount 1)."""
    where = " AND ".join(f"{column} = ?" for column in KEYS[kind])
    row = db.execute(
        f"SELECT {_select(kind)} FROM {kind} WHERE session_id = ? AND {where}",  # noqa: S608 (fixed names)
        [session_id, *key],
    ).fetchone()
    head_row = db.execute(
        "SELECT chain_head, chain_length, id, exam_id, roster_id, agent_id, enrolled_at "
        "FROM agent_session WHERE id = ?",
        [session_id],
    ).fetchone()
    head, length = head_row[0], head_row[1]
    if head is None:
        head = genesis(dict(zip(GENESIS_FIELDS, head_row[2:], strict=True)))
    seq = length + 1
    new_head = link_hash(head, kind, seq, _fields(kind, row))
    db.execute(
        f"UPDATE {kind} SET chain_seq = ?, chain_hash = ? WHERE session_id = ? AND {where}",  # noqa: S608
        [seq, new_head, session_id, *key],
    )
    db.execute(
        "UPDATE agent_session SET chain_head = ?, chain_length = ? WHERE id = ?", [new_head, seq, session_id]
    )
    return new_head


@dataclass(frozen=True)
class ChainRecord:
    """One link as it is stored or exported: enough to recompute the chain without the database."""

    kind: str
    seq: int
    fields: dict[str, Any]
    chain_hash: str | None

    @property
    def label(self) -> str:
        key = "/".join(str(self.fields[column]) for column in KEYS[self.kind])
        return f"{self.kind} {key} (received {self.fields[TIME_FIELD[self.kind]]})"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "fields": self.fields, "chain_hash": self.chain_hash}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainRecord:
        return cls(data["kind"], int(data["seq"]), dict(data["fields"]), data.get("chain_hash"))


@dataclass(frozen=True)
class SessionChain:
    session_id: int
    genesis: str
    head: str | None
    length: int
    records: list[ChainRecord]

    def as_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "genesis": self.genesis,
            "head": self.head,
            "length": self.length,
            "records": [record.as_json() for record in self.records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionChain:
        return cls(
            int(data["session_id"]),
            data["genesis"],
            data.get("head"),
            int(data["length"]),
            [ChainRecord.from_json(record) for record in data["records"]],
        )


@dataclass(frozen=True)
class Break:
    """The first broken link of one session's chain."""

    session_id: int
    seq: int
    kind: str
    record: str
    problem: str

    def __str__(self) -> str:
        return f"session {self.session_id}, link {self.seq}: {self.record}: {self.problem}"


def session_chain(db: sqlite_utils.Database, session_id: int) -> SessionChain:
    """Every chained record of a session in chain order, with the head the session row claims."""
    row = db.execute(
        "SELECT id, exam_id, roster_id, agent_id, enrolled_at, chain_head, chain_length "
        "FROM agent_session WHERE id = ?",
        [session_id],
    ).fetchone()
    if row is None:
        raise LookupError(f"no session {session_id}")
    records: list[ChainRecord] = []
    for kind in FIELDS:
        cursor = db.execute(
            f"SELECT chain_seq, chain_hash, {_select(kind)} FROM {kind} "  # noqa: S608 (fixed names)
            "WHERE session_id = ? AND chain_seq IS NOT NULL",
            [session_id],
        )
        records.extend(
            ChainRecord(kind, values[0], _fields(kind, values[2:]), values[1]) for values in cursor
        )
    records.sort(key=lambda record: record.seq)
    return SessionChain(
        session_id=row[0],
        genesis=genesis(dict(zip(GENESIS_FIELDS, row[:5], strict=True))),
        head=row[5],
        length=row[6],
        records=records,
    )


def verify_chain(chain: SessionChain) -> Break | None:
    """Recompute a chain from its records; the first link that does not hold, or None."""
    head = chain.genesis
    expected_seq = 1
    previous_label = "the session's start"
    for record in chain.records:
        if record.seq != expected_seq:
            return Break(
                chain.session_id,
                expected_seq,
                "missing",
                f"missing between {previous_label} and {record.label}",
                f"link {expected_seq} is gone (records {expected_seq}..{record.seq - 1} deleted)"
                if record.seq > expected_seq
                else f"link {record.seq} appears twice",
            )
        recomputed = link_hash(head, record.kind, record.seq, record.fields)
        if record.chain_hash != recomputed:
            return Break(
                chain.session_id,
                record.seq,
                record.kind,
                record.label,
                "its content differs from what was chained (altered after it was stored)",
            )
        head = recomputed
        expected_seq += 1
        previous_label = record.label
    if chain.length != expected_seq - 1:
        return Break(
            chain.session_id,
            expected_seq,
            "missing",
            f"missing after {previous_label}",
            f"the session says {chain.length} links but only {expected_seq - 1} remain (the last ones "
            "were deleted)",
        )
    if chain.length and chain.head != head:
        return Break(chain.session_id, chain.length, "head", "the session's head", "does not match")
    return None


@dataclass(frozen=True)
class VerifyResult:
    sessions: int
    records: int
    breaks: list[Break]

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify_chains(chains: Iterable[SessionChain]) -> VerifyResult:
    sessions = records = 0
    breaks: list[Break] = []
    for chain in chains:
        sessions += 1
        records += len(chain.records)
        problem = verify_chain(chain)
        if problem is not None:
            breaks.append(problem)
    return VerifyResult(sessions, records, breaks)


def _all_chains(db: sqlite_utils.Database, exam_id: int | None) -> Iterator[SessionChain]:
    if exam_id is None:
        ids = db.execute("SELECT id FROM agent_session ORDER BY id").fetchall()
    else:
        ids = db.execute("SELECT id FROM agent_session WHERE exam_id = ? ORDER BY id", [exam_id]).fetchall()
    for (session_id,) in ids:
        yield session_chain(db, session_id)


def verify_store(db: sqlite_utils.Database, exam_id: int | None = None) -> VerifyResult:
    """Recompute every session's chain (of one exam, or all) from the rows in the store."""
    return verify_chains(_all_chains(db, exam_id))
