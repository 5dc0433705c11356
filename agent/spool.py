"""A bounded on-disk spool: every capture and event survives network loss and a restart, and drains in order.

Records are appended (:meth:`Spool.append`), read oldest first (:meth:`Spool.peek`) and removed only once the
server confirmed they are durable (:meth:`Spool.ack`); :meth:`Spool.destroy` at the end of the exam leaves
nothing on the student's laptop.

One file per record, named ``<seq>-<kind>.rec`` with a zero-padded sequence number, written as
``.tmp`` -> fsync -> rename -> fsync(directory). A file is either complete or a leftover ``.tmp`` that
opening the spool deletes. ``state.json`` keeps the next sequence number (so numbering continues after
the spool drained empty), the drops not yet reported and the spool key's id.

Every record is sealed with AES-GCM under the spool key, which the hall server issues at enrolment and the
agent holds in memory only: after a crash or a power cut the laptop's disk holds nothing readable. The
file name is the associated data, so a record renamed or moved fails to open. Opening a spool with a key
other than the one its records were sealed with (a session that never joined again, another exam) deletes
those records: they can never be sent, and :attr:`Spool.leftovers_deleted` counts them.

When the cap is reached the spool makes room by dropping records of the kinds in ``drop_first`` (in that
order, oldest first), then the oldest records of any kind; :meth:`Spool.take_dropped` hands the count
on, to be reported as a ``spool_dropped`` device event.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.Cipher import AES

MAGIC = b"IVSP\x02"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
_HEADER = struct.Struct(">I")
_NAME_RE = re.compile(r"^(\d{12})-([a-z_]{1,32})\.rec$")
_KIND_RE = re.compile(r"^[a-z_]{1,32}$")
STATE_FILE = "state.json"
DEFAULT_MAX_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True)
class SpoolRecord:
    """One spooled record: small JSON metadata (with a ``kind``) and an optional body."""

    seq: int
    kind: str
    meta: dict[str, Any]
    body: bytes


@dataclass(frozen=True)
class DropReport:
    """How much the cap threw away since the last report."""

    records: int = 0
    bytes: int = 0


@dataclass
class _Entry:
    seq: int
    kind: str
    size: int
    path: Path


class SpoolClosed(RuntimeError):
    """The spool was destroyed; nothing more may be written to it."""


def key_id(key: bytes) -> str:
    """A name for a spool key that reveals nothing of it (kept in ``state.json`` to spot leftovers)."""
    return hashlib.sha256(b"invigil-spool-key-id:" + key).hexdigest()[:32]


def key_from_wire(text: object) -> bytes | None:
    """The spool key of an enrolment answer (unpadded URL-safe base64 of 32 bytes; docs/api.md), or None
    from a server that issues none: the spool then makes a key that dies with the process."""
    if not isinstance(text, str):
        return None
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ValueError("the hall server sent a spool key that is not base64: ask the invigilator") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the hall server sent a {len(key)}-byte spool key, not {KEY_BYTES}")
    return key


def _seal(key: bytes, name: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(name.encode())
    sealed, tag = cipher.encrypt_and_digest(plaintext)
    return MAGIC + nonce + sealed + tag


def _open_sealed(key: bytes, name: str, data: bytes) -> bytes:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
        raise ValueError(f"{name} is not a spool record")
    nonce = data[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(name.encode())
    try:
        return cipher.decrypt_and_verify(data[len(MAGIC) + NONCE_BYTES : -TAG_BYTES], data[-TAG_BYTES:])
    except ValueError:  # the tag does not match: another key, or a changed or renamed file
        raise ValueError(f"{name} does not open with this spool key") from None


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows; rename is durable there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(directory: Path, name: str, data: bytes) -> Path:
    final = directory / name
    tmp = directory / f"{name}.tmp"
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


class Spool:
    """An ordered, capped, crash-safe, encrypted queue of records in one directory (created if missing).

    ``key`` is the 32-byte spool key from enrolment; without one the spool makes a key of its own that dies
    with the process (what is left after a crash then opens for nobody and is deleted at the next start).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        drop_first: tuple[str, ...] = ("unchanged", "thumbnail"),
        key: bytes | None = None,
    ) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise ValueError(f"a spool key has {KEY_BYTES} bytes, not {len(key)}")
        key = key if key is not None else os.urandom(KEY_BYTES)
        self._key = key
        self._key_id = key_id(key)
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.drop_first = drop_first
        self._lock = threading.Lock()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._entries: dict[int, _Entry] = {}
        for path in self.directory.iterdir():
            match = _NAME_RE.match(path.name)
            if match:
                seq = int(match.group(1))
                self._entries[seq] = _Entry(seq, match.group(2), path.stat().st_size, path)
            elif path.name.endswith(".tmp"):
                path.unlink()  # half-written before a crash: never renamed, so never acknowledged to anyone
        state = self._read_state()
        self._next_seq = max([int(state.get("next_seq", 1)), *(seq + 1 for seq in self._entries)])
        #: Records of another key (a session that never joined again) deleted on opening.
        self.leftovers_deleted = 0
        if self._entries and state.get("key_id") != self._key_id:
            for entry in list(self._entries.values()):
                self._remove(entry)
                self.leftovers_deleted += 1
            state = {}
        self._dropped = DropReport(int(state.get("dropped_records", 0)), int(state.get("dropped_bytes", 0)))
        if state.get("key_id") != self._key_id:
            self._write_state()  # before the first record, so a crash never leaves records of an unknown key
        #: How many ``image`` records the cap has dropped since this spool was opened: the capture loop
        #: sends a whole screen after a drop, since the tile updates it sent built on what was dropped.
        self.images_dropped = 0

    # -- state ---------------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        state = {
            "next_seq": self._next_seq,
            "dropped_records": self._dropped.records,
            "dropped_bytes": self._dropped.bytes,
            "key_id": self._key_id,
        }
        _write_atomic(self.directory, STATE_FILE, json.dumps(state).encode())

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosed(f"the spool at {self.directory} was destroyed")

    # -- public --------------------------------------------------------------------------------------

    @property
    def bytes_used(self) -> int:
        """Bytes of all complete records on disk (the state file is not counted)."""
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def append(self, meta: dict[str, Any], body: bytes = b"") -> int:
        """Store one record durably and return its sequence number; drops older records when full.

        ``meta["kind"]`` names the record type (lower-case letters and ``_``). Raises ``ValueError`` for a
        record that alone is larger than the cap.
        """
        kind = meta.get("kind")
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise ValueError("meta['kind'] must be 1-32 lower-case letters or '_'")
        meta_bytes = json.dumps(meta, ensure_ascii=True, separators=(",", ":")).encode()
        plaintext = _HEADER.pack(len(meta_bytes)) + meta_bytes + body
        size = len(MAGIC) + NONCE_BYTES + len(plaintext) + TAG_BYTES
        if size > self.max_bytes:
            raise ValueError(f"a {size}-byte record does not fit a {self.max_bytes}-byte spool")
        with self._lock:
            self._check_open()
            if self._make_room(size):
                self._write_state()
            seq = self._next_seq
            self._next_seq += 1
            name = f"{seq:012d}-{kind}.rec"
            data = _seal(self._key, name, plaintext)
            path = _write_atomic(self.directory, name, data)
            self._entries[seq] = _Entry(seq, kind, len(data), path)
            return seq

    def _make_room(self, needed: int) -> bool:
        used = sum(entry.size for entry in self._entries.values())
        dropped = False
        while self._entries and used + needed > self.max_bytes:
            victim = self._victim()
            used -= victim.size
            self._remove(victim)
            self._dropped = DropReport(self._dropped.records + 1, self._dropped.bytes + victim.size)
            self.images_dropped += victim.kind == "image"
            dropped = True
        return dropped

    def _victim(self) -> _Entry:
        ordered = sorted(self._entries.values(), key=lambda entry: entry.seq)
        for kind in self.drop_first:
            for entry in ordered:
                if entry.kind == kind:
                    return entry
        return ordered[0]

    def _remove(self, entry: _Entry) -> None:
        del self._entries[entry.seq]
        entry.path.unlink(missing_ok=True)

    def peek(self) -> SpoolRecord | None:
        """The oldest record, or None when the spool is empty; it stays in the spool until :meth:`ack`.

        A record file that cannot be parsed is removed and counted as dropped, so one bad file never
        blocks the queue.
        """
        with self._lock:
            self._check_open()
            while self._entries:
                entry = self._entries[min(self._entries)]
                try:
                    return self._load(entry)
                except (OSError, ValueError) as exc:
                    if isinstance(exc, OSError) and entry.path.exists():
                        raise
                    self._remove(entry)
                    self._dropped = DropReport(self._dropped.records + 1, self._dropped.bytes + entry.size)
                    self._write_state()
            return None

    def _load(self, entry: _Entry) -> SpoolRecord:
        data = _open_sealed(self._key, entry.path.name, entry.path.read_bytes())
        start = _HEADER.size
        if len(data) < start:
            raise ValueError(f"{entry.path.name} is not a spool record")
        (meta_len,) = _HEADER.unpack_from(data, 0)
        if start + meta_len > len(data):
            raise ValueError(f"{entry.path.name} is truncated")
        meta = json.loads(data[start : start + meta_len])
        if not isinstance(meta, dict):
            raise ValueError(f"{entry.path.name} has no metadata object")
        return SpoolRecord(entry.seq, entry.kind, meta, data[start + meta_len :])

    def ack(self, seq: int) -> bool:
        """Forget record ``seq`` once the server stored it; False if it is already gone (e.g. dropped)."""
        with self._lock:
            self._check_open()
            entry = self._entries.get(seq)
            if entry is None:
                return False
            self._remove(entry)
            if not self._entries:
                self._write_state()  # the file names no longer carry the sequence number
            return True

    def take_dropped(self) -> DropReport:
        """Return what the cap dropped since the last call and reset the count (for a device event)."""
        with self._lock:
            self._check_open()
            report = self._dropped
            if report.records:
                self._dropped = DropReport()
                self._write_state()
            return report

    def destroy(self) -> None:
        """Delete the spool directory and everything in it; the spool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._entries.clear()
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.directory)
