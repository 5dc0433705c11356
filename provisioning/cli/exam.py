"""``invigil-provision exam|roster|joincode ...``: exams, their rosters and their join codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hall_server.review import expected
from provisioning import exams, examsheet
from provisioning.cli.context import Session, read_text, table
from provisioning.examsheet import EXAM_COLUMNS
from provisioning.roster import ROSTER_COLUMNS
from provisioning.tablefile import read_file, read_table_file

pass_session = click.make_pass_decorator(Session)
policy_file = click.Path(dir_okay=False, exists=True, path_type=Path)


def _staff(invigilators: tuple[str, ...], reviewers: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, "invigilator") for name in invigilators] + [(name, "reviewer") for name in reviewers]


def _policy(path: Path | None) -> str | None:
    if path is None:
        return None
    return exams.check_policy(read_text(path, "policy"), str(path))


def _describe(exam: dict[str, Any]) -> list[str]:
    staff = ", ".join(f"{s['username']} ({s['role']})" for s in exam["staff"]) or "none assigned"
    rules = [line for line in exam["policy_text"].splitlines() if line.split("#", 1)[0].strip()]
    return [
        f"exam {exam['id']}: {exam['title']} in {exam['hall']!r}",
        f"  window       {exam['starts_at']} .. {exam['ends_at']}",
        f"  capture      every {exam['capture_interval_s']} s",
        f"  retention    {exam['retention_days']} days after the end",
        f"  policy       {len(rules)} rule(s); interception {'on' if exam['interception'] else 'off'}",
        f"  join code    {exam['join_code']}",
        f"  roster       {exam['roster']} student(s)",
        f"  staff        {staff}",
        *_describe_expected(exam["expected"]),
    ]


def _describe_expected(state: dict[str, list[str]]) -> list[str]:
    if not (state["platform_apps"] or state["allowed_apps"]):
        return ["  on screen    not declared (no off-exam focus signal; see --platform-app, --allow-app)"]
    return [
        f"  platform     {', '.join(state['platform_apps']) or '-'}"
        f" (titles: {', '.join(state['platform_titles']) or 'any'};"
        f" hosts: {', '.join(state['platform_hosts']) or 'any'})",
        f"  allowed apps {', '.join(state['allowed_apps']) or 'none'}",
        f"  screen text  {'read' if state['read_screen_text'] else 'not read'};"
        f" watch words: {', '.join(state['watch_words']) or 'none'}",
    ]


def _expected_changes(options: dict[str, Any]) -> dict[str, Any]:
    """The expected-state lists given on the command line (each given list replaces the stored one)."""
    changes: dict[str, Any] = {name: list(options[name]) for name in expected.OPTIONS if options[name]}
    if options["screen_text"] is not None:
        changes["read_screen_text"] = options["screen_text"]
    return changes


def exam_options(required: bool) -> Any:
    """The options ``exam create`` and ``exam update`` share; required only when creating."""

    def decorate(command: Any) -> Any:
        for option in reversed(
            [
                click.option("--title", required=required, help="The exam's name as staff see it."),
                click.option(
                    "--start", required=required, help="ISO 8601 with offset: 2026-06-12T09:00+02:00"
                ),
                click.option("--end", required=required, help="ISO 8601 with offset (before extra time)."),
                click.option(
                    "--interval",
                    type=int,
                    default=exams.DEFAULT_INTERVAL_S if required else None,
                    show_default=required,
                    help="Seconds between screen captures (1-600).",
                ),
                click.option(
                    "--retention-days",
                    type=int,
                    default=exams.DEFAULT_RETENTION_DAYS if required else None,
                    show_default=required,
                    help="Days after the end before everything is deleted.",
                ),
                click.option("--policy", type=policy_file, help="Network policy file (docs/policy.md)."),
                click.option(
                    "--interception/--no-interception",
                    default=False if required else None,
                    help="URL-level rules (only where the hall CA is trusted on laptops).",
                ),
                click.option(
                    "--platform-app",
                    "platform_apps",
                    multiple=True,
                    metavar="APP",
                    help="The browser the exam platform runs in, e.g. firefox or 'chrome*' (repeatable).",
                ),
                click.option(
                    "--platform-title",
                    "platform_titles",
                    multiple=True,
                    metavar="TEXT",
                    help="Part of the exam platform's window title (repeatable); other pages are flagged.",
                ),
                click.option(
                    "--platform-host",
                    "platform_hosts",
                    multiple=True,
                    metavar="HOST",
                    help="The exam platform's host (repeatable); other allowed hosts are new sites.",
                ),
                click.option(
                    "--allow-app",
                    "allowed_apps",
                    multiple=True,
                    metavar="APP",
                    help="An application the exam allows in focus, e.g. 'libreoffice*' (repeatable).",
                ),
                click.option(
                    "--watch-word",
                    "watch_words",
                    multiple=True,
                    metavar="WORD",
                    help="Screen text that raises a signal, e.g. chatgpt (repeatable; with --screen-text).",
                ),
                click.option(
                    "--screen-text/--no-screen-text",
                    "screen_text",
                    default=None,
                    help="Read the text on the screens that matter (tesseract) to search it.",
                ),
                click.option(
                    "--invigilator",
                    "invigilators",
                    multiple=True,
                    metavar="USER",
                    help="Assign this user as invigilator (repeatable).",
                ),
                click.option(
                    "--reviewer",
                    "reviewers",
                    multiple=True,
                    metavar="USER",
                    help="Assign this user as reviewer (repeatable).",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


@click.group()
def exam() -> None:
    """Exams: window, capture interval, network policy, retention and staff.

    \b
    Example:
      invigil-provision exam list --hall "Hall A"
    """


@exam.command("create")
@click.option("--hall", "hall_name", required=True, help="The hall (see `hall list`).")
@exam_options(required=True)
@pass_session
def exam_create(session: Session, hall_name: str, **options: Any) -> None:
    """Create an exam in a hall, with its own encryption key and join code.

    Running it again for the same hall, title and start changes nothing (and assigns any new staff).

    \b
    Example:
      invigil-provision exam create --hall "Hall A" --title "Linear Algebra" \\
        --start 2026-06-12T09:00+02:00 --end 2026-06-12T12:00+02:00 \\
        --policy linalg.policy --invigilator jdoe --reviewer asmith
    """
    fields = {
        "title": options["title"],
        "starts_at": exams.parse_time(options["start"], "--start"),
        "ends_at": exams.parse_time(options["end"], "--end"),
        "capture_interval_s": options["interval"],
        "retention_days": options["retention_days"],
        "policy_text": _policy(options["policy"]) or "",
        "interception": options["interception"],
    }
    staff = _staff(options["invigilators"], options["reviewers"])
    with session.store() as store:
        record, created = exams.ensure_exam(
            store, session.master_key(), hall=hall_name, fields=fields, staff=staff
        )
        if _expected_changes(options):
            record = exams.set_expected(store, record["id"], _expected_changes(options))
    if not created:
        session.note(f"exam {record['id']} already exists with these attributes; nothing changed")
    elif not fields["policy_text"]:
        session.note("note: no --policy given, so every website is blocked during this exam")
    session.emit({**record, "created": created}, _describe(record))


@exam.command("import")
@click.argument("exams_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--sheet", metavar="NAME", help="The workbook's sheet to read (default: the first).")
@pass_session
def exam_import(session: Session, exams_file: Path, sheet: str | None) -> None:
    """Create the exams of a session from FILE, a CSV file or an Excel workbook (.xlsx), one exam a row.

    Row 1 names the columns title,hall,start,end[,policy][,invigilators][,reviewers][,interval]
    [,retention_days]. Times are ISO 8601 with an offset, written as text; a policy is a file name relative
    to FILE's folder; staff are usernames separated by commas or semicolons. Every row gets the checks of
    `exam create` first; one bad row and no exam is created. A row for an exam that exists with the same
    hall, title and start changes nothing (and assigns any new staff).

    \b
    Example:
      invigil-provision exam import june-session.xlsx
      invigil-provision --json exam import june-session.xlsx --sheet "Week 1" > created.json
    """
    given = read_table_file(
        read_file(exams_file, "exam list"), str(exams_file), "exam list", *EXAM_COLUMNS, sheet=sheet
    )
    with session.store() as store:
        records = examsheet.import_exams(store, session.master_key(), given, exams_file.resolve().parent)
    created = sum(record["created"] for record in records)
    for record in records:
        if record["created"] and not record["policy_text"]:
            session.note(f"note: row {record['row']} names no policy, so every website is blocked in it")
    session.note(f"{created} exam(s) created, {len(records) - created} unchanged")
    rows = [{**record, "status": "created" if record["created"] else "unchanged"} for record in records]
    session.emit(
        records,
        table(rows, ["row", "id", "hall", "title", "starts_at", "ends_at", "status", "join_code"]),
    )


@exam.command("update")
@click.argument("exam_id", type=int)
@exam_options(required=False)
@click.option("--clear-policy", is_flag=True, help="Remove the policy (then every website is blocked).")
@click.option("--clear-allowed-apps", is_flag=True, help="Allow no application besides the exam platform.")
@pass_session
def exam_update(
    session: Session, exam_id: int, clear_policy: bool, clear_allowed_apps: bool, **options: Any
) -> None:
    """Change EXAM_ID's attributes or add staff; options not given stay as they are. A list given
    (--platform-app, --platform-title, --platform-host, --allow-app) replaces the stored one.

    \b
    Example:
      invigil-provision exam update 3 --end 2026-06-12T12:30+02:00 --policy linalg-v2.policy
      invigil-provision exam update 3 --platform-app firefox --platform-title "Ans" \\
        --platform-host ans.app --allow-app 'libreoffice*' --allow-app rstudio
    """
    if clear_allowed_apps and options["allowed_apps"]:
        raise click.UsageError("give --allow-app or --clear-allowed-apps, not both")
    if clear_policy and options["policy"]:
        raise click.UsageError("give --policy or --clear-policy, not both")
    changes: dict[str, Any] = {}
    for option, field in (
        ("title", "title"),
        ("interval", "capture_interval_s"),
        ("retention_days", "retention_days"),
        ("interception", "interception"),
    ):
        if options[option] is not None:
            changes[field] = options[option]
    for option, field in (("start", "starts_at"), ("end", "ends_at")):
        if options[option] is not None:
            changes[field] = exams.parse_time(options[option], f"--{option}")
    policy = "" if clear_policy else _policy(options["policy"])
    if policy is not None:
        changes["policy_text"] = policy
    staff = _staff(options["invigilators"], options["reviewers"])
    on_screen = _expected_changes(options) | ({"allowed_apps": []} if clear_allowed_apps else {})
    if not changes and not staff and not on_screen:
        raise click.UsageError("nothing to change: see `invigil-provision exam update --help`")
    with session.store() as store:
        record, changed = exams.update_exam(store, exam_id, changes, staff)
        if on_screen:
            before = record["expected"]
            record = exams.set_expected(store, exam_id, on_screen)
            changed = [*changed, *(name for name in on_screen if record["expected"][name] != before[name])]
    session.note(f"changed: {', '.join(changed)}" if changed else "no attribute changed")
    session.emit({**record, "changed": changed}, _describe(record))


@exam.command("list")
@click.option("--hall", "hall_name", help="Only this hall's exams.")
@pass_session
def exam_list(session: Session, hall_name: str | None) -> None:
    """List exams, earliest first.

    \b
    Example:
      invigil-provision exam list --hall "Hall A"
    """
    with session.store() as store:
        records = exams.list_exams(store, hall_name)
    session.emit(
        records, table(records, ["id", "hall", "title", "starts_at", "ends_at", "roster", "join_code"])
    )


@exam.command("show")
@click.argument("exam_id", type=int)
@pass_session
def exam_show(session: Session, exam_id: int) -> None:
    """Show everything about EXAM_ID, including its policy.

    \b
    Example:
      invigil-provision exam show 3
    """
    with session.store() as store:
        record = exams.get_exam(store, exam_id)
    policy = ["  policy text:", *("    " + line for line in record["policy_text"].splitlines())]
    session.emit(record, _describe(record) + (policy if record["policy_text"] else []))


@click.group()
def roster() -> None:
    """Who may sit an exam: student numbers, names, extra time, seats.

    \b
    Example:
      invigil-provision roster list 3
    """


@roster.command("import")
@click.argument("exam_id", type=int)
@click.argument("roster_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--sheet", metavar="NAME", help="The workbook's sheet to read (default: the first).")
@pass_session
def roster_import(session: Session, exam_id: int, roster_file: Path, sheet: str | None) -> None:
    """Add or update students from FILE, a CSV file or an Excel workbook (.xlsx), whose header (row 1)
    names the columns student_number,name[,extra_time_min][,seat] in any order.

    Every line is checked first; one bad line (or cell) and nothing is imported.

    \b
    Example:
      invigil-provision roster import 3 linalg-students.csv
      invigil-provision roster import 3 export.xlsx --sheet "Linear Algebra"
    """
    given = read_table_file(
        read_file(roster_file, "roster"), str(roster_file), "roster", *ROSTER_COLUMNS, sheet=sheet
    )
    with session.store() as store:
        count = exams.import_roster(store, exam_id, given)
        total = exams.get_exam(store, exam_id)["roster"]
    session.emit(
        {"exam_id": exam_id, "imported": count, "roster": total},
        f"imported {count} student(s) into exam {exam_id}; its roster now has {total}",
    )


@roster.command("list")
@click.argument("exam_id", type=int)
@pass_session
def roster_list(session: Session, exam_id: int) -> None:
    """List EXAM_ID's roster.

    \b
    Example:
      invigil-provision --json roster list 3 > roster.json
    """
    with session.store() as store:
        records = exams.list_roster(store, exam_id)
    session.emit(records, table(records, ["student_number", "name", "extra_time_min", "seat"]))


@click.group()
def joincode() -> None:
    """The code students type to enrol, shown on the projector at the start.

    \b
    Example:
      invigil-provision joincode show 3
    """


@joincode.command("show")
@click.argument("exam_id", type=int)
@pass_session
def joincode_show(session: Session, exam_id: int) -> None:
    """Print EXAM_ID's join code.

    \b
    Example:
      invigil-provision joincode show 3
    """
    with session.store() as store:
        record = exams.get_exam(store, exam_id)
    session.emit({"exam_id": exam_id, "join_code": record["join_code"]}, record["join_code"])


@joincode.command("rotate")
@click.argument("exam_id", type=int)
@pass_session
def joincode_rotate(session: Session, exam_id: int) -> None:
    """Replace EXAM_ID's join code (e.g. after it leaked); agents already enrolled keep their session.

    \b
    Example:
      invigil-provision joincode rotate 3
    """
    with session.store() as store:
        code = exams.rotate_join_code(store, exam_id)
    session.note("the old code no longer enrols anyone; show the new one in the hall")
    session.emit({"exam_id": exam_id, "join_code": code}, code)
