"""An organiser's table, from a CSV file or an Excel workbook, and how its problems are reported.

A roster or an exam list may come as CSV (docs/provisioning.md) or as the ``.xlsx`` the exam system
exports; both become the same ``Row``s. Checks collect ``Problem``s naming the column they are about, and
``Table.check`` reports them in the file's own terms: ``students.csv:4: ...`` for a CSV file,
``Sheet1 row 4 column B (name): ...`` for a sheet. Nothing is stored when there is any problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provisioning.csvtable import Problem, Row, read_table
from provisioning.errors import LineErrors, ProvisioningError, SheetErrors

#: An xlsx file is a zip archive; this is how every zip archive starts.
ZIP_MAGIC = b"PK\x03\x04"
#: The old binary Excel format (an OLE compound file), which openpyxl cannot read.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
XLSX_SUFFIXES = (".xlsx", ".xlsm")


@dataclass
class Table:
    source: str
    rows: list[Row]
    problems: list[Problem] = field(default_factory=list)
    #: The sheet's name for a workbook; None for a CSV file.
    sheet: str | None = None
    #: Column letter of every named column of a sheet.
    letters: dict[str, str] = field(default_factory=dict)

    def place(self, line: int) -> str:
        """How a message points at another line of the same file: "line 3" or "row 3"."""
        return f"line {line}" if self.sheet is None else f"row {line}"

    def where(self, line: int, column: str | None) -> str:
        if column is None:
            return f"{self.sheet} row {line}"
        if column in self.letters:
            return f"{self.sheet} row {line} column {self.letters[column]} ({column})"
        return f"{self.sheet} row {line} column {column}"

    def check(self, problems: list[Problem]) -> None:
        """Raise ``LineErrors`` (CSV) or ``SheetErrors`` (xlsx) for the table's and these problems."""
        every = sorted(self.problems + problems, key=lambda problem: problem[0])
        if not every:
            return
        if self.sheet is None:
            by_line: dict[int, list[str]] = {}
            for line, _column, message in every:
                by_line.setdefault(line, []).append(message)
            raise LineErrors(self.source, [(line, "; ".join(messages)) for line, messages in by_line.items()])
        raise SheetErrors(
            self.source, [(line, f"{self.where(line, column)}: {message}") for line, column, message in every]
        )


def decode_text(data: bytes, source: str, what: str) -> str:
    """UTF-8 text (a BOM is dropped), or an error saying how to save the file.

    Line ends become ``\n`` as when Python opens a text file, so a file saved on Windows reads the same.
    """
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        message = f"{source} is not UTF-8 text (byte {exc.start}); save the {what} as UTF-8"
        raise ProvisioningError(message) from None


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"cannot read the {what} {path}: {exc.strerror}") from None


def is_workbook(data: bytes, source: str) -> bool:
    """A workbook by its content (a zip archive, or the old binary format) or else by its name."""
    return data.startswith((ZIP_MAGIC, OLE_MAGIC)) or source.lower().endswith((*XLSX_SUFFIXES, ".xls"))


def csv_table(text: str, source: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Table:
    rows, errors = read_table(text, required, optional)
    return Table(source, rows, [(line, None, message) for line, message in errors])


def read_table_file(
    data: bytes,
    source: str,
    what: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    sheet: str | None = None,
) -> Table:
    """The table in ``data`` (a CSV file or a workbook, see ``is_workbook``), named ``source`` in messages.

    ``sheet`` picks a workbook's sheet (default: the first); a CSV file has none to pick.
    """
    if is_workbook(data, source):
        from provisioning.xlsxtable import read_sheet  # openpyxl is imported only for a workbook

        sheet_name, rows, problems, letters = read_sheet(data, source, required, optional, sheet)
        return Table(source, rows, problems, sheet_name, letters)
    if sheet is not None:
        raise ProvisioningError(f"{source} is a CSV file, not a workbook: it has no sheet {sheet!r}")
    return csv_table(decode_text(data, source, what), source, required, optional)
