"""An exam's roster file: CSV ``student_number,name[,extra_time_min][,seat]`` into roster entries.

Pure: storing the entries, all or nothing, is ``hall_server.store.exams.add_roster``'s part. Every bad
line is reported at once, with its line number.
"""

from __future__ import annotations

import re

from hall_server.store.exams import RosterEntry, control_character
from provisioning.csvtable import read_table
from provisioning.errors import LineErrors

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


def parse_roster(
    text: str,
    known_seats: set[str] | None = None,
    taken_seats: dict[str, str] | None = None,
    source: str = "roster",
) -> list[RosterEntry]:
    """Parse a roster file; raises ``LineErrors`` listing every bad line.

    ``known_seats`` is the hall's seat map (``None`` or empty: the hall has none, any seat label goes).
    ``taken_seats`` maps seats already on the stored roster to their student numbers, so a file cannot
    seat a new student where another one already sits.
    """
    rows, errors = read_table(text, ("student_number", "name"), ("extra_time_min", "seat"))
    entries: list[RosterEntry] = []
    numbers: dict[str, int] = {}
    seats: dict[str, int] = {}
    # A student in this file may move to another seat; only seats of students it leaves alone stay taken.
    in_file = {row.values["student_number"] for row in rows}
    taken = {seat: who for seat, who in (taken_seats or {}).items() if who not in in_file}
    for row in rows:
        number, name = row.values["student_number"], row.values["name"]
        extra, seat = row.values.get("extra_time_min", ""), row.values.get("seat", "")
        problems = []
        if not number:
            problems.append("empty student_number")
        elif not STUDENT_NUMBER_RE.fullmatch(number):
            problems.append(f"student_number {number!r} must be 1-32 letters, digits, '.', '_' or '-'")
        elif number in numbers:
            problems.append(f"student_number {number} is already on line {numbers[number]}")
        if not name:
            problems.append("empty name")
        elif len(name) > MAX_NAME_CHARS:
            problems.append(f"name longer than {MAX_NAME_CHARS} characters")
        elif problem := control_problem("name", name):
            problems.append(problem)
        if extra and not (extra.isdigit() and int(extra) <= MAX_EXTRA_TIME_MIN):
            problems.append(
                f"extra_time_min {extra!r} must be a whole number of minutes, 0-{MAX_EXTRA_TIME_MIN}"
            )
        if seat:
            if problem := control_problem("seat", seat):
                problems.append(problem)
            elif known_seats and seat not in known_seats:
                problems.append(f"seat {seat!r} is not on the hall's seat map")
            elif seat in seats:
                problems.append(f"seat {seat} is already given on line {seats[seat]}")
            elif seat in taken:
                problems.append(f"seat {seat} is already taken by {taken[seat]} on the stored roster")
        if problems:
            errors.append((row.line, "; ".join(problems)))
        if number:
            numbers.setdefault(number, row.line)
        if seat:
            seats.setdefault(seat, row.line)
        if not problems:
            entries.append(RosterEntry(number, name, int(extra or 0), seat or None))
    if not entries and not errors:
        errors.append((1, "the roster has a header but no students"))
    if errors:
        raise LineErrors(source, sorted(errors))
    return entries
