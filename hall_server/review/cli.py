"""``invigil-server report|export|gdpr-export|verify|retention|hold|audit``: review, integrity, retention and
audit from the appliance's shell. Thin: parse, call the library, echo; domain errors become ClickException.

Registered on the ``invigil-server`` group by ``hall_server.cli``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import sqlite_utils

from hall_server.review import queue_cli, retention
from hall_server.review.reports import data, export, integrity
from hall_server.store import audit, chain, crypto, db, users
from hall_server.store.blobs import BlobStore
from invigil.timeutil import from_wire, utc_now

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVIGIL_DATA_DIR",
    required=True,
    help="The hall server's data directory.",
)
exam_option = click.option(
    "--exam", "exam_id", type=int, required=True, help="Exam id (invigil-provision exam list)."
)
by_option = click.option(
    "--by",
    "by_username",
    envvar="INVIGIL_STAFF_USER",
    default=None,
    help="Your staff username, written to the audit log (otherwise the log names the OS account).",
)


@contextmanager
def _store(data_dir: Path) -> Iterator[sqlite_utils.Database]:
    if not db.db_path(data_dir).exists():
        raise click.ClickException(f"no Invigil store in {data_dir}")
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        yield store
    finally:
        store.close()


def _actor(store: sqlite_utils.Database, username: str | None) -> tuple[int | None, str]:
    if username is None:
        return None, f"appliance:{audit.cli_actor()['os_user']}"
    try:
        return users.user_id(store, username), username
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("report")
@data_dir_option
@exam_option
@click.option("--student", required=True, help="Student number.")
@click.option("--format", "fmt", type=click.Choice(export.FORMATS), default="pdf", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@by_option
def report_command(
    data_dir: Path, exam_id: int, student: str, fmt: str, out: Path, by_username: str | None
) -> None:
    """Render one student's report (self-contained HTML, or PDF for the exam board). Audited.

    Example: invigil-server report --data-dir /var/lib/invigil --exam 3 --student s1234567 --format pdf
    --out s1234567.pdf --by board.chair
    """
    with _store(data_dir) as store:
        user_id, actor = _actor(store, by_username)
        try:
            report = export.write_report(
                store, data_dir, exam_id, student, fmt, out, user_id=user_id, actor=actor
            )
        except (data.ReportUnavailable, crypto.KeyUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
    heads = ", ".join(f"{h['head'][:16]}… ({h['length']} records)" for h in report.chain_heads if h["head"])
    click.echo(f"wrote {out} ({out.stat().st_size // 1024} KiB); chain head {heads or 'none'}")


@click.command("export")
@data_dir_option
@exam_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Zip to write.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Render processes [CPU count].")
@click.option("--no-pdf", is_flag=True, help="HTML reports only (much faster).")
@by_option
def export_command(
    data_dir: Path, exam_id: int, out: Path, jobs: int | None, no_pdf: bool, by_username: str | None
) -> None:
    """Export a whole exam as a zip: per-student PDF and HTML reports, the site log as CSV, and a manifest
    with every session's hash-chain head. Audited.

    Example: invigil-server export --data-dir /var/lib/invigil --exam 3 --out exam-3.zip --by board.chair
    """
    with _store(data_dir) as store:
        user_id, actor = _actor(store, by_username)
        total = int(
            store.execute(
                "SELECT COUNT(DISTINCT roster_id) FROM agent_session WHERE exam_id = ?", [exam_id]
            ).fetchone()[0]
        )
        try:
            with click.progressbar(
                length=total, label="rendering reports", show_pos=True, show_eta=True
            ) as bar:
                manifest = export.export_exam(
                    store,
                    data_dir,
                    exam_id,
                    out,
                    user_id=user_id,
                    actor=actor,
                    jobs=jobs,
                    with_pdf=not no_pdf,
                    progress=lambda _number: bar.update(1),
                )
        except (data.ReportUnavailable, crypto.KeyUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
    absent = sum(1 for entry in manifest["students"].values() if not entry["enrolled"])
    click.echo(f"wrote {out}: {total} student report(s), {absent} on the roster never enrolled")


@click.command("gdpr-export")
@data_dir_option
@exam_option
@click.option("--student", required=True, help="Student number.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Zip to write.")
@by_option
def gdpr_export_command(
    data_dir: Path, exam_id: int, student: str, out: Path, by_username: str | None
) -> None:
    """Everything stored about one student in one exam (a GDPR access request): data.json and every
    captured screen as PNG. Audited.

    Example: invigil-server gdpr-export --data-dir /var/lib/invigil --exam 3 --student s1234567
    --out s1234567-data.zip
    """
    with _store(data_dir) as store:
        user_id, actor = _actor(store, by_username)
        try:
            content = export.export_student_data(
                store, data_dir, exam_id, student, out, user_id=user_id, actor=actor
            )
        except (data.ReportUnavailable, crypto.KeyUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
    captures = sum(len(session["captures"]) for session in content["sessions"])
    click.echo(f"wrote {out}: {len(content['sessions'])} session(s), {captures} capture record(s)")


@click.command("verify")
@click.argument("export_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="INVIGIL_DATA_DIR")
@click.option("--exam", "exam_id", type=int, default=None, help="Only this exam's sessions.")
def verify_command(export_file: Path | None, data_dir: Path | None, exam_id: int | None) -> None:
    """Recompute the hash chains of a data directory, or of an exported report (.html) or exam export
    (.zip), and name the first broken link of each session. For an export, also compare every row the
    pages show of a chained record (captions, site log, device events, counts, heads) with that record,
    check the zip's files against its manifest, and print each session's head (a PDF's heads must match).
    Exits 1 when anything does not hold.

    Example: invigil-server verify --data-dir /var/lib/invigil

    Example: invigil-server verify exam-3.zip
    """
    if (export_file is None) == (data_dir is None):
        raise click.UsageError("give either --data-dir or an exported FILE")
    try:
        if export_file is not None:
            ok = _echo_export_check(integrity.verify_export(export_file))
        else:
            assert data_dir is not None
            with _store(data_dir) as store:
                result = chain.verify_store(store, exam_id)
            ok = _echo_store_check(result)
    except (ValueError, KeyError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if not ok:
        raise SystemExit(1)


def _echo_store_check(result: chain.VerifyResult) -> bool:
    for problem in result.breaks:
        click.echo(f"BROKEN {problem}", err=True)
    click.echo(
        f"{result.sessions} session(s), {result.records} chained record(s): "
        + ("all chains intact" if result.ok else f"{len(result.breaks)} broken")
    )
    return result.ok


def _echo_export_check(checked: integrity.ExportCheck) -> bool:
    for problem in checked.problems:
        click.echo(f"BROKEN {problem}", err=True)
    for head in checked.heads:
        student = f" (student {head.student_number})" if head.student_number else ""
        click.echo(
            f"session {head.session_id}{student}: head {head.head or '(nothing recorded)'} "
            f"after {head.length} records" + ("" if head.verified else " (claimed: its chain is broken)")
        )
    if checked.unchained_rows:
        click.echo(
            f"{checked.unchained_rows} row(s) show records stored before the chain existed: not checked"
        )
    click.echo(
        f"{checked.sessions} session(s), {checked.records} chained record(s), {checked.rows} row(s) shown "
        "checked: " + ("all chains intact" if checked.ok else f"{len(checked.problems)} broken")
    )
    return checked.ok


@click.command("retention")
@data_dir_option
@click.option("--dry-run", is_flag=True, help="Only list what is due and who is held.")
@click.option("--now", "now_text", default=None, hidden=True, help="Pretend it is this UTC time (tests).")
def retention_command(data_dir: Path, dry_run: bool, now_text: str | None) -> None:
    """Delete what is past its retention (rows, blobs, then the exam key), except cases the exam board holds,
    and site events of no session older than the longest retention; log every deletion. Run daily by
    systemd/invigil-retention.timer.

    Example: invigil-server retention --data-dir /var/lib/invigil --dry-run
    """
    now = from_wire(now_text) if now_text else utc_now()
    try:
        with _store(data_dir) as store:
            result = retention.run(store, BlobStore(data_dir), now, dry_run=dry_run)
    except Exception:
        if not dry_run:
            retention.record_run(data_dir, ok=False, exams=0)
        raise
    if not dry_run:
        retention.record_run(data_dir, ok=True, exams=len(result.exams))
    if not result.exams and not result.unclaimed_site_events:
        click.echo("nothing is due")
    if result.unclaimed_site_events:
        click.echo(
            f"{'due' if dry_run else 'deleted'}: {result.unclaimed_site_events} site event(s) of no session, "
            f"older than {result.unclaimed_days} days"
        )
    for deletion in result.exams:
        held = f"; held: {', '.join(deletion.held_students)}" if deletion.held_students else ""
        if dry_run:
            click.echo(
                f"due: exam {deletion.exam_id} {deletion.title!r} (since {deletion.due_at:%Y-%m-%d}){held}"
            )
        else:
            counts = ", ".join(f"{n} {table}" for table, n in sorted(deletion.counts.items()) if n)
            key = "key destroyed" if deletion.key_destroyed else "key kept for the held cases"
            click.echo(
                f"deleted exam {deletion.exam_id} {deletion.title!r}: {counts or 'nothing'}; {key}{held}"
            )


@click.group("hold")
def hold_group() -> None:
    """Exam-board holds: a held student's case is kept past retention until the hold is lifted.

    Example: invigil-server hold place --data-dir /var/lib/invigil --exam 3 --student s1234567
    --reason "case 2026-17" --by board.chair
    """


@hold_group.command("place")
@data_dir_option
@exam_option
@click.option("--student", required=True, help="Student number.")
@click.option("--reason", required=True, help="Case number or why the board keeps the data.")
@by_option
def hold_place(data_dir: Path, exam_id: int, student: str, reason: str, by_username: str | None) -> None:
    """Hold one student's case.

    Example: invigil-server hold place --data-dir /var/lib/invigil --exam 3 --student s1234567
    --reason "case 17"
    """
    with _store(data_dir) as store:
        user_id, _ = _actor(store, by_username)
        try:
            hold_id = retention.place_hold(store, exam_id, student, user_id, reason, utc_now())
        except retention.HoldRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"hold {hold_id} placed on {student} in exam {exam_id}")


@hold_group.command("lift")
@data_dir_option
@click.argument("hold_id", type=int)
@by_option
def hold_lift(data_dir: Path, hold_id: int, by_username: str | None) -> None:
    """Lift a hold; the next retention run deletes the case if it is due.

    Example: invigil-server hold lift --data-dir /var/lib/invigil 4 --by board.chair
    """
    with _store(data_dir) as store:
        user_id, _ = _actor(store, by_username)
        try:
            retention.lift_hold(store, hold_id, user_id, utc_now())
        except retention.HoldRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"hold {hold_id} lifted")


@hold_group.command("list")
@data_dir_option
@click.option("--exam", "exam_id", type=int, default=None)
@click.option("--all", "show_all", is_flag=True, help="Lifted holds too.")
def hold_list(data_dir: Path, exam_id: int | None, show_all: bool) -> None:
    """List holds.

    Example: invigil-server hold list --data-dir /var/lib/invigil --exam 3
    """
    with _store(data_dir) as store:
        rows = retention.holds(store, exam_id, open_only=not show_all)
    for row in rows:
        state = f"lifted {row['lifted_at']}" if row["lifted_at"] else "open"
        click.echo(
            f"{row['id']:>4} exam {row['exam_id']} {row['student_number']} by {row['placed_by'] or '-'} "
            f"{row['placed_at']} ({state}): {row['reason']}"
        )


@click.command("audit")
@data_dir_option
@click.option("--exam", "exam_id", type=int, default=None, help="Only this exam.")
@click.option("--student", default=None, help="Only rows about this student number.")
@click.option("--action", default=None, help=f"Only this action, e.g. {', '.join(audit.ACTIONS[:4])}.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit_command(
    data_dir: Path, exam_id: int | None, student: str | None, action: str | None, as_json: bool
) -> None:
    """Read the audit log: who viewed or exported which captures, holds, deletions (for the exam board).

    Example: invigil-server audit --data-dir /var/lib/invigil --exam 3 --student s1234567
    """
    with _store(data_dir) as store:
        entries = audit.read_log(store, exam_id=exam_id, student_number=student, action=action)
    for entry in entries:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": entry.id,
                        "at": entry.at,
                        "who": entry.who,
                        "action": entry.action,
                        "exam_id": entry.exam_id,
                        "session_id": entry.session_id,
                        "student_number": entry.student_number,
                        "detail": entry.detail,
                    }
                )
            )
        else:
            about = f" student {entry.student_number}" if entry.student_number else ""
            exam = f" exam {entry.exam_id}" if entry.exam_id is not None else ""
            click.echo(
                f"{entry.at}  {entry.who:<24} {entry.action:<18}{exam}{about}  {json.dumps(entry.detail)}"
            )


COMMANDS = (
    report_command,
    export_command,
    gdpr_export_command,
    verify_command,
    retention_command,
    hold_group,
    audit_command,
    queue_cli.review_queue_command,
    queue_cli.screen_text_command,
)


def register(group: click.Group) -> None:
    """Add these commands to ``invigil-server``."""
    for command in COMMANDS:
        group.add_command(command)
