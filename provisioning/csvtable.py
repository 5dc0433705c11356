"""Reading an organiser's CSV file (seat maps, rosters, exams) into rows that remember their line numbers.

Pure: it takes the file's text, not a path.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

#: ``(line or row, column name or None, what to fix)``; a column without a header is named by its letter.
Problem = tuple[int, str | None, str]


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, str]
    #: Columns whose cell was a spreadsheet date or time (a CSV has none): their text carries no offset.
    date_cells: frozenset[str] = frozenset()


def expected_header(required: tuple[str, ...], optional: tuple[str, ...] = ()) -> str:
    return ",".join(required) + "".join(f"[,{name}]" for name in optional)


def header_problem(
    columns: list[str], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> str | None:
    """What is wrong with a header's (lower-case) column names, or None: every ``required`` column, nothing
    beyond ``optional``, none twice. A CSV file and a spreadsheet's first row answer the same way."""
    unknown = [name for name in columns if name not in required + optional]
    missing = [name for name in required if name not in columns]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if not (unknown or missing or duplicated):
        return None
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(n) for n in unknown)}")
    if duplicated:
        problems.append(f"repeated column(s) {', '.join(duplicated)}")
    return f"header: {'; '.join(problems)}; expected {expected_header(required, optional)}"


def read_table(
    text: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[list[Row], list[tuple[int, str]]]:
    """Split ``text`` into rows keyed by the header's column names; returns ``(rows, errors)``.

    The header (line 1) must name every ``required`` column and nothing beyond ``optional``. Blank lines
    are skipped; a row with the wrong number of fields is an error. Line numbers are the editor's.
    """
    expected = expected_header(required, optional)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    errors: list[tuple[int, str]] = []
    try:
        header = next(reader)
    except StopIteration:
        return [], [(1, f"the file is empty; line 1 must be the header {expected}")]
    except csv.Error as exc:
        return [], [(1, f"cannot read the header: {exc}")]
    columns = [name.strip().lower() for name in header]
    if problem := header_problem(columns, required, optional):
        return [], [(1, problem)]
    rows: list[Row] = []
    try:
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(columns):
                errors.append((line, f"{len(fields)} field(s) where the header has {len(columns)}"))
                continue
            rows.append(Row(line, {name: value.strip() for name, value in zip(columns, fields, strict=True)}))
    except csv.Error as exc:
        errors.append((reader.line_num, f"not valid CSV: {exc}"))
    return rows, errors
