"""Personal columns are sealed under their exam's key: a copy of ``invigil.db`` and its WAL shows no name,
window title, application, host, URL, client address, device detail, finding text or hold reason, while
every page and report still reads them (hall_server/store/sealed.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from hall_server.review import findings, retention
from hall_server.review.reports.timeline import timeline
from hall_server.store import crypto, db, sealed
from invigil.payloads import Enrolment, Heartbeat, SiteEvent
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, add_staff, post_site_events, seed_exam

#: What the seeded exam recorded of a student, each in a sealed column.
PERSONAL = {
    "roster.name": b"Student s0001",
    "capture.window_title": b"Exam question",
    "capture.focused_app": b"firefox",
    "site_event.host": b"chat.example.com",
    "site_event.url": b"https://chat.example.com/",
    "site_event.client_ip / agent_session.client_ip": b"10.0.0.11",
    "device_event.detail": b"anydesk",
    "annotation.text": b"Copied from a chat window",
    "case_hold.reason": b"Board case 2026-117",
}


def _db_files(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("invigil.db*")) if path.is_file())


@pytest.fixture
def recorded(exam, client):
    """One student's session through the real API, a reviewer's finding and a board's hold."""
    seed_exam(client, exam, students=1, changes=3)
    store = db.connect(exam.data_dir)
    reviewer = add_staff(store, "rita", "reviewer")
    board = add_staff(store, "bea", "exam_board")
    session_id = store.execute("SELECT id FROM agent_session").fetchone()[0]
    findings.record(
        store,
        session_id=session_id,
        author_id=reviewer,
        verdict="note",
        text="Copied from a chat window",
        span_start=utc_now(),
        now=utc_now(),
    )
    retention.place_hold(store, exam.exam_id, "s0001", board, "Board case 2026-117", utc_now())
    yield store, session_id
    store.close()


def test_no_personal_value_is_in_the_database_or_its_wal(exam, recorded):
    store, _ = recorded
    # Before a checkpoint the rows are in the WAL; after it, in the database file: neither holds them.
    on_disk = _db_files(exam.data_dir)
    assert (exam.data_dir / "invigil.db-wal").stat().st_size > 0
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    on_disk += _db_files(exam.data_dir)
    leaked = [column for column, value in PERSONAL.items() if value in on_disk]
    assert leaked == []
    # Student numbers and the site decisions stay plain: they are how rows are found and counted.
    assert b"s0001" in on_disk and b"blocked" in on_disk


def test_every_reader_still_sees_the_values(exam, recorded):
    store, session_id = recorded
    facts = timeline(store, session_id)
    assert facts.session.student_name == "Student s0001" and facts.session.client_ip == "10.0.0.11"
    titles = {entry.window_title for entry in facts.entries if getattr(entry, "window_title", None)}
    assert any(title.startswith("Exam question") for title in titles)
    assert {"chat.example.com", "exam.uni.example"} <= {site["host"] for site in facts.sites}
    assert "https://chat.example.com/" in {site["url"] for site in facts.sites}
    assert any(event["detail"].get("names") == ["anydesk"] for event in facts.device_events)
    assert any(
        o["kind"] == "blocked_site" and o["detail"]["host"] == "chat.example.com" for o in facts.observations
    )
    assert [finding.current.text for finding in facts.findings] == ["Copied from a chat window"]
    assert [hold["reason"] for hold in retention.holds(store, exam.exam_id)] == ["Board case 2026-117"]


def test_a_copy_of_the_database_without_the_keys_shows_nothing_personal(exam, recorded, tmp_path):
    store, _ = recorded
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = tmp_path / "stolen"
    copy.mkdir()
    shutil.copy(exam.data_dir / "invigil.db", copy / "invigil.db")  # no master.key beside it
    plain = sqlite3.connect(copy / "invigil.db")
    names = [row[0] for row in plain.execute("SELECT name FROM roster")]
    assert names and all(isinstance(name, bytes) and name.startswith(sealed.MAGIC) for name in names)
    thief = db.connect(copy)
    with pytest.raises(sqlite3.OperationalError):  # unseal cannot find master.key
        thief.execute("SELECT unseal(exam_id, name) FROM roster").fetchall()


def test_a_value_is_bound_to_its_exam(exam, recorded):
    store, _ = recorded
    keys = sealed.keys_of(store)
    value = keys.seal(exam.exam_id, "Student s0001")
    assert keys.unseal(exam.exam_id, value) == "Student s0001"
    with pytest.raises(InvalidTag):
        keys.unseal(None, value)  # moved to a row of another key (here: unclaimed site events)
    assert value != keys.seal(exam.exam_id, "Student s0001")  # a fresh nonce: equal names do not show


def test_once_the_exam_key_is_destroyed_its_rows_do_not_open(exam, recorded):
    store, _ = recorded
    store.execute(
        "UPDATE exam_key SET wrapped = NULL, destroyed_at = 'now' WHERE exam_id = ?", [exam.exam_id]
    )
    fresh = db.connect(exam.data_dir)  # no key cached
    assert fresh.execute("SELECT unseal(exam_id, name) FROM roster").fetchall() == [(None,)] * 5
    with pytest.raises(crypto.KeyUnavailable):
        sealed.seal(fresh, exam.exam_id, "a new name")
    fresh.close()


def test_a_site_event_no_session_claimed_is_sealed_too(exam, recorded, client):
    store, _ = recorded
    stray = SiteEvent(
        "px-stray-1", utc_now(), "10.9.9.9", "stray.example.org", "blocked", "proxy", "not allowed"
    )
    post_site_events(client, [stray])
    [(stored, host, address)] = store.execute(
        "SELECT host, unseal(exam_id, host), unseal(exam_id, client_ip) FROM site_event WHERE exam_id IS NULL"
    ).fetchall()
    assert stored.startswith(sealed.MAGIC) and (host, address) == ("stray.example.org", "10.9.9.9")


def test_a_laptop_that_moves_to_another_address_is_followed(exam, client):
    """Addresses are sealed, so a session is found by the keyed hash of its latest address: after a
    heartbeat from a new address, the proxy's events from it land in that seat, and from the old one not."""
    hall = FlaskHall(client, "10.0.0.21")
    hall.enrol(Enrolment("s0001", exam.join_code, "agent-s0001", utc_now(), "0.1", "Linux"))
    hall.client_ip = "10.0.0.99"
    hall.heartbeat(Heartbeat(utc_now()))
    post_site_events(
        client,
        [
            SiteEvent(
                "px-new-1", utc_now(), "10.0.0.99", "exam.uni.example", "allowed", "proxy", "allowlist"
            ),
            SiteEvent(
                "px-old-1", utc_now(), "10.0.0.21", "exam.uni.example", "allowed", "proxy", "allowlist"
            ),
        ],
    )
    store = db.connect(exam.data_dir)
    rows = store.execute(
        "SELECT event_id, session_id IS NOT NULL, unseal(exam_id, client_ip) FROM site_event "
        "ORDER BY event_id"
    ).fetchall()
    assert rows == [("px-new-1", 1, "10.0.0.99"), ("px-old-1", 0, "10.0.0.21")]
    assert store.execute("SELECT unseal(exam_id, client_ip) FROM agent_session").fetchall() == [
        ("10.0.0.99",)
    ]
    store.close()
