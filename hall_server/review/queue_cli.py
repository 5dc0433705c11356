"""``invigil-server review-queue EXAM``: the exam's review queue from the appliance's shell, as text or JSON
(for scripts and checks; the listing is audited like a reviewer's view), and ``invigil-server screen-text``,
the background pass that reads the text on the screens that matter. Thin: parse, call, echo."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

import click
import sqlite_utils

from hall_server.review import expected, queue, screentext
from hall_server.store import access, audit, db, private_files, users
from hall_server.store.screens import Screens
from invigil.timeutil import utc_now


@click.command("review-queue")
@click.argument("exam_id", metavar="EXAM", type=int)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVIGIL_DATA_DIR",
    required=True,
    help="The hall server's data directory.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: progress and every moment.")
@click.option("--open-only", is_flag=True, help="Only moments nobody cleared yet.")
@click.option(
    "--by", "by_username", envvar="INVIGIL_STAFF_USER", default=None, help="Your staff username (audit)."
)
@click.option(
    "--split",
    "split_among",
    default=None,
    metavar="USER,USER,...",
    help="Share the students with open moments nobody holds among these reviewers, evenly by open moments.",
)
@click.option("--reassign", is_flag=True, help="With --split: share out every student, held or not.")
@click.option(
    "--assign",
    "assignments",
    multiple=True,
    metavar="USER=NUMBER,NUMBER",
    help="Give these students to one reviewer (repeatable).",
)
@click.option(
    "--release", "release_user", default=None, metavar="USER", help="Give back a reviewer's students."
)
def review_queue_command(
    data_dir: Path,
    exam_id: int,
    as_json: bool,
    open_only: bool,
    by_username: str | None,
    split_among: str | None,
    reassign: bool,
    assignments: tuple[str, ...],
    release_user: str | None,
) -> None:
    """Print EXAM's review queue: the moments worth a look across all students, ordered by kind and time,
    each with student number, start, end, kinds and the capture ids that show it. Signals, never verdicts.
    --split, --assign and --release share the students among reviewers first (audited); each reviewer sees
    theirs under "only my students" in the dashboard.

    Example: invigil-server review-queue 3 --data-dir /var/lib/invigil --json --by rita
             invigil-server review-queue 3 --data-dir /var/lib/invigil --split rita,bob --by olga
    """
    if reassign and split_among is None:
        raise click.UsageError("--reassign goes with --split")
    if not db.db_path(data_dir).exists():
        raise click.ClickException(f"no Invigil store in {data_dir}")
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        user_id = None
        if by_username is not None:
            try:
                user_id = users.user_id(store, by_username)
            except users.UserError as exc:
                raise click.ClickException(str(exc)) from None
        try:
            _share_out(store, exam_id, user_id, split_among, reassign, assignments, release_user)
        except (queue.QueueRefused, LookupError) as exc:
            raise click.ClickException(str(exc)) from None
        started = time.perf_counter()
        try:
            result = queue.build(store, exam_id)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        built_s = time.perf_counter() - started
        detail = {
            "by": by_username or f"appliance:{audit.cli_actor()['os_user']}",
            "moments": len(result.moments),
        }
        audit.record(store, user_id, "queue_view", exam_id, None, detail)
    finally:
        store.close()
    moments = result.open if open_only else result.moments
    if as_json:
        document = result.to_json()
        document["moments"] = [m.to_json() for m in moments]
        document["progress"] = result.progress()
        document["build_s"] = round(built_s, 3)
        click.echo(json.dumps(document, indent=1))
        return
    click.echo(result.progress())
    for name, row in result.by_reviewer().items():
        click.echo(f"  {name or '(nobody yet)'}: {row['students']} students, {row['open']} moments open")
    for item in moments:
        m = item.moment
        click.echo(
            f"{item.student_number:<12} {m.start:%H:%M:%S}-{m.end:%H:%M:%S} {','.join(m.kinds):<32} "
            f"{item.state:<12} {' '.join(m.capture_ids)}"
        )


def _reviewer(store: sqlite_utils.Database, exam_id: int, username: str) -> int:
    """The user id of a reviewer of this exam; refuses a name that is not one, saying how to make it one."""
    try:
        uid = users.user_id(store, username)
    except users.UserError as exc:
        raise queue.QueueRefused(str(exc)) from None
    if not access.review_roles(store, uid, exam_id, utc_now()):
        raise queue.QueueRefused(
            f"{username} does not review exam {exam_id}: assign them first "
            f"(invigil-provision user assign {username} --role reviewer --exam {exam_id})"
        )
    return uid


def _share_out(
    store: sqlite_utils.Database,
    exam_id: int,
    by: int | None,
    split_among: str | None,
    reassign: bool,
    assignments: tuple[str, ...],
    release_user: str | None,
) -> None:
    now = utc_now()
    if release_user is not None:
        gone = queue.release(store, exam_id, _reviewer(store, exam_id, release_user), now, by=by)
        click.echo(f"{release_user} gave back {gone} students", err=True)
    for item in assignments:
        name, _, numbers = item.partition("=")
        wanted = [n.strip() for n in numbers.split(",") if n.strip()]
        if not name.strip() or not wanted:
            raise queue.QueueRefused(f"--assign {item!r}: write USER=NUMBER,NUMBER (e.g. rita=s0001,s0002)")
        taken = queue.assign(store, exam_id, wanted, _reviewer(store, exam_id, name.strip()), now, by=by)
        click.echo(f"{name.strip()} holds {', '.join(taken)}", err=True)
    if split_among is not None:
        names = list(dict.fromkeys(n.strip() for n in split_among.split(",") if n.strip()))
        reviewers = {name: _reviewer(store, exam_id, name) for name in names}
        shares = queue.split(store, exam_id, reviewers, by, now, reassign=reassign)
        for name, share in shares.items():
            click.echo(f"{name} takes {len(share)} students", err=True)


#: One pass at a time per store: a timer's pass that outlasts its interval is not doubled.
SCREEN_TEXT_LOCK = "screen-text.lock"


@click.command("screen-text")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVIGIL_DATA_DIR",
    required=True,
    help="The hall server's data directory.",
)
@click.option(
    "--exam", "exam_id", type=int, default=None, help="Only this exam [every exam that reads screen text]."
)
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="tesseract processes (cores)."
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Read at most this many screens per exam."
)
def screen_text_command(data_dir: Path, exam_id: int | None, jobs: int, limit: int | None) -> None:
    """Read the text on the screens that matter (tesseract, Dutch and English) of every exam that reads
    screen text (invigil-provision exam update --screen-text), at low priority, apart from ingest; run it
    from a timer during and after the exam. Each pass reads only what is new.

    Example: invigil-server screen-text --data-dir /var/lib/invigil --jobs 1
    """
    if not db.db_path(data_dir).exists():
        raise click.ClickException(f"no Invigil store in {data_dir}")
    # The appliance's ingest and live view come first. Under its unit the pass already has Nice=19 and a
    # system-call filter that refuses the change (docs/appliance.md).
    with contextlib.suppress(OSError):
        os.nice(10)
    lock = private_files.open_lock_file(data_dir / SCREEN_TEXT_LOCK)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        click.echo("another screen-text pass is running: this one does nothing")
        return
    try:
        _screen_text_pass(data_dir, exam_id, jobs, limit)
    finally:
        os.close(lock)  # closing the descriptor releases the lock


def _screen_text_pass(data_dir: Path, exam_id: int | None, jobs: int, limit: int | None) -> None:
    db.migrate(data_dir)
    store = db.connect(data_dir)
    try:
        wanted = [exam_id] if exam_id is not None else screentext.exams_to_read(store)
        screens = Screens.of_data_dir(data_dir)
        if not wanted:
            click.echo("no exam reads screen text: nothing to do")
        for one in wanted:
            if not expected.load(store, one).read_screen_text:
                raise click.ClickException(
                    f"exam {one} does not read screen text: invigil-provision exam update {one} --screen-text"
                )
            try:
                result = screentext.run(store, screens.exam(store, one), one, jobs=jobs, limit=limit)
            except screentext.ScreenTextUnavailable as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(
                f"exam {one}: read {result.read} of {result.selected} selected screens "
                f"in {result.seconds:.1f} s ({result.per_core_per_s:.2f} screens/s per core; "
                f"{result.unavailable} no longer stored)"
            )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
