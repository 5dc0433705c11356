"""Named schema migrations, applied in order and recorded in the database. Never edit one that shipped:
add a new function instead."""

from __future__ import annotations

import re

from sqlite_utils import Database, Migrations

from hall_server.store import crypto, examkeys, sealed

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


#: Tables retention deletes from whose ids the audit log names (a column, or a key of its detail): an id is
#: never handed out again, so an old audit row never comes to point at another student's row.
_NEVER_REUSED = {
    "roster": ("$.roster",),
    "agent_session": (),  # audit_log.session_id
    "observation": ("$.observation",),
    "instruction": (),
    "annotation": ("$.finding", "$.supersedes", "$.confirms"),
    "case_hold": ("$.hold",),
}
_ROWID_ALIAS = re.compile(r"\bid INTEGER PRIMARY KEY\b(?! AUTOINCREMENT)")


def _highest_audited_id(db: Database, table: str) -> int:
    """The highest id of ``table`` the audit log names, even if that row is gone."""
    keys = _NEVER_REUSED[table]
    # CASE evaluates lazily: json_type() never sees a detail that is not JSON.
    ids = [
        f"MAX(CASE WHEN json_valid(detail) THEN CASE WHEN json_type(detail, '{key}') = 'integer' "
        f"THEN json_extract(detail, '{key}') END END)"
        for key in keys
    ]
    if table == "agent_session":
        ids.append("MAX(session_id)")
    if not ids:
        return 0
    row = db.execute(f"SELECT {', '.join(ids)} FROM audit_log").fetchone()  # noqa: S608 -- fixed names
    return max((value for value in row if value is not None), default=0)


def _rebuild_with_autoincrement(db: Database, table: str) -> None:
    """The table rebuild of https://sqlite.org/lang_altertable.html#otheralter: a copy declared
    ``AUTOINCREMENT``, the rows, then the indexes and triggers of the old table, under the old name."""
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()[0]
    if "AUTOINCREMENT" in sql.upper():
        return  # rebuilt by an earlier attempt that stopped before it was recorded
    new_sql, altered = _ROWID_ALIAS.subn("id INTEGER PRIMARY KEY AUTOINCREMENT", sql, count=1)
    new_sql, renamed = re.subn(rf'^CREATE TABLE "?{table}"?', f'CREATE TABLE "_new_{table}"', new_sql)
    if not (altered and renamed):
        raise RuntimeError(f"unexpected schema of table {table}: {sql}")
    kept = [
        row[0]
        for row in db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            [table],
        )
    ]
    columns = ", ".join(f'"{row[1]}"' for row in db.execute(f'PRAGMA table_info("{table}")'))
    db.execute(new_sql)
    db.execute(f'INSERT INTO "_new_{table}" ({columns}) SELECT {columns} FROM "{table}"')  # noqa: S608
    db.execute(f'DROP TABLE "{table}"')
    db.execute(f'ALTER TABLE "_new_{table}" RENAME TO "{table}"')
    for statement in kept:
        db.execute(statement)
    # The copy set the sequence to the highest id left; ids of deleted rows the audit log names stay used.
    floor = _highest_audited_id(db, table)
    if not db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", [floor, table]).rowcount:
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, floor])


@MIGRATIONS(transactional=False)
def m005_ids_never_reused(db: Database) -> None:
    """Roster entries, sessions, observations, instructions, findings and holds get ``AUTOINCREMENT`` ids.

    Without it SQLite hands the highest id out again once its row is deleted, so after retention an audit
    row about a deleted session would name the next exam's student. SQLite cannot add AUTOINCREMENT in
    place: each table is rebuilt. Foreign keys are switched off for the rebuild (a dropped parent table
    would otherwise fail its children) and checked before the commit; outside sqlite-utils' migration
    transaction, because ``PRAGMA foreign_keys`` does nothing inside one. Safe to run again."""
    if db.conn.in_transaction:
        raise RuntimeError("m005_ids_never_reused must run outside a transaction")
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in _NEVER_REUSED:
                _rebuild_with_autoincrement(db, table)
            broken = db.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:5]}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.execute("PRAGMA foreign_keys = ON")


@MIGRATIONS()
def m006_retention_keeps_counts(db: Database) -> None:
    """Retention's traces: the deletion log counts held students instead of naming them, and site events
    no session claimed (``exam_id`` NULL) get an index by age, by which retention deletes them."""
    db.execute(
        "UPDATE deletion_log SET held_students = '[]', "
        "counts = json_set(counts, '$.held_students', json_array_length(held_students))"
    )
    db.execute("CREATE INDEX site_event_unclaimed ON site_event(received_at) WHERE exam_id IS NULL")


@MIGRATIONS()
def m007_receive_order(db: Database) -> None:
    """The live view reads each seat's latest capture and device events by the server's receive time (an
    agent's clock may lie), so those are indexed by it."""
    _run_script(
        db,
        """
        CREATE INDEX capture_received ON capture(session_id, received_at);
        CREATE INDEX device_event_received ON device_event(session_id, received_at)
        """,
    )


@MIGRATIONS()
def m008_exam_keys_in_files(db: Database) -> None:
    """Exam keys move out of the database into ``keys/`` (hall_server/store/examkeys.py), so that no database
    backup holds key material: each wrapped key is written (fsynced) to its file, then cleared here."""
    data_dir = examkeys.data_dir_of(db)
    for exam_id, wrapped in db.execute(
        "SELECT exam_id, wrapped FROM exam_key WHERE wrapped IS NOT NULL AND destroyed_at IS NULL"
    ).fetchall():
        examkeys.store_wrapped(data_dir, exam_id, wrapped)
    db.execute("UPDATE exam_key SET wrapped = NULL WHERE wrapped IS NOT NULL")


@MIGRATIONS()
def m009_sealed_columns(db: Database) -> None:
    """Personal columns are sealed under their exam's key (hall_server/store/sealed.py): the values stored
    before are sealed here, and a session's client address is found by a keyed hash of it
    (``client_ip_index``) instead of by the address itself. A row whose exam's key retention destroyed
    stays as it was (retention deleted such rows with the key); any other missing key stops the migration."""
    keys = sealed.keys_of(db)
    _run_script(
        db,
        """
        ALTER TABLE agent_session ADD COLUMN client_ip_index TEXT;
        DROP INDEX agent_session_ip;
        CREATE INDEX agent_session_address ON agent_session(client_ip_index, last_seen_at)
        """,
    )
    # The plain values must not stay behind in the pages' free space, and findings are never edited in
    # place (sealing them is no edit, so their guard steps aside for it).
    db.execute("PRAGMA secure_delete = ON")
    db.execute("DROP TRIGGER annotation_append_only")
    for table, columns in sealed.SEALED_COLUMNS.items():
        plain = " OR ".join(f"typeof({column}) = 'text'" for column in columns)
        rows = db.execute(
            f"SELECT rowid, exam_id, {', '.join(columns)} FROM {table} WHERE {plain}"  # noqa: S608 -- fixed names
        ).fetchall()
        for rowid, exam_id, *values in rows:
            try:
                update: dict[str, bytes | str | None] = {
                    column: keys.seal(exam_id, value) for column, value in zip(columns, values, strict=True)
                }
                if table == "agent_session":
                    update["client_ip_index"] = keys.address_index(exam_id, values[0])
            except crypto.KeyDestroyed:
                continue
            assignments = ", ".join(f"{column} = ?" for column in update)
            db.execute(
                f"UPDATE {table} SET {assignments} WHERE rowid = ?",  # noqa: S608 -- fixed names
                [*update.values(), rowid],
            )
    db.execute(
        "CREATE TRIGGER annotation_append_only BEFORE UPDATE ON annotation BEGIN "
        "SELECT RAISE(ABORT, 'findings are never edited in place: record a correction instead'); END"
    )
    db.execute("PRAGMA secure_delete = OFF")


@MIGRATIONS()
def m010_review_queue(db: Database) -> None:
    """What an exam expects on screen (``exam.expected_state``: the exam platform and the applications it
    allows, not personal), the review queue's state: who cleared which moment as "nothing here", and
    which reviewer a student is assigned to (hall_server/review/queue.py), and the text read off screens
    (``screen_text.text``, sealed under the exam's key like the other personal columns)."""
    _run_script(
        db,
        """
        ALTER TABLE exam ADD COLUMN expected_state TEXT NOT NULL DEFAULT '{}';
        CREATE TABLE queue_mark (
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            moment_key TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES user(id),
            at TEXT NOT NULL,
            PRIMARY KEY (session_id, moment_key)
        );
        CREATE TABLE queue_claim (
            roster_id INTEGER NOT NULL PRIMARY KEY REFERENCES roster(id),
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            user_id INTEGER NOT NULL REFERENCES user(id),
            at TEXT NOT NULL
        );
        CREATE INDEX queue_claim_exam ON queue_claim(exam_id, user_id);
        CREATE TABLE screen_text (
            session_id INTEGER NOT NULL REFERENCES agent_session(id),
            capture_id TEXT NOT NULL,
            exam_id INTEGER NOT NULL REFERENCES exam(id),
            agent_time TEXT NOT NULL,
            text BLOB,
            read_at TEXT NOT NULL,
            PRIMARY KEY (session_id, capture_id)
        );
        CREATE INDEX screen_text_exam ON screen_text(exam_id, agent_time)
        """,
    )


@MIGRATIONS()
def m011_staff_lifecycle(db: Database) -> None:
    """Staff access that ends: one row per dashboard login (``staff_login``; the cookie holds its random id,
    so logging out, disabling the account or changing its password ends it everywhere and for good), the
    login throttle in the store (``login_throttle``: per account and per address, surviving restarts), a
    removed account kept for the audit trail (``user.removed_at``), and assignments bounded in time
    (``assignment.valid_from``/``valid_until``, NULL: unbounded; hall_server/store/access.py)."""
    _run_script(
        db,
        """
        CREATE TABLE staff_login (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES user(id),
            created_at TEXT NOT NULL,
            address TEXT NOT NULL DEFAULT '',
            ended_at TEXT,
            ended_why TEXT
        );
        CREATE INDEX staff_login_user ON staff_login(user_id, ended_at);
        CREATE TABLE login_throttle (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            locked_until REAL NOT NULL DEFAULT 0,
            last_at REAL NOT NULL
        );
        ALTER TABLE user ADD COLUMN removed_at TEXT;
        ALTER TABLE assignment ADD COLUMN valid_from TEXT;
        ALTER TABLE assignment ADD COLUMN valid_until TEXT
        """,
    )


@MIGRATIONS()
def m012_capture_gaps(db: Database) -> None:
    """Live capture gaps (hall_server/ingest/gaps.py): an observation that spans time is closed
    (``closed_at``, server time) when its span ends, and a session has at most one open ``capture_gap``,
    whichever process raises it. The sweep that raises them reads the sessions that may still be running
    by their expiry."""
    _run_script(
        db,
        """
        ALTER TABLE observation ADD COLUMN closed_at TEXT;
        CREATE UNIQUE INDEX observation_open_gap ON observation(session_id)
            WHERE kind = 'capture_gap' AND closed_at IS NULL;
        CREATE INDEX agent_session_running ON agent_session(expires_at) WHERE ended_at IS NULL
        """,
    )
