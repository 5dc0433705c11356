"""``invigil-provision user ...``: staff accounts (the store's side is ``hall_server.store.users``)."""

from __future__ import annotations

import stat
from dataclasses import asdict
from pathlib import Path

import click

from hall_server.store import users
from provisioning import exams, halls
from provisioning.cli.context import Session, table
from provisioning.errors import Conflict

pass_session = click.make_pass_decorator(Session)


def _role(_ctx: click.Context, _param: click.Parameter, value: object) -> object:
    # "exam-board" as docs/architecture.md writes it, "exam_board" as the store does.
    if isinstance(value, tuple):
        return tuple(str(v).replace("-", "_") for v in value)
    return None if value is None else str(value).replace("-", "_")


role_choice = click.Choice([*users.ROLES, "exam-board"])
password_file_option = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the password from the first line of this file instead of prompting.",
)


def _password(session: Session, password_file: Path | None) -> str:
    """The new password: from a file, or typed twice without echo. Never a command-line argument."""
    if password_file is None:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    if password_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        session.note(f"warning: {password_file} is readable by others; delete it or chmod 600 it")
    lines = password_file.read_text(encoding="utf-8").splitlines()
    return lines[0] if lines else ""


@click.group()
def user() -> None:
    """Staff accounts for the dashboard: organisers, invigilators, reviewers, the exam board.

    \b
    Example:
      invigil-provision user list
    """


@user.command("create")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    type=role_choice,
    callback=_role,
    multiple=True,
    required=True,
    help="organiser, invigilator, reviewer or exam_board (repeatable).",
)
@click.option("--display-name", default="", help="The name the dashboard shows.")
@password_file_option
@pass_session
def user_create(
    session: Session, username: str, roles: tuple[str, ...], display_name: str, password_file: Path | None
) -> None:
    """Create USERNAME with roles; the password is prompted for (twice) or read from --password-file.

    \b
    Example:
      invigil-provision user create jdoe --role invigilator --display-name "J. Doe"
    """
    with session.store() as store:
        existing = {u["username"]: u for u in users.list_users(store)}.get(username)
        if existing is not None:
            same_roles = set(existing["roles"]) == set(roles)
            if same_roles and existing["display_name"] == display_name:
                session.note(
                    f"user {username!r} already exists with these roles; password unchanged "
                    "(change it with `invigil-provision user passwd`)"
                )
                session.emit({**existing, "created": False}, f"user {username} exists")
                return
            raise Conflict(
                f"user {username!r} exists with roles {', '.join(existing['roles'])} and display name "
                f"{existing['display_name']!r}; add tasks with `invigil-provision user assign`"
            )
        users.check_username(username)  # before the prompt: no typing a password for a refused name
        users.check_display_name(display_name)
        user_id = users.create_user(
            store, username, _password(session, password_file), list(roles), display_name
        )
    session.emit(
        {
            "id": user_id,
            "username": username,
            "roles": list(dict.fromkeys(roles)),
            "display_name": display_name,
            "created": True,
        },
        f"created user {username} ({', '.join(dict.fromkeys(roles))})",
    )


@user.command("assign")
@click.argument("username")
@click.option(
    "--role", type=role_choice, callback=_role, required=True, help="The task on that hall or exam."
)
@click.option("--hall", "hall_name", help="Assign to every exam in this hall.")
@click.option("--exam", "exam_id", type=int, help="Assign to this exam only.")
@click.option(
    "--from",
    "valid_from",
    help="ISO 8601 with offset: the assignment starts then [a hall's invigilator or organiser: now].",
)
@click.option("--until", "valid_until", help="ISO 8601 with offset: the assignment ends then.")
@pass_session
def user_assign(
    session: Session,
    username: str,
    role: str,
    hall_name: str | None,
    exam_id: int | None,
    valid_from: str | None,
    valid_until: str | None,
) -> None:
    """Give USERNAME a task (role) on a hall or an exam; they see only what they are assigned to, and only
    while the task lasts: an invigilator's exam from its enrolment window to some hours after its end, a
    reviewer's until the end of its review period, a hall-level task only for exams inside --from/--until.

    \b
    Example:
      invigil-provision user assign asmith --role reviewer --exam 3
      invigil-provision user assign bvos --role invigilator --hall "Hall A" --until 2027-02-01T00:00Z
    """
    if (hall_name is None) == (exam_id is None):
        raise click.UsageError("give exactly one of --hall NAME or --exam ID")
    with session.store() as store:
        hall_id = halls.get_hall(store, hall_name)["id"] if hall_name else None
        if exam_id is not None:
            exams.get_exam(store, exam_id)
        added = users.assign(
            store,
            username,
            role,
            hall_id=hall_id,
            exam_id=exam_id,
            valid_from=exams.parse_time(valid_from, "--from") if valid_from else None,
            valid_until=exams.parse_time(valid_until, "--until") if valid_until else None,
        )
    target = f"hall {hall_name!r}" if hall_name else f"exam {exam_id}"
    message = f"{username} is {role} for {target}" + ("" if added else " (already; nothing changed)")
    session.emit(
        {"username": username, "role": role, "hall": hall_name, "exam_id": exam_id, "added": added}, message
    )


@user.command("passwd")
@click.argument("username")
@password_file_option
@pass_session
def user_passwd(session: Session, username: str, password_file: Path | None) -> None:
    """Set USERNAME's password (prompted twice, or from --password-file).

    \b
    Example:
      invigil-provision user passwd jdoe
    """
    with session.store() as store:
        users.user_id(store, username)  # before the prompt: no typing a password for a typo
        ended = users.set_password(store, username, _password(session, password_file))
    session.emit(
        {"username": username, "password_changed": True, "logins_ended": ended},
        f"password of {username} changed; {ended} open login(s) ended",
    )


@user.command("disable")
@click.argument("username")
@pass_session
def user_disable(session: Session, username: str) -> None:
    """Disable USERNAME: every open login ends at once (pages within seconds, live-view connections are
    closed); the account and its tasks stay for `user enable`.

    \b
    Example:
      invigil-provision user disable jdoe
    """
    with session.store() as store:
        ended = users.set_disabled(store, username, True)
    session.emit(
        {"username": username, "disabled": True, "logins_ended": ended},
        f"{username} disabled; {ended} open login(s) ended",
    )


@user.command("enable")
@click.argument("username")
@pass_session
def user_enable(session: Session, username: str) -> None:
    """Enable USERNAME again (they log in anew: ended logins stay ended).

    \b
    Example:
      invigil-provision user enable jdoe
    """
    with session.store() as store:
        users.set_disabled(store, username, False)
    session.emit({"username": username, "disabled": False}, f"{username} enabled")


@user.command("remove")
@click.argument("username")
@pass_session
def user_remove(session: Session, username: str) -> None:
    """Remove USERNAME: logins end, roles and assignments go. The name stays in the audit log and on the
    findings they recorded (the account is kept, disabled and marked removed, and cannot be enabled).

    \b
    Example:
      invigil-provision user remove jdoe
    """
    with session.store() as store:
        ended = users.remove_user(store, username)
    session.emit(
        {"username": username, "removed": True, "logins_ended": ended},
        f"{username} removed; {ended} open login(s) ended",
    )


@user.command("list")
@pass_session
def user_list(session: Session) -> None:
    """List users with their roles and assignments (never password hashes).

    \b
    Example:
      invigil-provision --json user list
    """
    with session.store() as store:
        records = users.list_users(store)
    rows = [
        {
            **r,
            "roles": ",".join(r["roles"]),
            "assignments": len(r["assignments"]),
            "disabled": "removed" if r["removed"] else "yes" if r["disabled"] else "",
        }
        for r in records
    ]
    session.emit(records, table(rows, ["username", "display_name", "roles", "assignments", "disabled"]))


@click.group()
def assignment() -> None:
    """Who holds which task on which hall or exam, and taking a task away.

    \b
    Example:
      invigil-provision assignment list --exam 3
    """


@assignment.command("list")
@click.option("--user", "username", help="Only this user's.")
@click.option("--exam", "exam_id", type=int, help="Only those that open this exam (directly or by its hall).")
@pass_session
def assignment_list(session: Session, username: str | None, exam_id: int | None) -> None:
    """List assignments with their time bounds.

    \b
    Example:
      invigil-provision --json assignment list --user jdoe
    """
    with session.store() as store:
        hall_of_exam = exams.get_exam(store, exam_id)["hall_id"] if exam_id is not None else None
        names = [username] if username else [u["username"] for u in users.list_users(store)]
        hall_names = {row["id"]: row["name"] for row in halls.list_halls(store)}
        records = [
            {"username": name, **asdict(a), "hall": hall_names.get(a.hall_id) if a.hall_id else None}
            for name in names
            for a in users.assignments_for(store, name)
            if exam_id is None or a.exam_id == exam_id or (a.exam_id is None and a.hall_id == hall_of_exam)
        ]
    rows = [
        {**r, "valid_from": r["valid_from"] or "", "valid_until": r["valid_until"] or ""} for r in records
    ]
    columns = ["username", "role", "hall", "exam_id", "valid_from", "valid_until"]
    session.emit(records, table(rows, columns))


@assignment.command("remove")
@click.argument("username")
@click.option("--role", type=role_choice, callback=_role, required=True, help="The task to take away.")
@click.option("--hall", "hall_name", help="The hall-level assignment.")
@click.option("--exam", "exam_id", type=int, help="The exam's assignment.")
@pass_session
def assignment_remove(
    session: Session, username: str, role: str, hall_name: str | None, exam_id: int | None
) -> None:
    """Take USERNAME's task on a hall or an exam away; their pages and live-view connections for it close
    within seconds.

    \b
    Example:
      invigil-provision assignment remove asmith --role invigilator --exam 3
    """
    if (hall_name is None) == (exam_id is None):
        raise click.UsageError("give exactly one of --hall NAME or --exam ID")
    with session.store() as store:
        hall_id = halls.get_hall(store, hall_name)["id"] if hall_name else None
        removed = users.remove_assignment(store, username, role, hall_id=hall_id, exam_id=exam_id)
    target = f"hall {hall_name!r}" if hall_name else f"exam {exam_id}"
    if not removed:
        raise Conflict(f"{username} is not {role} for {target}; see `invigil-provision assignment list`")
    session.emit(
        {"username": username, "role": role, "hall": hall_name, "exam_id": exam_id, "removed": True},
        f"{username} is no longer {role} for {target}",
    )
