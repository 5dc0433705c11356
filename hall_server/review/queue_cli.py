"""``invigil-server review-queue EXAM``: the exam's review queue from the appliance's shell, as text or JSON
(for scripts and checks). Thin: parse, build, echo; the listing is audited like a reviewer's view."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from hall_server.review import queue
from hall_server.store import audit, db, users


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
def review_queue_command(
    data_dir: Path, exam_id: int, as_json: bool, open_only: bool, by_username: str | None
) -> None:
    """Print EXAM's review queue: the moments worth a look across all students, ordered by kind and time,
    each with student number, start, end, kinds and the capture ids that show it. Signals, never verdicts.

    Example: invigil-server review-queue 3 --data-dir /var/lib/invigil --json --by rita
    """
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
    for item in moments:
        m = item.moment
        click.echo(
            f"{item.student_number:<12} {m.start:%H:%M:%S}-{m.end:%H:%M:%S} {','.join(m.kinds):<32} "
            f"{item.state:<12} {' '.join(m.capture_ids)}"
        )
