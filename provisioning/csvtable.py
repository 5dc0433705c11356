"""Reading an organiser's CSV file (seat maps, rosters) into rows that remember their line numbers.

Pure: it takes the file's text, not a path.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, str]


def read_table(
    text: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[list[Row], list[tuple[int, str]]]:
    """Split ``text`` into rows keyed by the header's column names; returns ``(rows, errors)``.

    The header (line 1) must name every ``required`` column and nothing beyond ``optional``. Blank lines
    are skipped; a row with the wrong number of fields is an error. Line numbers are the editor's.
    """
    expected = ",".join(required) + "".join(f"[,{name}]" for name in optional)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    errors: list[tuple[int, str]] = []
    try:
        header = next(reader)
    except StopIteration:
        return [], [(1, f"the file is empty; line 1 must be the header {expected}")]
    except csv.Error as exc:
        return [], [(1, f"cannot read the header: {exc}")]
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in required + optional]
    missing = [name for name in required if name not in columns]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if unknown or missing or duplicated:
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(repr(n) for n in unknown)}")
        if duplicated:
            problems.append(f"repeated column(s) {', '.join(duplicated)}")
        return [], [(1, f"header: {'; '.join(problems)}; expected {expected}")]
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
