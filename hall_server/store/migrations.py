"""Named schema migrations, applied in order and recorded in the database. Never edit one that shipped:
add a new function instead."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

MIGRATIONS = Migrations("invigil")


def _run_script(db: Database, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first; run statement by statement instead.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@MIGRATIONS()
def m001_core(db: Database) -> None:
    _run_script(
        db,
        """
        CREATE TABLE hall (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            interface TEXT NOT NULL DEFAULT '',
            seat_map TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL
        );
        CREATE TABLE exam (
            id INTEGER PRIMARY KEY,
            hall_id INTEGER NOT NULL REFERENCES hall(id),
            title TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            capture_interval_s INTEGER NOT NULL DEFAULT 5,
            policy_text TEXT NOT NULL DEFAULT '',
            interception INTEGER NOT NULL DEFAULT 0,
            retention_days INTEGER NOT NULL DEFAULT 30,
            join_code TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE exam_key (
            exam_id INTEGER PRIMARY KEY REFERENCES exam(id),
            wrapped BLOB,
            created_at TEXT NOT NULL,
            destroyed_at TEXT
        );
        CREATE TABLE roster (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            student_number TEXT NOT NULL,
            name TEXT NOT NULL,
            extra_time_min INTEGER NOT NULL DEFAULT 0,
            seat TEXT,
            UNIQUE (exam_id, student_number)
        );
        CREATE TABLE agent_session (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            roster_id INTEGER NOT NULL REFERENCES roster(id),
            agent_id TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            client_ip TEXT NOT NULL,
            agent_version TEXT NOT NULL DEFAULT '',
            os TEXT NOT NULL DEFAULT '',
            enrolled_at TEXT NOT NULL,
            enrol_agent_time TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            last_agent_time TEXT,
            state TEXT NOT NULL DEFAULT 'capturing',
            backlog INTEGER NOT NULL DEFAULT 0,
            expires_at TEXT NOT NULL,
            ended_at TEXT
        );
        CREATE INDEX agent_session_exam ON agent_session(exam_id, roster_id);
        CREATE INDEX agent_session_ip ON agent_session(client_ip, last_seen_at);
        CREATE TABLE capture (
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            capture_id TEXT NOT NULL,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            monitor INTEGER NOT NULL,
            agent_time TEXT NOT NULL,
            received_at TEXT NOT NULL,
            changed INTEGER NOT NULL,
            sha256 TEXT,
            size INTEGER,
            width INTEGER,
            height INTEGER,
            format TEXT,
            trigger TEXT,
            focused_app TEXT,
            window_title TEXT,
            since_capture_id TEXT,
            thumb_sha256 TEXT,
            PRIMARY KEY (session_id, capture_id)
        );
        CREATE INDEX capture_timeline ON capture(session_id, agent_time);
        CREATE INDEX capture_exam ON capture(exam_id, received_at);
        CREATE TABLE device_event (
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            event_id TEXT NOT NULL,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            kind TEXT NOT NULL,
            agent_time TEXT NOT NULL,
            received_at TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (session_id, event_id)
        );
        CREATE TABLE site_event (
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            exam_id INTEGER REFERENCES exam(id),
            session_id INTEGER REFERENCES agent_session(id),
            time TEXT NOT NULL,
            received_at TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            host TEXT NOT NULL,
            url TEXT,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (source, event_id)
        );
        CREATE INDEX site_event_session ON site_event(session_id, time);
        CREATE TABLE observation (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            session_id INTEGER REFERENCES agent_session(id),
            kind TEXT NOT NULL,
            at TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            acknowledged_by INTEGER REFERENCES user(id),
            acknowledged_at TEXT
        );
        CREATE INDEX observation_exam ON observation(exam_id, at);
        CREATE INDEX observation_session ON observation(session_id, kind, at);
        CREATE TABLE instruction (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            kind TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by INTEGER REFERENCES user(id),
            delivered_at TEXT
        );
        CREATE INDEX instruction_pending ON instruction(session_id, delivered_at);
        CREATE TABLE user (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE TABLE user_role (
            user_id INTEGER NOT NULL REFERENCES user(id),
            role TEXT NOT NULL CHECK (role IN ('organiser', 'invigilator', 'reviewer', 'exam_board')),
            PRIMARY KEY (user_id, role)
        );
        CREATE TABLE assignment (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES user(id),
            role TEXT NOT NULL,
            hall_id INTEGER REFERENCES hall(id),
            exam_id INTEGER REFERENCES exam(id),
            CHECK (hall_id IS NOT NULL OR exam_id IS NOT NULL)
        );
        CREATE TABLE annotation (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            author_id INTEGER NOT NULL REFERENCES user(id),
            created_at TEXT NOT NULL,
            span_start TEXT NOT NULL,
            span_end TEXT,
            kind TEXT NOT NULL,
            text TEXT NOT NULL DEFAULT '',
            supersedes INTEGER REFERENCES annotation(id)
        );
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user_id INTEGER REFERENCES user(id),
            action TEXT NOT NULL,
            exam_id INTEGER,
            session_id INTEGER,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        """,
    )


@MIGRATIONS()
def m002_live_hall(db: Database) -> None:
    """Attendance (ID checked) per roster entry, and the indexes the live hall view reads by."""
    _run_script(
        db,
        """
        ALTER TABLE roster ADD COLUMN attendance_checked_at TEXT;
        ALTER TABLE roster ADD COLUMN attendance_checked_by INTEGER REFERENCES user(id);
        CREATE INDEX observation_open ON observation(exam_id, acknowledged_at);
        CREATE INDEX agent_session_roster ON agent_session(roster_id, enrolled_at);
        CREATE INDEX audit_log_at ON audit_log(at);
        """,
    )


@MIGRATIONS()
def m003_chain_review(db: Database) -> None:
    """Review and reports: the per-session hash chain over captures, device events and site events
    (hall_server/store/chain.py), findings that confirm others (hall_server/review/findings.py), case holds
    and the deletion log of retention (hall_server/review/retention.py). Findings and the audit log are
    append-only."""
    _run_script(
        db,
        """
        ALTER TABLE agent_session ADD COLUMN chain_head TEXT;
        ALTER TABLE agent_session ADD COLUMN chain_length INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE capture ADD COLUMN chain_seq INTEGER;
        ALTER TABLE capture ADD COLUMN chain_hash TEXT;
        ALTER TABLE device_event ADD COLUMN chain_seq INTEGER;
        ALTER TABLE device_event ADD COLUMN chain_hash TEXT;
        ALTER TABLE site_event ADD COLUMN chain_seq INTEGER;
        ALTER TABLE site_event ADD COLUMN chain_hash TEXT;
        CREATE INDEX device_event_session ON device_event(session_id, agent_time);
        ALTER TABLE annotation ADD COLUMN confirms INTEGER REFERENCES annotation(id);
        ALTER TABLE annotation ADD COLUMN observation_id INTEGER;
        CREATE INDEX annotation_session ON annotation(session_id, span_start);
        CREATE INDEX audit_log_exam ON audit_log(exam_id, at);
        ALTER TABLE exam ADD COLUMN retention_done_at TEXT;
        CREATE TABLE case_hold (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            student_number TEXT NOT NULL,
            placed_by INTEGER REFERENCES user(id),
            reason TEXT NOT NULL,
            placed_at TEXT NOT NULL,
            lifted_by INTEGER REFERENCES user(id),
            lifted_at TEXT
        );
        CREATE INDEX case_hold_exam ON case_hold(exam_id, lifted_at);
        CREATE TABLE deletion_log (
            id INTEGER PRIMARY KEY,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            at TEXT NOT NULL,
            by TEXT NOT NULL,
            complete INTEGER NOT NULL,
            held_students TEXT NOT NULL DEFAULT '[]',
            counts TEXT NOT NULL DEFAULT '{}'
        )
        """,
    )
    # A trigger body holds ";" so it cannot go through _run_script's statement split.
    db.execute(
        "CREATE TRIGGER annotation_append_only BEFORE UPDATE ON annotation BEGIN "
        "SELECT RAISE(ABORT, 'findings are never edited in place: record a correction instead'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log BEGIN "
        "SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


@MIGRATIONS()
def m004_tile_updates(db: Database) -> None:
    """Tile updates (docs/api.md): a capture may carry only the tiles that changed since ``base_capture_id``
    of session ``base_session_id`` (the same session, or an earlier one of the same student after a
    re-enrolment), ``tile`` pixels square, ``tile_map`` saying which; ``chain_depth`` counts the updates since
    the last whole screen, which the server bounds so that any screen is put back together quickly."""
    _run_script(
        db,
        """
        ALTER TABLE capture ADD COLUMN base_capture_id TEXT;
        ALTER TABLE capture ADD COLUMN base_session_id INTEGER;
        ALTER TABLE capture ADD COLUMN tile INTEGER;
        ALTER TABLE capture ADD COLUMN tile_map TEXT;
        ALTER TABLE capture ADD COLUMN chain_depth INTEGER NOT NULL DEFAULT 0
        """,
    )
