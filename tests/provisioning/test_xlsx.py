"""Rosters and exam lists from Excel workbooks: real .xlsx files written with openpyxl, imported by the
real ``invigil-provision`` from the virtualenv, and the store read back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hall_server.store import db
from provisioning import exams
from provisioning.xlsxtable import MAX_ROWS, cell_text

PROVISION = Path(sys.executable).parent / "invigil-provision"
REPO = Path(__file__).resolve().parents[2]


class Provision:
    """The installed command against one data directory, as an organiser's shell runs it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data_dir = tmp_path / "data"

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(PROVISION), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "INVIGIL_DATA_DIR": str(self.data_dir), "PYTHONPATH": str(REPO)},
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("--json", *args).stdout)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        db.migrate(self.data_dir)
        store = db.connect(self.data_dir)
        try:
            return [tuple(row) for row in store.execute(sql).fetchall()]
        finally:
            store.close()

    def roster(self, exam_id: int) -> list[dict[str, Any]]:
        store = db.connect(self.data_dir)
        try:
            return exams.list_roster(store, exam_id)
        finally:
            store.close()


def workbook(path: Path, *sheets: tuple[str, list[list[Any]]], merge: str | None = None) -> str:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
        if merge:
            sheet.merge_cells(merge)
    book.save(path)
    return str(path)


def with_cached_value(path: Path, cell: str, value: str) -> None:
    """Give a formula cell the value Excel would have saved with it (openpyxl writes none)."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    sheet, count = re.subn(
        rf'(<c r="{cell}"[^>]*>)(<f>[^<]*</f>)(<v\s*/>|<v></v>)?', rf"\1\2<v>{value}</v>", sheet
    )
    assert count == 1, sheet
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


@pytest.fixture
def run(tmp_path: Path) -> Provision:
    return Provision(tmp_path)


@pytest.fixture
def exam_id(run: Provision) -> int:
    seats = run.tmp / "seats.csv"
    seats.write_text("seat,row,col\nA1,1,1\nA2,1,2\nB1,2,1\nB2,2,2\n")
    run("hall", "create", "Hall A", "--seat-map", str(seats))
    exam = run.json(
        "exam", "create", "--hall", "Hall A", "--title", "Linear Algebra",
        "--start", "2026-06-12T09:00+02:00", "--end", "2026-06-12T12:00+02:00",
    )  # fmt: skip
    return int(exam["id"])


# --- cell values as text ---


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_a_whole_number_reads_without_a_decimal_point(number: int) -> None:
    assert cell_text(float(number)) == str(number)
    assert cell_text(number) == str(number)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_number_reads_back_as_the_same_number(number: float) -> None:
    assert float(cell_text(number)) == number


@given(st.text())
def test_text_is_kept_without_surrounding_blanks(text: str) -> None:
    assert cell_text(text) == text.strip()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "TRUE"),
        (datetime(2026, 6, 12), "2026-06-12"),
        (datetime(2026, 6, 12, 9, 30), "2026-06-12T09:30"),
        (datetime(2026, 6, 12, 9, 30, 15), "2026-06-12T09:30:15"),
        (1234567.0, "1234567"),
        (2.5, "2.5"),
    ],
)
def test_cell_text(value: object, text: str) -> None:
    assert cell_text(value) == text


# --- roster import ---


def test_roster_from_a_workbook(run: Provision, exam_id: int) -> None:
    path = workbook(
        run.tmp / "students.xlsx",
        (
            "Export",
            [
                ["Student_Number", "NAME", None, "Extra_Time_Min", "seat"],  # "NAME" merged over B1:C1
                [1234567, "Ann de Vries", None, None, "A1"],
                [1234568.0, "Bob Bell", None, 15, "A2"],
                ["s-9", datetime(2026, 6, 12), None, 0.0, None],
                [None, None, None, None, None],  # empty trailing rows
                [None, None, None, None, None],
            ],
        ),
        merge="B1:C1",
    )
    assert run.json("roster", "import", str(exam_id), path)["imported"] == 3
    assert run.roster(exam_id) == [
        {"student_number": "1234567", "name": "Ann de Vries", "extra_time_min": 0, "seat": "A1"},
        {"student_number": "1234568", "name": "Bob Bell", "extra_time_min": 15, "seat": "A2"},
        {"student_number": "s-9", "name": "2026-06-12", "extra_time_min": 0, "seat": None},
    ]


def test_roster_sheet_by_name_and_a_formula_with_its_saved_value(run: Provision, exam_id: int) -> None:
    path = run.tmp / "two.xlsx"
    workbook(
        path,
        ("Students", [["student_number", "name"], [1001, "Ann"], ["=A2+1", "Bob"]]),
        ("Other", [["student_number", "name"], [2001, "Carl"]]),
    )
    with_cached_value(path, "A3", "1002")
    run("roster", "import", str(exam_id), str(path))
    assert [r["student_number"] for r in run.roster(exam_id)] == ["1001", "1002"]
    run("roster", "import", str(exam_id), str(path), "--sheet", "Other")
    assert [r["student_number"] for r in run.roster(exam_id)] == ["1001", "1002", "2001"]
    missing = run("roster", "import", str(exam_id), str(path), "--sheet", "Nope", ok=False)
    assert "no sheet 'Nope'; its sheets: Students, Other" in missing.stderr


def test_every_bad_cell_is_named_by_sheet_row_and_column_and_nothing_is_stored(
    run: Provision, exam_id: int
) -> None:
    path = workbook(
        run.tmp / "bad.xlsx",
        (
            "Sheet1",
            [
                ["student_number", "name", "extra_time_min", "seat"],
                [1, "Ann", 0, "A1"],  # 2: fine
                [1, "Ann Again", 0, "A2"],  # 3: number already on row 2
                [2, None, "ten", "Z9"],  # 4: no name, extra time, seat not on the map
                ["=A2+5", "Carl", 0, None],  # 5: a formula never calculated
                [3, "Dee\nDay", 0, None, "stray"],  # 6: line break in the name; a value in column E
            ],
        ),
    )
    result = run("roster", "import", str(exam_id), path, ok=False)
    for expected in (
        "Sheet1 row 3 column A (student_number): student_number 1 is already on row 2",
        "Sheet1 row 4 column B (name): empty name",
        "Sheet1 row 4 column C (extra_time_min): extra_time_min 'ten'",
        "Sheet1 row 4 column D (seat): seat 'Z9' is not on the hall's seat map",
        "Sheet1 row 5 column A (student_number): the formula =A2+5 has no saved value: save the file in",
        "Sheet1 row 6 column B (name): name 'Dee\\nDay' contains a control character (U+000A",
        "Sheet1 row 6 column E: 'stray' is in a column without a header",
    ):
        assert expected in result.stderr, result.stderr
    assert "row 2 " not in result.stderr.replace("on row 2", "")
    assert "nothing was changed" in result.stderr
    assert run.roster(exam_id) == []
    as_json = json.loads(run("--json", "roster", "import", str(exam_id), path, ok=False).stdout)
    assert as_json["error"]["code"] == "bad_lines"
    assert [line["line"] for line in as_json["error"]["lines"]] == [3, 4, 4, 4, 5, 6, 6]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "Sheet1 row 1: the sheet is empty; row 1 must be the header student_number,name"),
        ([["number", "name"], [1, "Ann"]], "Sheet1 row 1: header: missing column(s) student_number"),
        ([["student_number", "name"]], "the roster has a header but no students"),
    ],
)
def test_sheet_without_students(run: Provision, exam_id: int, rows: list[list[Any]], message: str) -> None:
    path = workbook(run.tmp / "r.xlsx", ("Sheet1", rows))
    assert message in run("roster", "import", str(exam_id), path, ok=False).stderr
    assert run.roster(exam_id) == []


def test_a_sheet_longer_than_the_limit_is_refused(run: Provision, exam_id: int) -> None:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Everyone")
    sheet.append(["student_number", "name"])
    for number in range(MAX_ROWS + 1):
        sheet.append([number + 1, "Student"])
    path = run.tmp / "huge.xlsx"
    book.save(path)
    result = run("roster", "import", str(exam_id), str(path), ok=False)
    assert f"sheet Everyone has more than {MAX_ROWS:,} rows" in result.stderr
    assert run.roster(exam_id) == []


def test_a_file_that_is_not_a_workbook_is_refused(run: Provision, exam_id: int) -> None:
    not_zip = run.tmp / "roster.xlsx"
    not_zip.write_text("student_number,name\ns1,Ann\n")
    other_zip = run.tmp / "roster-export"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    old_excel = run.tmp / "roster.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    for path, message in (
        (not_zip, "is not a valid .xlsx workbook"),
        (other_zip, "is not a valid .xlsx workbook"),
        (old_excel, "old-style Excel file (.xls)"),
    ):
        result = run("roster", "import", str(exam_id), str(path), ok=False)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert run.roster(exam_id) == []


# --- exam import ---

HEADER = ["title", "hall", "start", "end", "policy", "invigilators", "reviewers", "interval"]
HEADER += ["retention_days"]


def staff(run: Provision) -> None:
    password = run.tmp / "pw"
    password.write_text("correct horse battery\n")
    password.chmod(0o600)
    for user in ("jdoe", "asmith", "bvos"):
        run("user", "create", user, "--role", "organiser", "--password-file", str(password))


def test_exams_of_a_session_from_a_workbook(run: Provision) -> None:
    run("hall", "create", "Hall A")
    run("hall", "create", "Hall B")
    staff(run)
    (run.tmp / "policies").mkdir()
    (run.tmp / "policies" / "linalg.policy").write_text("allow exam.example.nl\n")
    path = workbook(
        run.tmp / "june.xlsx",
        (
            "June",
            [
                HEADER,
                ["Linear Algebra", "Hall A", "2026-06-12T09:00+02:00", "2026-06-12T12:00+02:00",
                 "policies/linalg.policy", "jdoe, asmith", "bvos", 10, 60],
                ["Statistics", "Hall B", "2026-06-13T07:00Z", "2026-06-13T09:00Z", None, "jdoe;bvos", None,
                 None, None],
            ],
        ),
    )  # fmt: skip
    created = run.json("exam", "import", path)
    assert [(e["row"], e["title"], e["created"]) for e in created] == [
        (2, "Linear Algebra", True),
        (3, "Statistics", True),
    ]
    assert run.query(
        "SELECT title, starts_at, ends_at, capture_interval_s, retention_days, policy_text FROM exam "
        "ORDER BY id"
    ) == [
        ("Linear Algebra", "2026-06-12T07:00:00.000Z", "2026-06-12T10:00:00.000Z", 10, 60,
         "allow exam.example.nl\n"),
        ("Statistics", "2026-06-13T07:00:00.000Z", "2026-06-13T09:00:00.000Z", 5, 30, ""),
    ]  # fmt: skip
    assert run.query(
        "SELECT exam.title, user.username, assignment.role FROM assignment JOIN user ON user.id = user_id "
        "JOIN exam ON exam.id = assignment.exam_id ORDER BY exam.id, assignment.role, user.username"
    ) == [
        ("Linear Algebra", "asmith", "invigilator"),
        ("Linear Algebra", "jdoe", "invigilator"),
        ("Linear Algebra", "bvos", "reviewer"),
        ("Statistics", "bvos", "invigilator"),
        ("Statistics", "jdoe", "invigilator"),
    ]
    assert run.query("SELECT count(*) FROM exam_key") == [(2,)]
    again = run("exam", "import", path)
    assert "0 exam(s) created, 2 unchanged" in again.stderr
    assert [line.split()[-2] for line in again.stdout.splitlines()[1:]] == ["unchanged", "unchanged"]
    assert run.query("SELECT count(*) FROM exam") == [(2,)]


def test_exam_import_from_csv(run: Provision) -> None:
    run("hall", "create", "Hall A")
    path = run.tmp / "exams.csv"
    path.write_text("Title,Hall,Start,End\nOptics,Hall A,2026-06-12T09:00+02:00,2026-06-12T11:00+02:00\n")
    output = run("exam", "import", str(path))
    assert "Optics" in output.stdout and "created" in output.stdout
    assert "row 2 names no policy" in output.stderr
    assert run.query("SELECT title FROM exam") == [("Optics",)]


def test_one_bad_row_and_no_exam_is_created(run: Provision) -> None:
    run("hall", "create", "Hall A")
    staff(run)
    run("exam", "create", "--hall", "Hall A", "--title", "Optics", "--start", "2026-06-20T09:00Z",
        "--end", "2026-06-20T11:00Z")  # fmt: skip
    (run.tmp / "bad.policy").write_text("allow exam.example.nl\nallow\n")
    good = ["Linear Algebra", "Hall A", "2026-06-12T09:00+02:00", "2026-06-12T12:00+02:00"]
    path = workbook(
        run.tmp / "june.xlsx",
        (
            "June",
            [
                HEADER,
                [*good, None, "jdoe", None, 10, 60],  # 2: fine
                ["Statistics", "Hall A", datetime(2026, 6, 13, 9), "2026-06-13T11:00+02:00"],  # 3
                ["Physics", "Hall Z", "2026-06-14T09:00+02:00", "tomorrow"],  # 4
                ["Chemistry", "Hall A", "2026-06-15T12:00Z", "2026-06-15T09:00Z", None, "nobody"],  # 5
                [*good, None, None, None, 10, 60],  # 6: the exam of row 2 again
                ["Optics", "Hall A", "2026-06-20T09:00Z", "2026-06-20T12:00Z"],  # 7: exists, other end
                ["Biology", "Hall A", "2026-06-16T09:00Z", "2026-06-16T11:00Z", "bad.policy", None, None,
                 0, "long"],  # 8
                ["=B2", "Hall A", "2026-06-17T09:00Z", "2026-06-17T11:00Z"],  # 9: never calculated
            ],
        ),
    )  # fmt: skip
    before = run.query("SELECT count(*) FROM exam")
    result = run("exam", "import", path, ok=False)
    for expected in (
        "June row 3 column C (start): start 2026-06-13T09:00 is a date-time cell without a UTC offset; "
        "write it as text with an offset",
        "June row 4 column B (hall): no hall 'Hall Z'",
        "June row 4 column D (end): end 'tomorrow' is not an ISO 8601 time with a UTC offset",
        "June row 5 column F (invigilators): no user 'nobody'",
        "June row 5 column D (end): an exam must end after it starts: check start and end",
        "June row 6 column A (title): the same exam (hall, title, start) as row 2",
        "June row 7 column A (title): exam 1 ('Optics' at 2026-06-20T09:00:00.000Z in 'Hall A') exists with "
        "other ends_at",
        "June row 8 column E (policy): policy file bad.policy has 1 bad line(s): line 2:",
        "June row 8 column I (retention_days): retention_days 'long' must be a whole number",
        "June row 9 column A (title): the formula =B2 has no saved value: save the file in Excel first",
    ):
        assert expected in result.stderr, result.stderr
    assert "row 2 " not in result.stderr.replace("as row 2", "")
    assert run.query("SELECT count(*) FROM exam") == before
    assert run.query("SELECT count(*) FROM assignment") == [(0,)]
