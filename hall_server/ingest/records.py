"""Storing what agents and the network policy send: captures, unchanged records, device and site events.

Every write is idempotent on the sender's id, and an answer is given only once the data is durable: the
blob fsynced under its final name, then the row committed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server import errors
from hall_server.ingest import rules
from hall_server.ingest.sessions import Session, add_observation
from hall_server.live import bus
from hall_server.store import chain, exams, images
from hall_server.store.blobs import BlobStore
from hall_server.store.db import write_transaction
from invigil import tiles
from invigil.payloads import CaptureMeta, DeviceEvent, SiteEvent, Unchanged
from invigil.timeutil import to_wire


def _check_image(
    body: bytes, content_type: str, declared: tuple[int, int] | None, max_pixels: int
) -> tuple[str, int, int]:
    fmt = images.sniff_format(body)
    if fmt is None:
        raise errors.UnsupportedMediaType("the body is not a PNG, JPEG or WebP image", "not_an_image")
    if content_type and content_type != f"image/{fmt}":
        raise errors.UnsupportedMediaType(
            f"Content-Type says {content_type!r} but the body is {fmt}", "content_type_mismatch"
        )
    try:
        width, height = images.header_dimensions(body, max_pixels)
    except ValueError as exc:
        raise errors.Unprocessable(str(exc), "bad_image") from None
    if declared is not None and (width, height) != declared:
        raise errors.Unprocessable(
            f"the image is {width}x{height} but the metadata says {declared[0]}x{declared[1]}",
            "dimension_mismatch",
        )
    return fmt, width, height


def _check_update(
    db: sqlite_utils.Database, session: Session, meta: CaptureMeta
) -> tuple[int, int, tuple[int, int]]:
    """A tile update must build on a stored image of the same screen of the same student: (the base's
    session, the update's chain depth, its body's size).

    The base is looked for in this session first, then in the student's earlier sessions of this exam: an
    agent that crashed and joined again drains its old spool under the new session.
    """
    base = db.execute(
        "SELECT c.monitor, c.width, c.height, c.chain_depth, c.session_id FROM capture c "
        "JOIN agent_session s ON s.id = c.session_id "
        "WHERE c.capture_id = ? AND c.changed = 1 AND s.exam_id = ? AND s.roster_id = ? "
        "ORDER BY c.session_id = ? DESC, c.session_id DESC LIMIT 1",
        [meta.base, session.exam_id, session.roster_id, session.id],
    ).fetchone()
    if base is None or tuple(base[:3]) != (meta.monitor, meta.width, meta.height):
        raise errors.Conflict(
            f"capture {meta.base}, which this update builds on, is not stored for screen {meta.monitor} "
            f"at {meta.width}x{meta.height}: send the whole screen",
            "unknown_base",
        )
    if base[3] + 1 > tiles.MAX_CHAIN:
        raise errors.Unprocessable(
            f"more than {tiles.MAX_CHAIN} updates in a row: send the whole screen", "chain_too_long"
        )
    assert meta.tile is not None
    _rows, cols = tiles.grid(meta.width, meta.height, meta.tile)
    return base[4], base[3] + 1, tiles.packed_size(len(meta.tile_indices()), cols, meta.tile)


def store_capture(
    db: sqlite_utils.Database,
    blobs: BlobStore,
    master_key: bytes,
    session: Session,
    capture_id: str,
    meta: CaptureMeta,
    body: bytes,
    content_type: str,
    now: datetime,
    settings: dict[str, Any],
) -> bool:
    """Store one changed screen image, whole or a tile update. Returns True if stored now, False if it was
    already stored."""
    existing = db.execute(
        "SELECT sha256 FROM capture WHERE session_id = ? AND capture_id = ?", [session.id, capture_id]
    ).fetchone()
    if existing is not None:
        if existing[0] != meta.sha256:
            raise errors.Conflict(f"capture {capture_id} was already stored with other content", "id_reused")
        return False
    if hashlib.sha256(body).hexdigest() != meta.sha256:
        raise errors.Unprocessable(
            "the body's SHA-256 differs from the metadata: the upload was truncated "
            "or altered; send it again",
            "sha256_mismatch",
        )
    if meta.is_update:
        base_session, depth, body_size = _check_update(db, session, meta)
    else:
        base_session, depth, body_size = None, 0, (meta.width, meta.height)
    fmt, _width, _height = _check_image(body, content_type, body_size, settings["capture_max_pixels"])
    key = exams.exam_key(db, master_key, session.exam_id)
    blobs.put(session.exam_id, key, body)
    with write_transaction(db):
        cursor = db.execute(
            "INSERT OR IGNORE INTO capture (session_id, capture_id, exam_id, monitor, agent_time, "
            "received_at, changed, sha256, size, width, height, format, trigger, focused_app, window_title, "
            "base_capture_id, base_session_id, tile, tile_map, chain_depth) "
            "VALUES (?,?,?,?,?,?,1,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                session.id,
                capture_id,
                session.exam_id,
                meta.monitor,
                to_wire(meta.agent_time),
                to_wire(now),
                meta.sha256,
                len(body),
                meta.width,
                meta.height,
                fmt,
                meta.trigger,
                meta.focused_app,
                meta.window_title,
                meta.base,
                base_session,
                meta.tile,
                meta.tiles,
                depth,
            ],
        )
        if cursor.rowcount == 0:  # a concurrent resend of the same id won the race
            row = db.execute(
                "SELECT sha256 FROM capture WHERE session_id = ? AND capture_id = ?", [session.id, capture_id]
            ).fetchone()
            if row[0] != meta.sha256:
                raise errors.Conflict(
                    f"capture {capture_id} was already stored with other content", "id_reused"
                )
            return False
        chain.link(db, "capture", session.id, capture_id)
    return True


def store_thumbnail(
    db: sqlite_utils.Database,
    blobs: BlobStore,
    master_key: bytes,
    session: Session,
    capture_id: str,
    body: bytes,
    content_type: str,
    settings: dict[str, Any],
) -> bool:
    """Attach the small preview the dashboard shows to a stored capture (idempotent)."""
    row = db.execute(
        "SELECT thumb_sha256 FROM capture WHERE session_id = ? AND capture_id = ? AND changed = 1",
        [session.id, capture_id],
    ).fetchone()
    if row is None:
        raise errors.NotFound(
            f"capture {capture_id} is not stored yet: upload the capture first", "unknown_capture"
        )
    _check_image(body, content_type, None, 4_000_000)
    sha = hashlib.sha256(body).hexdigest()
    if row[0] == sha:
        return False
    key = exams.exam_key(db, master_key, session.exam_id)
    blobs.put(session.exam_id, key, body)
    with write_transaction(db):
        db.execute(
            "UPDATE capture SET thumb_sha256 = ? WHERE session_id = ? AND capture_id = ?",
            [sha, session.id, capture_id],
        )
    bus.new_thumbnail(session.exam_id, session.id, capture_id)
    return True


def store_unchanged(
    db: sqlite_utils.Database, session: Session, record_id: str, record: Unchanged, now: datetime
) -> bool:
    """Attest that a screen did not change, without bytes. Returns False for a resend."""
    with write_transaction(db):
        existing = db.execute(
            "SELECT changed, since_capture_id FROM capture WHERE session_id = ? AND capture_id = ?",
            [session.id, record_id],
        ).fetchone()
        if existing is not None:
            if existing[0] != 0 or existing[1] != record.since_capture_id:
                raise errors.Conflict(
                    f"record {record_id} was already stored with other content", "id_reused"
                )
            return False
        db.execute(
            "INSERT INTO capture (session_id, capture_id, exam_id, monitor, agent_time, received_at, "
            "changed, since_capture_id) VALUES (?,?,?,?,?,?,0,?)",
            [
                session.id,
                record_id,
                session.exam_id,
                record.monitor,
                to_wire(record.agent_time),
                to_wire(now),
                record.since_capture_id,
            ],
        )
        chain.link(db, "capture", session.id, record_id)
    return True


def store_device_events(
    db: sqlite_utils.Database, session: Session, events: list[DeviceEvent], now: datetime
) -> tuple[int, int]:
    """Store a batch (all or nothing) and raise the observations its events call for.

    Returns (stored, duplicates)."""
    stored = 0
    raised: list[int] = []
    with write_transaction(db):
        for event in events:
            cursor = db.execute(
                "INSERT OR IGNORE INTO device_event (session_id, event_id, exam_id, kind, agent_time, "
                "received_at, detail) VALUES (?,?,?,?,?,?,?)",
                [
                    session.id,
                    event.id,
                    session.exam_id,
                    event.kind,
                    to_wire(event.agent_time),
                    to_wire(now),
                    json.dumps(event.detail),
                ],
            )
            if cursor.rowcount == 0:
                continue
            stored += 1
            chain.link(db, "device_event", session.id, event.id)
            for kind, detail in rules.observations_for_device_event(event, session.student_ends_at):
                raised.append(
                    add_observation(db, session.exam_id, session.id, kind, event.agent_time, detail)
                )
            if event.kind == "left":
                db.execute(
                    "UPDATE agent_session SET ended_at = ?, state = 'left' WHERE id = ?",
                    [to_wire(now), session.id],
                )
    if stored:
        bus.seat_changed(session.exam_id, session.id)
    for observation_id in raised:
        bus.observation(session.exam_id, session.id, observation_id)
    return stored, len(events) - stored


def _session_for_ip(db: sqlite_utils.Database, client_ip: str, at: datetime) -> tuple[int, int] | None:
    """The live session that last used this address, as (exam_id, session_id)."""
    row = db.execute(
        "SELECT s.exam_id, s.id FROM agent_session s WHERE s.client_ip = ? AND s.expires_at >= ? "
        "AND s.enrolled_at <= ? ORDER BY s.last_seen_at DESC LIMIT 1",
        [client_ip, to_wire(at), to_wire(at)],
    ).fetchone()
    return (row[0], row[1]) if row else None


#: A repeat attempt at one site within this window adds to the timeline, not to the invigilator's feed.
SITE_OBSERVATION_WINDOW = timedelta(minutes=10)


def _already_open(
    db: sqlite_utils.Database, session_id: int | None, kind: str, host: str, at: datetime
) -> bool:
    """An unacknowledged observation of this kind for this site and seat, raised in the last few minutes."""
    row = db.execute(
        "SELECT 1 FROM observation WHERE session_id IS ? AND kind = ? AND acknowledged_at IS NULL "
        "AND json_extract(detail, '$.host') = ? AND at >= ? LIMIT 1",
        [session_id, kind, host, to_wire(at - SITE_OBSERVATION_WINDOW)],
    ).fetchone()
    return row is not None


def store_site_events(db: sqlite_utils.Database, events: list[SiteEvent], now: datetime) -> tuple[int, int]:
    """Store site events from the proxy or sentinel, attributed to a seat by client IP.

    An event from an address no session uses is kept unattributed (exam_id NULL): the hall still wants to
    know. Returns (stored, duplicates)."""
    stored = 0
    raised: list[tuple[int, int | None, int]] = []
    with write_transaction(db):
        for event in events:
            owner = _session_for_ip(db, event.client_ip, event.time)
            exam_id, session_id = owner if owner else (None, None)
            cursor = db.execute(
                "INSERT OR IGNORE INTO site_event (source, event_id, exam_id, session_id, time, received_at, "
                "client_ip, host, url, decision, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    event.source,
                    event.id,
                    exam_id,
                    session_id,
                    to_wire(event.time),
                    to_wire(now),
                    event.client_ip,
                    event.host,
                    event.url,
                    event.decision,
                    event.reason,
                ],
            )
            if cursor.rowcount == 0:
                continue
            stored += 1
            if session_id is not None:
                chain.link(db, "site_event", session_id, event.source, event.id)
            if exam_id is not None:
                for kind, detail in rules.observations_for_site_event(event):
                    if _already_open(db, session_id, kind, event.host, event.time):
                        continue  # the site event is stored; one open observation per site is enough
                    raised.append(
                        (
                            exam_id,
                            session_id,
                            add_observation(db, exam_id, session_id, kind, event.time, detail),
                        )
                    )
    for exam_id, session_id, observation_id in raised:
        bus.observation(exam_id, session_id, observation_id)
    return stored, len(events) - stored
