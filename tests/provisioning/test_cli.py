"""``invigil-provision`` end to end through click's runner on a temporary data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hall_server.store import db, users
from provisioning.cli import main

START, END = "2026-06-12T09:00+02:00", "2026-06-12T12:00+02:00"
PASSWORD = "correct horse battery"  # noqa: S105


class Provision:
    """Runs the CLI against one data directory, like an organiser's shell with INVIGIL_DATA_DIR set."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data_dir = tmp_path / "data"

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> Result:
        result = CliRunner().invoke(
            main,
            list(args),
            input=input,
            env={"INVIGIL_DATA_DIR": str(self.data_dir)},
            catch_exceptions=False,
        )
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    def json(self, *args: str, input: str | None = None) -> object:
        return json.loads(self("--json", *args, input=input).stdout)

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def count(self, table: str) -> int:
        db.migrate(self.data_dir)  # a refused first command may leave no store at all
        store = db.connect(self.data_dir)
        try:
            return int(store.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            store.close()

    def counts(self) -> dict[str, int]:
        return {
            t: self.count(t)
            for t in ("hall", "exam", "exam_key", "roster", "user", "user_role", "assignment")
        }


@pytest.fixture
def run(tmp_path: Path) -> Provision:
    return Provision(tmp_path)


@pytest.fixture
def hall(run: Provision) -> str:
    seats = run.file("seats.csv", "seat,row,col\nA1,1,1\nA2,1,2\nB1,2,1\nB2,2,2\n")
    run("hall", "create", "Hall A", "--interface", "eth1", "--seat-map", seats)
    return "Hall A"


@pytest.fixture
def exam_id(run: Provision, hall: str) -> int:
    policy = run.file("exam.policy", "allow exam.example.nl\nallow docs.python.org/3/\n")
    exam = run.json(
        "exam",
        "create",
        "--hall",
        hall,
        "--title",
        "Linear Algebra",
        "--start",
        START,
        "--end",
        END,
        "--policy",
        policy,
    )
    return int(exam["id"])  # type: ignore[index]


def password_file(run: Provision, password: str = PASSWORD) -> str:
    path = run.tmp / "pw"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return str(path)


# --- every command documents an example ---


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=lambda p: " ".join(p) or "main")
def test_every_command_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "invigil-provision" in result.output.split("Example:", 1)[1]


def test_without_a_data_dir_the_error_says_where_to_give_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["hall", "list"], env={"INVIGIL_DATA_DIR": None})
    assert result.exit_code == 2
    assert "--data-dir" in result.output and "INVIGIL_DATA_DIR" in result.output


# --- halls ---


def test_hall_round_trip_and_idempotency(run: Provision, hall: str) -> None:
    halls = run.json("hall", "list")
    assert [(h["name"], h["interface"], h["seats"]) for h in halls] == [("Hall A", "eth1", 4)]  # type: ignore
    seats = str(run.tmp / "seats.csv")
    again = run("--json", "hall", "create", "Hall A", "--interface", "eth1", "--seat-map", seats)
    assert json.loads(again.stdout)["created"] is False
    assert "nothing changed" in again.stderr
    assert run.count("hall") == 1

    conflict = run("hall", "create", "Hall A", "--interface", "eth2", "--seat-map", seats, ok=False)
    assert "interface 'eth1' (you gave 'eth2')" in conflict.stderr
    assert "hall update" in conflict.stderr

    run("hall", "update", "Hall A", "--interface", "eth2")
    assert run.json("hall", "list")[0]["interface"] == "eth2"  # type: ignore[index]


def test_bad_seat_map_names_each_line_and_creates_nothing(run: Provision) -> None:
    seats = run.file("bad-seats.csv", "seat,row,col\nA1,1,1\nA1,1,2\nB1,x,1\nB2,1,1\nB3,2\n")
    result = run("hall", "create", "Hall B", "--seat-map", seats, ok=False)
    for line in (":3:", ":4:", ":5:", ":6:"):
        assert line in result.stderr
    assert "already on line 2" in result.stderr
    assert "row 'x'" in result.stderr
    assert "row 1, col 1 is already seat on line 2" in result.stderr
    assert run.count("hall") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("seat,row\nA1,1\n", "missing column(s) col"),
        ("seat,row,col,colour\nA1,1,1,red\n", "unknown column(s) 'colour'"),
        ("seat,row,col\n", "no seats"),
    ],
)
def test_seat_map_header_problems(run: Provision, text: str, message: str) -> None:
    result = run("hall", "create", "Hall C", "--seat-map", run.file("s.csv", text), ok=False)
    assert ":1:" in result.stderr and message in result.stderr


# --- exams ---


def test_exam_create_show_list_update(run: Provision, exam_id: int) -> None:
    shown = run.json("exam", "show", str(exam_id))
    assert shown["title"] == "Linear Algebra"  # type: ignore[index]
    assert shown["starts_at"] == "2026-06-12T07:00:00.000Z"  # type: ignore[index]
    assert "docs.python.org/3/" in shown["policy_text"]  # type: ignore[index]
    assert run.count("exam_key") == 1
    assert [e["id"] for e in run.json("exam", "list", "--hall", "Hall A")] == [exam_id]  # type: ignore

    updated = run.json("exam", "update", str(exam_id), "--end", "2026-06-12T12:30+02:00", "--interval", "10")
    assert sorted(updated["changed"]) == ["capture_interval_s", "ends_at"]  # type: ignore[index]
    assert updated["ends_at"] == "2026-06-12T10:30:00.000Z"  # type: ignore[index]
    assert updated["title"] == "Linear Algebra"  # type: ignore[index]
    human = run("exam", "show", str(exam_id)).stdout
    assert "every 10 s" in human and "allow exam.example.nl" in human


def test_exam_create_again_is_a_no_op_and_different_attributes_conflict(run: Provision, exam_id: int) -> None:
    policy = str(run.tmp / "exam.policy")
    args = ["exam", "create", "--hall", "Hall A", "--title", "Linear Algebra", "--start", START, "--end", END]
    again = run("--json", *args, "--policy", policy)
    assert json.loads(again.stdout)["id"] == exam_id
    assert json.loads(again.stdout)["created"] is False
    conflict = run(*args, "--policy", policy, "--interval", "7", ok=False)
    assert "capture_interval_s" in conflict.stderr and f"exam update {exam_id}" in conflict.stderr
    assert run.count("exam") == 1


def test_bad_policy_names_its_lines_and_changes_nothing(run: Provision, exam_id: int) -> None:
    policy = run.file("bad.policy", "allow exam.example.nl\npermit everything\n\nallow exam.example.nl\n")
    before = run.counts()
    created = run(
        "exam",
        "create",
        "--hall",
        "Hall A",
        "--title",
        "Other",
        "--start",
        START,
        "--end",
        END,
        "--policy",
        policy,
        ok=False,
    )
    assert "bad.policy:2:" in created.stderr and "bad.policy:4:" in created.stderr
    assert "duplicate of line 1" in created.stderr
    updated = run("--json", "exam", "update", str(exam_id), "--policy", policy, ok=False)
    error = json.loads(updated.stdout)["error"]
    assert error["code"] == "bad_lines"
    assert [entry["line"] for entry in error["lines"]] == [2, 4]
    assert run.counts() == before
    assert "docs.python.org" in run.json("exam", "show", str(exam_id))["policy_text"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", "2026-06-12 09:00"], "UTC offset"),
        (["--end", "2026-06-12T08:00+02:00"], "end after it starts"),
        (["--interval", "0"], "between 1 and 600"),
        (["--retention-days", "0"], "--retention-days"),
        (["--invigilator", "nobody"], "no user 'nobody'"),
    ],
)
def test_exam_create_refuses_bad_values(run: Provision, hall: str, extra: list[str], message: str) -> None:
    options = {"--start": START, "--end": END}
    for flag in ("--start", "--end"):
        if flag in extra:
            options[flag] = extra[extra.index(flag) + 1]
    rest = [a for i, a in enumerate(extra) if a not in options and (i == 0 or extra[i - 1] not in options)]
    result = run(
        "exam",
        "create",
        "--hall",
        hall,
        "--title",
        "T",
        "--start",
        options["--start"],
        "--end",
        options["--end"],
        *rest,
        ok=False,
    )
    assert message in result.stderr
    assert run.count("exam") == 0


def test_unknown_hall_and_exam_say_where_to_look(run: Provision, hall: str) -> None:
    result = run(
        "exam", "create", "--hall", "Hall Z", "--title", "T", "--start", START, "--end", END, ok=False
    )
    assert "no hall 'Hall Z'" in result.stderr and "Hall A" in result.stderr
    assert "exam list" in run("exam", "show", "99", ok=False).stderr


# --- rosters ---


def test_roster_import_and_list(run: Provision, exam_id: int) -> None:
    csv_file = run.file("students.csv", "student_number,name,extra_time_min,seat\ns1,Ann,,A1\ns2,Bob,15,A2\n")
    assert run.json("roster", "import", str(exam_id), csv_file)["imported"] == 2  # type: ignore[index]
    listed = run.json("roster", "list", str(exam_id))
    assert listed == [
        {"student_number": "s1", "name": "Ann", "extra_time_min": 0, "seat": "A1"},
        {"student_number": "s2", "name": "Bob", "extra_time_min": 15, "seat": "A2"},
    ]
    # Importing again updates in place; a student may move into a seat another one in the file leaves.
    moved = run.file("moved.csv", "student_number,name,seat\ns1,Ann,A2\ns2,Bob,A1\n")
    run("roster", "import", str(exam_id), moved)
    assert {r["student_number"]: r["seat"] for r in run.json("roster", "list", str(exam_id))} == {  # type: ignore
        "s1": "A2",
        "s2": "A1",
    }


def test_bad_roster_reports_every_line_and_imports_nothing(run: Provision, exam_id: int) -> None:
    run("roster", "import", str(exam_id), run.file("one.csv", "student_number,name,seat\ns9,Zoe,B2\n"))
    text = (
        "student_number,name,extra_time_min,seat\n"
        "s1,Ann,0,A1\n"  # 2: fine
        "s1,Ann Again,0,A2\n"  # 3: duplicate
        ",Nobody,0,\n"  # 4: empty number
        "s3,Carl,ten,\n"  # 5: extra time not an integer
        "s4,Dee,0,Z9\n"  # 6: not on the seat map
        "\n"  # 7: blank lines are skipped
        "s5,Eve,0,B2\n"  # 8: seat of s9 on the stored roster
        "s6,Fay\n"  # 9: too few fields
        "s7,Gus,5,A1\n"  # 10: seat given on line 2
    )
    before = run.counts()
    result = run("roster", "import", str(exam_id), run.file("bad.csv", text), ok=False)
    expected = {
        3: "already on line 2",
        4: "empty student_number",
        5: "extra_time_min 'ten'",
        6: "not on the hall's seat map",
        8: "already taken by s9",
        9: "2 field(s)",
        10: "already given on line 2",
    }
    for line, message in expected.items():
        assert f"bad.csv:{line}: " in result.stderr and message in result.stderr
    assert "bad.csv:2:" not in result.stderr
    assert "nothing was changed" in result.stderr
    assert run.counts() == before
    as_json = json.loads(
        run("--json", "roster", "import", str(exam_id), str(run.tmp / "bad.csv"), ok=False).stdout
    )
    assert [entry["line"] for entry in as_json["error"]["lines"]] == sorted(expected)


def test_roster_header_is_required(run: Provision, exam_id: int) -> None:
    result = run("roster", "import", str(exam_id), run.file("r.csv", "s1,Ann\ns2,Bob\n"), ok=False)
    assert "r.csv:1: header" in result.stderr and "student_number,name" in result.stderr
    assert run.count("roster") == 0


def test_roster_file_that_is_not_utf8_is_refused(run: Provision, exam_id: int) -> None:
    path = run.tmp / "latin1.csv"
    path.write_bytes("student_number,name\ns1,Jos\xe9\n".encode("latin-1"))
    assert "not UTF-8" in run("roster", "import", str(exam_id), str(path), ok=False).stderr


# --- users ---


def test_user_create_prompts_twice_and_never_echoes_the_password(run: Provision, exam_id: int) -> None:
    result = run(
        "user",
        "create",
        "jdoe",
        "--role",
        "invigilator",
        "--display-name",
        "J. Doe",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert PASSWORD not in result.output
    assert "Password" in result.output and "Repeat" in result.output
    store = db.connect(run.data_dir)
    try:
        assert users.verify_password(store, "jdoe", PASSWORD) is not None
        assert users.verify_password(store, "jdoe", "wrong password!") is None
        stored = store.execute("SELECT password_hash FROM user").fetchone()[0]
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
    finally:
        store.close()
    assert PASSWORD not in run("--json", "user", "list").stdout
    assert "$argon2" not in run("--json", "user", "list").stdout


def test_user_create_refuses_mismatched_or_short_passwords(run: Provision) -> None:
    mismatch = run(
        "user", "create", "jdoe", "--role", "reviewer", input=f"{PASSWORD}\nsomething else\n", ok=False
    )
    assert PASSWORD not in mismatch.output
    short = run(
        "user",
        "create",
        "jdoe",
        "--role",
        "reviewer",
        "--password-file",
        password_file(run, "short"),
        ok=False,
    )
    assert "at least 10 characters" in short.stderr
    assert run.count("user") == 0


def test_user_round_trip_assign_and_passwd(run: Provision, exam_id: int) -> None:
    pw = password_file(run)
    run("user", "create", "asmith", "--role", "reviewer", "--role", "exam-board", "--password-file", pw)
    again = run(
        "user", "create", "asmith", "--role", "exam_board", "--role", "reviewer", "--password-file", pw
    )
    assert "nothing" not in again.stdout and "password unchanged" in again.stderr
    conflict = run("user", "create", "asmith", "--role", "organiser", "--password-file", pw, ok=False)
    assert "exists with roles reviewer, exam_board" in conflict.stderr

    assert run.json("user", "assign", "asmith", "--role", "reviewer", "--exam", str(exam_id))["added"]  # type: ignore
    assert not run.json("user", "assign", "asmith", "--role", "reviewer", "--exam", str(exam_id))["added"]  # type: ignore
    run("user", "assign", "asmith", "--role", "invigilator", "--hall", "Hall A")
    assert "exactly one" in run("user", "assign", "asmith", "--role", "reviewer", ok=False).output
    listed = run.json("user", "list")
    assert listed[0]["roles"] == ["invigilator", "reviewer", "exam_board"]  # type: ignore[index]
    assert len(listed[0]["assignments"]) == 2  # type: ignore[index]
    assert run.json("exam", "show", str(exam_id))["staff"] == [  # type: ignore[index]
        {"username": "asmith", "role": "reviewer"}
    ]

    new_password = "another long passphrase"
    result = run("user", "passwd", "asmith", input=f"{new_password}\n{new_password}\n")
    assert new_password not in result.output
    store = db.connect(run.data_dir)
    try:
        assert users.verify_password(store, "asmith", new_password) is not None
        assert users.verify_password(store, "asmith", PASSWORD) is None
    finally:
        store.close()
    assert "no user 'ghost'" in run("user", "passwd", "ghost", ok=False).stderr


def test_exam_create_assigns_staff(run: Provision, hall: str) -> None:
    run("user", "create", "jdoe", "--role", "invigilator", "--password-file", password_file(run))
    exam = run.json(
        "exam",
        "create",
        "--hall",
        hall,
        "--title",
        "T",
        "--start",
        START,
        "--end",
        END,
        "--invigilator",
        "jdoe",
        "--reviewer",
        "jdoe",
    )
    assert exam["staff"] == [  # type: ignore[index]
        {"username": "jdoe", "role": "invigilator"},
        {"username": "jdoe", "role": "reviewer"},
    ]


# --- join codes ---


def test_joincode_show_and_rotate(run: Provision, exam_id: int) -> None:
    old = run.json("joincode", "show", str(exam_id))["join_code"]  # type: ignore[index]
    assert run("joincode", "show", str(exam_id)).stdout.strip() == old
    new = run.json("joincode", "rotate", str(exam_id))["join_code"]  # type: ignore[index]
    assert new != old and len(new) == 8
    assert run.json("exam", "show", str(exam_id))["join_code"] == new  # type: ignore[index]


def test_root_is_told_to_provision_as_the_data_dirs_owner(run: Provision, hall: str) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("only root is refused")
    os.chown(run.data_dir, 4242, 4242)
    result = run("hall", "list", ok=False)
    assert "sudo -u invigil invigil-provision" in result.stderr
