"""Organiser-entered text reaches files (the proxy's policy, reports, exports, CSV) and headers: a control
character in an exam title, hall name, student name, seat label, username or display name is refused by
name (and line, in a roster) through ``invigil-provision``, and by the store whoever calls it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hall_server.store import crypto, db, exams, users
from invigil.timeutil import utc_now
from provisioning.cli import main

START, END = "2026-06-12T09:00+02:00", "2026-06-12T12:00+02:00"
PASSWORD = "correct horse battery"  # noqa: S105
#: (text, what the message calls the character)
CONTROLS = [
    pytest.param("\n", "U+000A", id="line-feed"),
    pytest.param("\r", "U+000D", id="carriage-return"),
    pytest.param("\t", "U+0009", id="tab"),
    pytest.param("\x1b", "U+001B", id="escape"),
    pytest.param("\x85", "U+0085", id="next-line"),
    pytest.param("\u2028", "U+2028", id="line-separator"),
    pytest.param("\u202e", "U+202E", id="right-to-left-override"),
]


class Provision:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data_dir = tmp_path / "data"

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(
            main, list(args), env={"INVIGIL_DATA_DIR": str(self.data_dir)}, catch_exceptions=False
        )
        assert (result.exit_code == 0) is ok, result.output
        return result

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text, newline="")
        return str(path)

    def count(self, table: str) -> int:
        db.migrate(self.data_dir)
        store = db.connect(self.data_dir)
        try:
            return int(store.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        finally:
            store.close()

    def password_file(self) -> str:
        path = self.tmp / "pw"
        path.write_text(PASSWORD + "\n")
        path.chmod(0o600)
        return str(path)


@pytest.fixture
def run(tmp_path: Path) -> Provision:
    return Provision(tmp_path)


@pytest.fixture
def exam_id(run: Provision) -> int:
    run("hall", "create", "Hall A")  # no seat map: any seat label goes
    answer = run(
        "--json", "exam", "create", "--hall", "Hall A", "--title", "T", "--start", START, "--end", END
    )
    return int(json.loads(answer.stdout)["id"])


def _refused(result: Result, field: str, code_point: str) -> None:
    message = result.stderr
    assert field in message and "control character" in message and code_point in message, message


@pytest.mark.parametrize(("char", "code_point"), CONTROLS)
def test_exam_title_with_a_control_character_is_refused(run: Provision, char: str, code_point: str) -> None:
    run("hall", "create", "Hall A")
    title = f"Linear Algebra{char}allow *"
    result = run(
        "exam", "create", "--hall", "Hall A", "--title", title, "--start", START, "--end", END, ok=False
    )
    _refused(result, "--title", code_point)
    assert run.count("exam") == 0


def test_exam_update_to_a_title_with_a_line_break_is_refused(run: Provision, exam_id: int) -> None:
    result = run("exam", "update", str(exam_id), "--title", "T\nallow *", ok=False)
    _refused(result, "--title", "U+000A")
    shown = json.loads(run("--json", "exam", "show", str(exam_id)).stdout)
    assert shown["title"] == "T"


@pytest.mark.parametrize(("char", "code_point"), CONTROLS)
def test_hall_name_with_a_control_character_is_refused(run: Provision, char: str, code_point: str) -> None:
    result = run("hall", "create", f"Hall{char}A", ok=False)
    assert "hall name" in result.stderr
    assert run.count("hall") == 0


@pytest.mark.parametrize("interface", ["eth0\n", "eth0\t", "eth0\n\n"])
def test_interface_with_a_trailing_control_character_is_refused(run: Provision, interface: str) -> None:
    result = run("hall", "create", "Hall A", "--interface", interface, ok=False)
    assert "interface" in result.stderr and "not a network interface name" in result.stderr
    assert run.count("hall") == 0


def test_roster_with_control_characters_names_each_field_and_line(run: Provision, exam_id: int) -> None:
    text = (
        "student_number,name,extra_time_min,seat\r\n"
        "s1,Ann,0,A1\r\n"  # 2: fine
        's2,"Bob\r\nallow *",0,A2\r\n'  # 3-4: a line break inside a quoted name
        "s3,Carl\tTab,0,A3\r\n"  # 5: a tab
        "s4,Dee,0,A4\x1b[2J\r\n"  # 6: an escape sequence in the seat
        "s5,Eve\u2028Two,0,\r\n"  # 7: a Unicode line separator
    )
    result = run("roster", "import", str(exam_id), run.file("bad.csv", text), ok=False)
    message = result.stderr
    assert "nothing was changed" in message
    for line, field, code_point in (
        (4, "name", "U+000A"),
        (5, "name", "U+0009"),
        (6, "seat", "U+001B"),
        (7, "name", "U+2028"),
    ):
        [reported] = [entry for entry in message.split("\n") if f"bad.csv:{line}:" in entry]
        assert field in reported and "control character" in reported and code_point in reported, reported
    assert "bad.csv:2:" not in message and "bad.csv:3:" not in message
    assert run.count("roster") == 0
    as_json = json.loads(
        run("--json", "roster", "import", str(exam_id), str(run.tmp / "bad.csv"), ok=False).stdout
    )
    assert [entry["line"] for entry in as_json["error"]["lines"]] == [4, 5, 6, 7]


@pytest.mark.parametrize("username", ["jdoe\n", "jdoe\r\n", "j\tdoe", "jdoe\x00"])
def test_username_with_a_control_character_is_refused(run: Provision, username: str) -> None:
    result = run(
        "user", "create", username, "--role", "invigilator", "--password-file", run.password_file(), ok=False
    )
    assert "bad username" in result.stderr
    assert run.count("user") == 0


def test_display_name_with_a_line_break_is_refused(run: Provision) -> None:
    result = run(
        "user",
        "create",
        "jdoe",
        "--role",
        "invigilator",
        "--display-name",
        "J. Doe\nadmin",
        "--password-file",
        run.password_file(),
        ok=False,
    )
    _refused(result, "display name", "U+000A")
    assert run.count("user") == 0


# --- the store refuses them whoever calls it ------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    db.migrate(tmp_path)
    connection = db.connect(tmp_path)
    yield connection
    connection.close()


def test_the_store_refuses_control_characters_in_every_organiser_text(store, tmp_path: Path) -> None:
    master = crypto.load_or_create_master_key(tmp_path)
    with pytest.raises(exams.BadText, match="hall name"):
        exams.create_hall(store, "Hall\nA")
    with pytest.raises(exams.BadText, match="seat"):
        exams.create_hall(store, "Hall B", seat_map=[{"seat": "A1\n", "row": 1, "col": 1}])
    hall_id = exams.create_hall(store, "Hall A")
    start = utc_now()
    with pytest.raises(exams.BadText, match="exam title"):
        exams.create_exam(
            store,
            master,
            hall_id=hall_id,
            title="T\rallow *",
            starts_at=start,
            ends_at=start + timedelta(hours=1),
        )
    exam_id = exams.create_exam(
        store, master, hall_id=hall_id, title="T", starts_at=start, ends_at=start + timedelta(hours=1)
    )
    for entry, field in (
        (exams.RosterEntry("s1", "Ann\nBell"), "student name"),
        (exams.RosterEntry("s1\n", "Ann"), "student number"),
        (exams.RosterEntry("s1", "Ann", 0, "A1\t"), "seat"),
    ):
        with pytest.raises(exams.BadText, match=field):
            exams.add_roster(store, exam_id, [exams.RosterEntry("s0", "Fine"), entry])
    with pytest.raises(users.UserError, match="bad username"):
        users.check_username("jdoe\n")
    with pytest.raises(users.UserError, match="display name"):
        users.check_display_name("J.\u2028Doe")
    assert [store.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("hall", "exam", "roster")] == [
        1,
        1,
        0,
    ]  # noqa: S608
