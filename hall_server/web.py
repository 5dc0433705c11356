"""Per-app and per-request state for the Flask side: settings, master key, blob store, one DB connection
per request. Called by ``hall_server.api`` (and later the dashboard) through these accessors only."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from flask import Flask, current_app, g

from hall_server.blobs import BlobStore
from hall_server.db import connect


@dataclass
class HallState:
    settings: dict[str, Any]
    data_dir: Path
    master_key: bytes
    blobs: BlobStore
    service_token: str
    inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def state() -> HallState:
    return current_app.extensions["invigil"]  # type: ignore[no-any-return]


def get_db() -> sqlite_utils.Database:
    if "invigil_db" not in g:
        hall = state()
        g.invigil_db = connect(hall.data_dir, hall.settings["sqlite_synchronous"])
    return g.invigil_db  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("invigil_db", None)
    if db is not None:
        db.close()


def init_app(app: Flask, hall: HallState) -> None:
    app.extensions["invigil"] = hall
    app.teardown_appcontext(close_db)
