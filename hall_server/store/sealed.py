"""Personal columns sealed under their exam's key: names, window titles, application names, hosts and URLs,
client addresses, device-event and observation details, finding texts and hold reasons.

Each value is AES-256-GCM under a key derived from its exam's key (HKDF), bound to the exam (a value moved to
another exam's row fails to open). Destroying an exam's key (retention) therefore makes that exam's rows in
every copy of the database unreadable, backups and the WAL included, as it does its screens.

Writers seal in Python (:meth:`ColumnKeys.seal`); readers open in SQL with ``unseal(exam_id, column)``, a
function every connection of :func:`hall_server.store.db.connect` has, so a query still filters, joins and
searches as before (:func:`opened` writes the expression). A value that is not sealed (a text) is returned
as it is: the rows of a store written before sealing existed are sealed by a migration, once, and nothing
else writes a text there.

Site events no session claimed belong to no exam: they are sealed under a key derived from the hall's
master key, and retention deletes them after the same period. A client address must still be found again
(the proxy's site events name the address, not the seat): ``agent_session.client_ip_index`` holds a keyed
hash of it under the exam's key (:meth:`ColumnKeys.address_index`), which the same destruction makes
meaningless.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hall_server.store import crypto, examkeys

#: The sealed columns of each table. Every one of these tables has an ``exam_id`` column naming the key.
SEALED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "roster": ("name",),
    "agent_session": ("client_ip",),
    "capture": ("focused_app", "window_title"),
    "device_event": ("detail",),
    "site_event": ("client_ip", "host", "url"),
    "observation": ("detail",),
    "annotation": ("text",),
    "case_hold": ("reason",),
}
SQL_FUNCTION = "unseal"
MAGIC = b"IVC\x01"
_NONCE = 12
#: As long as :data:`hall_server.store.screens.KEY_TTL_S`: once retention destroyed a key, no connection
#: opens that exam's rows with it for longer than this.
KEY_TTL_S = 60.0
_KEYS_MAX = 64


def opened(column: str, alias: str = "") -> str:
    """The SQL expression of a sealed column opened: ``unseal(<alias>.exam_id, <alias>.<column>)``."""
    prefix = f"{alias}." if alias else ""
    return f"{SQL_FUNCTION}({prefix}exam_id, {prefix}{column})"


def select_list(table: str, columns: tuple[str, ...], alias: str = "") -> str:
    """``columns`` of ``table`` for a SELECT, the sealed ones opened under their own names."""
    prefix = f"{alias}." if alias else ""
    sealed = SEALED_COLUMNS.get(table, ())
    return ", ".join(
        f"{opened(column, alias)} AS {column}" if column in sealed else f"{prefix}{column}"
        for column in columns
    )


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"invigil-" + purpose).derive(key)


def _aad(exam_id: int | None) -> bytes:
    return f"invigil-column:{exam_id if exam_id is not None else 'unclaimed'}".encode()


class _ExamKeys:
    __slots__ = ("aead", "index", "expires")

    def __init__(self, aead: AESGCM | None, index: bytes | None, expires: float) -> None:
        self.aead, self.index, self.expires = aead, index, expires


class ColumnKeys:
    """One connection's way to seal and open personal columns: the hall master key (read from the data
    directory when first needed) and the exam keys it unwrapped in the last :data:`KEY_TTL_S` seconds."""

    def __init__(self, db: sqlite_utils.Database, data_dir: str | Path, key_ttl_s: float = KEY_TTL_S) -> None:
        self._db = db
        self._data_dir = Path(data_dir)
        self._master: bytes | None = None
        self._keys: dict[int | None, _ExamKeys] = {}
        self._lock = threading.Lock()
        self.key_ttl_s = key_ttl_s

    def _master_key(self) -> bytes:
        if self._master is None:
            self._master = crypto.load_master_key(self._data_dir)
        return self._master

    def _exam(self, exam_id: int | None) -> _ExamKeys:
        now = time.monotonic()
        with self._lock:
            hit = self._keys.get(exam_id)
        if hit is not None and hit.expires > now:
            return hit
        if exam_id is None:
            keys = _ExamKeys(AESGCM(_derive(self._master_key(), b"unclaimed-site-events")), None, now + 3600)
        else:
            master = self._master_key()
            try:
                exam_key = examkeys.load(self._db, self._data_dir, master, exam_id)
            except crypto.KeyDestroyed:
                keys = _ExamKeys(None, None, now + self.key_ttl_s)
            else:
                keys = _ExamKeys(
                    AESGCM(_derive(exam_key, b"columns")),
                    _derive(exam_key, b"address-index"),
                    now + self.key_ttl_s,
                )
        with self._lock:
            if len(self._keys) >= _KEYS_MAX:
                self._keys.clear()
            self._keys[exam_id] = keys
        return keys

    def forget(self) -> None:
        """Drop every key this connection holds (retention calls it once it destroyed one)."""
        with self._lock:
            self._keys.clear()

    def seal(self, exam_id: int | None, value: str | None) -> bytes | None:
        """``value`` sealed for a row of ``exam_id`` (None for a site event no session claimed)."""
        if value is None:
            return None
        aead = self._exam(exam_id).aead
        if aead is None:
            raise crypto.KeyDestroyed(f"exam {exam_id} has no key (deleted by retention): nothing is stored")
        nonce = os.urandom(_NONCE)
        return MAGIC + nonce + aead.encrypt(nonce, value.encode("utf-8", "surrogatepass"), _aad(exam_id))

    def unseal(self, exam_id: int | None, value: Any) -> Any:
        """A sealed value opened; a text (not sealed) or NULL as it is; NULL once the exam's key is gone."""
        if not isinstance(value, bytes) or not value.startswith(MAGIC):
            return value
        aead = self._exam(exam_id).aead
        if aead is None:
            return None
        nonce = value[len(MAGIC) : len(MAGIC) + _NONCE]
        plain = aead.decrypt(nonce, value[len(MAGIC) + _NONCE :], _aad(exam_id))
        return plain.decode("utf-8", "surrogatepass")

    def address_index(self, exam_id: int, address: str) -> str | None:
        """The keyed hash by which a session's client address is found again (None once the key is gone)."""
        index = self._exam(exam_id).index
        if index is None:
            return None
        return hmac.new(index, address.encode(), hashlib.sha256).hexdigest()[:32]


def install(db: sqlite_utils.Database, data_dir: str | Path) -> ColumnKeys:
    """A new connection's :class:`ColumnKeys`, with the SQL function ``unseal`` registered on it."""
    keys = ColumnKeys(db, data_dir)
    db.conn.create_function(SQL_FUNCTION, 2, keys.unseal)
    return keys


def keys_of(db: sqlite_utils.Database) -> ColumnKeys:
    """The connection's :class:`ColumnKeys`; every connection of ``store.db.connect`` has them."""
    keys = getattr(db, "column_keys", None)
    if keys is None:
        raise RuntimeError("this connection was not opened by hall_server.store.db.connect: it cannot seal")
    return keys  # type: ignore[no-any-return]


def seal(db: sqlite_utils.Database, exam_id: int | None, value: str | None) -> bytes | None:
    """Shorthand for ``keys_of(db).seal(exam_id, value)``."""
    return keys_of(db).seal(exam_id, value)
