"""Cells of the CSV files staff open in a spreadsheet, made inert (pure).

A cell that starts with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google Sheets,
and a leading tab or carriage return can hide such a start; a formula can run commands or send the sheet's
cells elsewhere. Such cells get a leading ``'``, which spreadsheets read as "text" and do not show (OWASP,
"CSV Injection"). The well-known library for this, defusedcsv, leaves tab and carriage return alone and
rewrites every ``|`` in the cells it escapes, so the rule is kept here, in one small function.
"""

from __future__ import annotations

from typing import Any

#: The columns of an exam export's ``site-log.csv``, in order (written by the export, read back by verify).
SITE_LOG_COLUMNS = (
    "time",
    "received_at",
    "student_number",
    "session_id",
    "client_ip",
    "source",
    "host",
    "url",
    "decision",
    "reason",
)

#: What may make a spreadsheet run a cell (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: Any) -> Any:
    """``cell`` as a spreadsheet shows it rather than runs it: text starting like a formula gets a leading
    ``'``; everything else (numbers, None, plain text) is returned unchanged."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell
