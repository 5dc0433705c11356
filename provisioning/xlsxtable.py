"""One sheet of an Excel workbook (``.xlsx``) into the same rows a CSV file gives (``provisioning.csvtable``).

Row 1 is the header, named as in the CSV file (case does not matter). openpyxl reads in read-only mode, row
by row, so memory stays bounded; a sheet with more than ``MAX_ROWS`` rows is refused rather than read.
Values are the ones Excel saved with the file (``data_only``): a formula that was never calculated (a file
written by a script) has none, and is refused rather than read as an empty cell.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from itertools import zip_longest
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

from provisioning.csvtable import Problem, Row, expected_header, header_problem
from provisioning.errors import ProvisioningError

MAX_ROWS = 20_000


def cell_text(value: object) -> str:
    """A cell's value as the text a CSV file would hold: a student number typed as 1234567 is
    ``"1234567"``, not ``"1234567.0"``; a date is ``2026-06-12``, a date-time ``2026-06-12T09:00``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel keeps every number as a float; repr is the shortest text that reads back as the same number.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(timespec="minutes" if value.second == value.microsecond == 0 else "seconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value).strip()


def _not_a_workbook(source: str, exc: BaseException) -> ProvisioningError:
    reason = str(exc) or type(exc).__name__
    return ProvisioningError(
        f"{source} is not a valid .xlsx workbook ({reason}); open it in Excel or LibreOffice and save it "
        "as an Excel workbook (.xlsx), or export the sheet as CSV"
    )


def read_sheet(
    data: bytes,
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    sheet: str | None = None,
) -> tuple[str, list[Row], list[Problem], dict[str, str]]:
    """``(sheet name, rows, problems, column letters)`` of ``sheet`` (default: the first).

    Rows keep their sheet row numbers; empty rows are skipped. Raises ``ProvisioningError`` when the file
    is not a workbook, has no such sheet, or the sheet is too long.
    """
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ProvisioningError(
            f"{source} is an old-style Excel file (.xls); save it as an Excel workbook (.xlsx) or as CSV"
        )
    try:
        # Two readers over the same file: the saved values, and the formulas behind them.
        values_book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formula_book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # openpyxl and zipfile raise many kinds for a damaged or foreign file
        raise _not_a_workbook(source, exc) from None
    try:
        names = [worksheet.title for worksheet in values_book.worksheets]
        if not names:
            raise ProvisioningError(f"{source} has no worksheet")
        name = names[0] if sheet is None else sheet
        if name not in names:
            raise ProvisioningError(f"{source} has no sheet {sheet!r}; its sheets: {', '.join(names)}")
        try:
            rows = zip_longest(
                values_book[name].iter_rows(values_only=True), formula_book[name].iter_rows(values_only=True)
            )
            return (name, *_read(rows, source, name, required, optional))
        except ProvisioningError:
            raise
        except Exception as exc:  # a broken sheet part shows only while its rows are read
            raise _not_a_workbook(source, exc) from None
    finally:
        values_book.close()
        formula_book.close()


def _read(
    rows: Iterator[tuple[Any, Any]],
    source: str,
    name: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
) -> tuple[list[Row], list[Problem], dict[str, str]]:
    header = next(rows, (None, None))[0] or ()
    # A merged header cell holds its text in its first column; the columns it covers have none.
    columns = {index: cell_text(value).lower() for index, value in enumerate(header) if cell_text(value)}
    if not columns:
        expected = expected_header(required, optional)
        return [], [(1, None, f"the sheet is empty; row 1 must be the header {expected}")], {}
    if problem := header_problem(list(columns.values()), required, optional):
        return [], [(1, None, problem)], {}
    letters = {column: get_column_letter(index + 1) for index, column in columns.items()}
    result: list[Row] = []
    problems: list[Problem] = []
    read = 0
    for number, (values, formulas) in enumerate(rows, start=2):
        texts: dict[str, str] = {column: "" for column in columns.values()}
        dated: set[str] = set()
        row_problems: list[Problem] = []
        for index, (value, formula) in enumerate(zip_longest(values or (), formulas or ())):
            column = columns.get(index)
            if value is None and formula is not None:
                row_problems.append(
                    (
                        number,
                        column or get_column_letter(index + 1),
                        f"the formula {cell_text(formula)} has no saved value: save the file in Excel first "
                        "(a file written by a program keeps formulas without their results)",
                    )
                )
            elif column is None:
                if cell_text(value):
                    message = f"{cell_text(value)!r} is in a column without a header; name it or clear it"
                    row_problems.append((number, get_column_letter(index + 1), message))
            else:
                texts[column] = cell_text(value)
                if isinstance(value, date | time):
                    dated.add(column)
        if not row_problems and not any(texts.values()):
            continue
        read += 1
        if read > MAX_ROWS:
            raise ProvisioningError(
                f"{source}: sheet {name} has more than {MAX_ROWS:,} rows; split it into smaller files"
            )
        problems += row_problems
        # A named cell that cannot be read (a formula without its value) holds up the row's other checks.
        if not any(column in letters for _line, column, _message in row_problems):
            result.append(Row(number, texts, frozenset(dated)))
    return result, problems, letters
