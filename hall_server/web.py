"""Per-app state for the Flask side (settings, master key, blob store, the way to the exams' images) and
one DB connection per server thread. The agent API and the dashboard reach them through these accessors."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from flask import Flask, current_app, g

from hall_server.store.blobs import BlobStore
from hall_server.store.db import connect
from hall_server.store.screens import Screens


@dataclass
class HallState:
    settings: dict[str, Any]
    data_dir: Path
    master_key: bytes
    blobs: BlobStore
    service_token: str
    inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The agent API's recent acknowledgement times (``hall_server.ingest.health.AckLatency``, set by it).
    ack_latency: Any = None
    #: The one way to the exams' images (blob store, master key, the exam keys unwrapped a moment ago).
    screens: Screens = field(init=False)

    def __post_init__(self) -> None:
        self.screens = Screens(self.blobs, self.master_key)


def state() -> HallState:
    return current_app.extensions["invigil"]  # type: ignore[no-any-return]


_local = threading.local()
_CONNECTIONS_PER_THREAD = 4  # a server thread uses one store; tests build many apps in one thread


def get_db() -> sqlite_utils.Database:
    """This thread's connection to the app's store, kept open across requests: opening one per request
    re-reads the schema every time (measured: ~10 % of a capture's CPU in bench/ingest.py)."""
    hall = state()
    connections: dict[tuple[int, Path], sqlite_utils.Database] = _local.__dict__.setdefault("connections", {})
    key = (os.getpid(), hall.data_dir)  # never use a connection inherited through fork
    db = connections.get(key)
    if db is None:
        if len(connections) >= _CONNECTIONS_PER_THREAD:
            connections.pop(next(iter(connections))).close()
        db = connections[key] = connect(hall.data_dir, hall.settings["sqlite_synchronous"])
    g.invigil_db = db
    return db


def close_db(_exc: BaseException | None = None) -> None:
    """Teardown: the connection stays open for the thread's next request; a transaction left open by a
    failure is rolled back so the next request starts clean."""
    db = g.pop("invigil_db", None)
    if db is not None and db.conn.in_transaction:
        db.conn.rollback()


def init_app(app: Flask, hall: HallState) -> None:
    app.extensions["invigil"] = hall
    app.teardown_appcontext(close_db)
