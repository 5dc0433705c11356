"""Storing what agents and the network policy send: captures, unchanged records, device and site events.

Every write is idempotent on the sender's id, and an answer is given only once the data is durable: the
blob fsynced under its final name, then the row committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server import errors
from hall_server.ingest import gaps, rules
from hall_server.ingest.sessions import Session, add_observation, raise_clock_skew
from hall_server.live import bus
from hall_server.settings import SETTINGS_BY_NAME
from hall_server.store import chain, exams, images, sealed
from hall_server.store.blobs import BlobStore
from hall_server.store.db import write_transaction
from invigil import tiles
from invigil.payloads import CaptureMeta, DeviceEvent, SiteEvent, Unchanged
from invigil.timeutil import to_wire


def _record_skew(
    db: sqlite_utils.Database,
    session: Session,
    agent_time: datetime,
    now: datetime,
    settings: Mapping[str, Any] | None,
) -> int | None:
    """Check a record's claimed time (inside its write transaction); the id of a ``clock_skew``
    observation it raised. Without ``settings`` the declared default ``clock_skew_max_s`` applies."""
    bound = (settings or {}).get("clock_skew_max_s", SETTINGS_BY_NAME["clock_skew_max_s"].default)
    skew = rules.record_clock_skew(agent_time, now, session.first_enrolled_at, float(bound))
    return raise_clock_skew(db, session, skew, now)


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


def _monitor_sizes(detail: Any) -> set[tuple[int, int]]:
    """(width, height) of each monitor of a ``monitors`` device event's ``geometry`` (``[[left, top,
    width, height], ...]``, ``agent.devices``); what is not such a list says nothing."""
    geometry = detail.get("geometry") if isinstance(detail, dict) else None
    sizes = set()
    for entry in geometry if isinstance(geometry, list) else []:
        numbers = isinstance(entry, list) and len(entry) == 4 and all(type(value) is int for value in entry)
        if numbers and entry[2] > 0 and entry[3] > 0:
            sizes.add((entry[2], entry[3]))
    return sizes


def _check_screen_size(db: sqlite_utils.Database, session: Session, meta: CaptureMeta) -> None:
    """A whole screen has the size of a monitor the student's agent reported in this exam, or twice it (a
    Retina display), in any of their sessions: a spool drained after a crash holds the old session's
    screens. Until the agent reports a layout with sizes, the pixel cap alone bounds it. A tile update has
    its base's size."""
    reported: set[tuple[int, int]] = set()
    for (detail,) in db.execute(
        "SELECT unseal(d.exam_id, d.detail) FROM device_event d JOIN agent_session s ON s.id = d.session_id "
        "WHERE d.kind = 'monitors' AND s.exam_id = ? AND s.roster_id = ?",
        [session.exam_id, session.roster_id],
    ):
        try:
            reported |= _monitor_sizes(json.loads(detail))
        except ValueError:
            continue
    # macOS grabs a Retina monitor at two pixels per point of the size it reports; elsewhere grabs and
    # monitors agree (mss is DPI-aware on Windows).
    allowed = reported | {(width * 2, height * 2) for width, height in reported}
    if reported and (meta.width, meta.height) not in allowed:
        sizes = ", ".join(f"{width}x{height}" for width, height in sorted(reported))
        raise errors.Unprocessable(
            f"the screen is {meta.width}x{meta.height}, but the monitors this agent reported are {sizes}: "
            "report the monitor layout (a 'monitors' device event) before sending its screens",
            "unknown_screen_size",
        )


def _check_update(
    db: sqlite_utils.Database, session: Session, meta: CaptureMeta
) -> tuple[int, int, tuple[int, int], str | None]:
    """A tile update must build on a stored image of the same screen of the same student: (the base's
    session, the update's chain depth, its body's size, and the base's sha256 when the base is a whole
    screen).

    The base is looked for in this session first, then in the student's earlier sessions of this exam: an
    agent that crashed and joined again drains its old spool under the new session.
    """
    base = db.execute(
        "SELECT c.monitor, c.width, c.height, c.chain_depth, c.session_id, c.sha256 FROM capture c "
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
    size = tiles.packed_size(len(meta.tile_indices()), cols, meta.tile)
    return base[4], base[3] + 1, size, base[5] if base[3] == 0 else None


def _check_gray_chain(
    body: bytes, key_image: str | None, read: Callable[[str], bytes], meta: CaptureMeta
) -> None:
    """A tile update, and the whole screen its chain starts from, are gray PNGs of at most 8 bits (the
    agent's are 4-bit): so any screen of a chain is put back together at one byte a pixel
    (``hall_server.store.frames``). ``key_image`` is the base's sha256 when the base is that whole
    screen; a deeper base passed this check when it was stored."""
    if not images.is_small_gray_png(body):
        raise errors.Unprocessable(
            "a tile update must be a gray PNG of at most 8 bits a pixel (the agent sends 4-bit gray)",
            "update_not_gray",
        )
    if key_image is None:
        return
    try:
        base_body = read(key_image)
    except (FileNotFoundError, ValueError):
        raise errors.Conflict(
            f"capture {meta.base}, which this update builds on, is no longer stored: send the whole screen",
            "unknown_base",
        ) from None
    if not images.is_small_gray_png(base_body):
        raise errors.Unprocessable(
            f"capture {meta.base}, which this update builds on, is not a gray PNG of at most 8 bits a pixel: "
            "updates build only on such screens; send the whole screen",
            "base_not_gray",
        )


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
    key_image = None
    if meta.is_update:
        base_session, depth, body_size, key_image = _check_update(db, session, meta)
    else:
        _check_screen_size(db, session, meta)
        base_session, depth, body_size = None, 0, (meta.width, meta.height)
    fmt, _width, _height = _check_image(body, content_type, body_size, settings["capture_max_pixels"])
    key = exams.exam_key(db, master_key, session.exam_id)
    if meta.is_update:
        _check_gray_chain(body, key_image, lambda sha: blobs.get(session.exam_id, key, sha), meta)
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
                sealed.seal(db, session.exam_id, meta.focused_app),
                sealed.seal(db, session.exam_id, meta.window_title),
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
        raised = _record_skew(db, session, meta.agent_time, now, settings)
        gap = gaps.close_on_data(db, session.id, now)
    _tell_live(session, raised, gap)
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
    """Attach the small preview the dashboard shows to a stored capture, once: a resend of the same bytes
    is a success (False), other bytes are refused (409) and the first thumbnail stays."""
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
    if row[0] is not None:
        return _thumbnail_resent(capture_id, row[0], sha)
    key = exams.exam_key(db, master_key, session.exam_id)
    blobs.put(session.exam_id, key, body)
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE capture SET thumb_sha256 = ? WHERE session_id = ? AND capture_id = ? "
            "AND thumb_sha256 IS NULL",
            [sha, session.id, capture_id],
        )
        if cursor.rowcount == 0:  # a concurrent upload of a thumbnail for this capture won the race
            first = db.execute(
                "SELECT thumb_sha256 FROM capture WHERE session_id = ? AND capture_id = ?",
                [session.id, capture_id],
            ).fetchone()[0]
            return _thumbnail_resent(capture_id, first, sha)
    bus.new_thumbnail(session.exam_id, session.id, capture_id)
    return True


def _thumbnail_resent(capture_id: str, stored_sha: str, sha: str) -> bool:
    """A thumbnail for a capture that has one: the same bytes again are a resend, other bytes a conflict."""
    if stored_sha == sha:
        return False
    raise errors.Conflict(
        f"capture {capture_id} already has a thumbnail with other content: a thumbnail is written once",
        "thumbnail_exists",
    )


def store_unchanged(
    db: sqlite_utils.Database,
    session: Session,
    record_id: str,
    record: Unchanged,
    now: datetime,
    settings: Mapping[str, Any] | None = None,
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
        raised = _record_skew(db, session, record.agent_time, now, settings)
        gap = gaps.close_on_data(db, session.id, now)
    _tell_live(session, raised, gap)
    return True


def _tell_live(session: Session, skew: int | None, gap: tuple[int, int] | None) -> None:
    """After a capture record committed: the clock skew it raised and the capture gap it closed."""
    if skew:
        bus.observation(session.exam_id, session.id, skew)
    if gap:
        bus.observation(gap[0], session.id, gap[1])


def store_device_events(
    db: sqlite_utils.Database,
    session: Session,
    events: list[DeviceEvent],
    now: datetime,
    settings: Mapping[str, Any] | None = None,
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
                    sealed.seal(db, session.exam_id, json.dumps(event.detail)),
                ],
            )
            if cursor.rowcount == 0:
                continue
            stored += 1
            chain.link(db, "device_event", session.id, event.id)
            skewed = _record_skew(db, session, event.agent_time, now, settings)
            if skewed:
                raised.append(skewed)
            for kind, detail in rules.observations_for_device_event(event, session.student_ends_at, now):
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
    """The live session that last used this address, as (exam_id, session_id). Addresses are sealed, so a
    session is found by the keyed hash of its address under its exam's key: one per exam live at ``at``."""
    keys = sealed.keys_of(db)
    live = [
        row[0]
        for row in db.execute(
            "SELECT DISTINCT exam_id FROM agent_session WHERE expires_at >= ? AND enrolled_at <= ?",
            [to_wire(at), to_wire(at)],
        )
    ]
    indexes = [index for exam_id in live if (index := keys.address_index(exam_id, client_ip)) is not None]
    if not indexes:
        return None
    row = db.execute(
        "SELECT s.exam_id, s.id FROM agent_session s WHERE s.client_ip_index IN "  # noqa: S608 -- placeholders
        f"({','.join('?' * len(indexes))}) AND s.expires_at >= ? AND s.enrolled_at <= ? "
        "ORDER BY s.last_seen_at DESC LIMIT 1",
        [*indexes, to_wire(at), to_wire(at)],
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
        "AND json_extract(unseal(exam_id, detail), '$.host') = ? AND at >= ? LIMIT 1",
        [session_id, kind, host, to_wire(at - SITE_OBSERVATION_WINDOW)],
    ).fetchone()
    return row is not None


def _first_visit(db: sqlite_utils.Database, session_id: int, host: str, rowid: int) -> bool:
    """Whether this seat never reached ``host`` before in this session (newest first: a host it keeps
    using is found at once). Hosts are sealed, so it compares them opened."""
    row = db.execute(
        "SELECT 1 FROM site_event WHERE session_id = ? AND rowid != ? AND unseal(exam_id, host) = ? "
        "ORDER BY time DESC LIMIT 1",
        [session_id, rowid, host],
    ).fetchone()
    return row is None


def _capture_asked_since(db: sqlite_utils.Database, session_id: int, since: datetime) -> bool:
    row = db.execute(
        "SELECT 1 FROM instruction WHERE session_id = ? AND kind = 'capture_now' AND created_by IS NULL "
        "AND created_at >= ? LIMIT 1",
        [session_id, to_wire(since)],
    ).fetchone()
    return row is not None


def store_site_events(
    db: sqlite_utils.Database, events: list[SiteEvent], now: datetime, capture_min_s: float = 0
) -> tuple[int, int]:
    """Store site events from the proxy or sentinel, attributed to a seat by client IP.

    An event from an address no session uses is kept unattributed (exam_id NULL): the hall still wants to
    know. When a seat reaches a host it never reached in this session (allowed or blocked), its agent is
    asked for a capture now (a ``capture_now`` instruction its next heartbeat delivers), so the timeline has
    the screen of that moment next to the site event; at most one per ``capture_min_s`` per seat (0: never),
    and a seat that was asked a moment ago is not even checked, so a flood of new hosts costs nothing more.
    Returns (stored, duplicates)."""
    stored = 0
    raised: list[tuple[int, int | None, int]] = []
    since = now - timedelta(seconds=capture_min_s)
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
                    sealed.seal(db, exam_id, event.client_ip),
                    sealed.seal(db, exam_id, event.host),
                    sealed.seal(db, exam_id, event.url),
                    event.decision,
                    event.reason,
                ],
            )
            if cursor.rowcount == 0:
                continue
            stored += 1
            if session_id is not None:
                chain.link(db, "site_event", session_id, event.source, event.id)
                if (
                    capture_min_s > 0
                    and not _capture_asked_since(db, session_id, since)
                    and _first_visit(db, session_id, event.host, int(cursor.lastrowid or 0))
                ):
                    db.execute(
                        "INSERT INTO instruction (session_id, kind, created_at) VALUES (?, 'capture_now', ?)",
                        [session_id, to_wire(now)],
                    )
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
