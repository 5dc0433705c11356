"""An exam's roster: ``student_number,name[,extra_time_min][,seat]`` (a CSV file or a sheet) into entries.

Pure: storing the entries, all or nothing, is ``hall_server.store.exams.add_roster``'s part. Every bad
line is reported at once, with its line number (a sheet's: row and column).
"""

from __future__ import annotations

import re

from hall_server.store.exams import RosterEntry, control_character
from provisioning.csvtable import Problem
from provisioning.tablefile import Table, csv_table

STUDENT_NUMBER_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
MAX_EXTRA_TIME_MIN = 600
MAX_NAME_CHARS = 200


def control_problem(field: str, value: str) -> str | None:
    """What to fix when ``value`` holds a control character (a name or seat reaches reports, exports and
    the dashboard, where a line break or tab would split or shift it), else None."""
    index = control_character(value)
    if index is None:
        return None
    return (
        f"{field} {value!r} contains a control character (U+{ord(value[index]):04X} at position "
        f"{index + 1}): a line break inside quotes, a tab or an invisible code"
    )


ROSTER_COLUMNS = ("student_number", "name"), ("extra_time_min", "seat")


def parse_roster(
    text: str,
    known_seats: set[str] | None = None,
    taken_seats: dict[str, str] | None = None,
    source: str = "roster",
) -> list[RosterEntry]:
    """Parse a roster CSV file; raises ``LineErrors`` listing every bad line (see ``check_roster``)."""
    return check_roster(csv_table(text, source, *ROSTER_COLUMNS), known_seats, taken_seats)


def check_roster(
    table: Table,
    known_seats: set[str] | None = None,
    taken_seats: dict[str, str] | None = None,
) -> list[RosterEntry]:
    """The roster entries of a table (CSV or sheet); raises ``LineErrors`` naming every bad line or cell.

    ``known_seats`` is the hall's seat map (``None`` or empty: the hall has none, any seat label goes).
    ``taken_seats`` maps seats already on the stored roster to their student numbers, so a file cannot
    seat a new student where another one already sits.
    """
    rows = table.rows
    entries: list[RosterEntry] = []
    problems: list[Problem] = []
    numbers: dict[str, int] = {}
    seats: dict[str, int] = {}
    # A student in this file may move to another seat; only seats of students it leaves alone stay taken.
    in_file = {row.values["student_number"] for row in rows}
    taken = {seat: who for seat, who in (taken_seats or {}).items() if who not in in_file}
    for row in rows:
        number, name = row.values["student_number"], row.values["name"]
        extra, seat = row.values.get("extra_time_min", ""), row.values.get("seat", "")
        found: list[Problem] = []
        at = row.line
        if not number:
            found.append((at, "student_number", "empty student_number"))
        elif not STUDENT_NUMBER_RE.fullmatch(number):
            message = f"student_number {number!r} must be 1-32 letters, digits, '.', '_' or '-'"
            found.append((at, "student_number", message))
        elif number in numbers:
            message = f"student_number {number} is already on {table.place(numbers[number])}"
            found.append((at, "student_number", message))
        if not name:
            found.append((at, "name", "empty name"))
        elif len(name) > MAX_NAME_CHARS:
            found.append((at, "name", f"name longer than {MAX_NAME_CHARS} characters"))
        elif trouble := control_problem("name", name):
            found.append((at, "name", trouble))
        if extra and not (extra.isdigit() and int(extra) <= MAX_EXTRA_TIME_MIN):
            found.append(
                (
                    at,
                    "extra_time_min",
                    f"extra_time_min {extra!r} must be a whole number of minutes, 0-{MAX_EXTRA_TIME_MIN}",
                )
            )
        if seat:
            if trouble := control_problem("seat", seat):
                found.append((at, "seat", trouble))
            elif known_seats and seat not in known_seats:
                found.append((at, "seat", f"seat {seat!r} is not on the hall's seat map"))
            elif seat in seats:
                found.append((at, "seat", f"seat {seat} is already given on {table.place(seats[seat])}"))
            elif seat in taken:
                message = f"seat {seat} is already taken by {taken[seat]} on the stored roster"
                found.append((at, "seat", message))
        problems += found
        if number:
            numbers.setdefault(number, row.line)
        if seat:
            seats.setdefault(seat, row.line)
        if not found:
            entries.append(RosterEntry(number, name, int(extra or 0), seat or None))
    if not entries and not problems and not table.problems:
        problems.append((1, None, "the roster has a header but no students"))
    table.check(problems)
    return entries
