"""A hall's seat map: CSV ``seat,row,col`` (one seat per line) into the list stored in ``hall.seat_map``.

Pure. The dashboard draws the hall from the stored list, and a roster may name only seats on the map.
"""

from __future__ import annotations

import re
from typing import Any

from provisioning.csvtable import read_table
from provisioning.errors import LineErrors

#: What a seat label may look like: short, printable, no spaces ("A12", "3-07", "L.4").
SEAT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$")
MAX_GRID = 1000


def parse_seat_map(text: str, source: str = "seat map") -> list[dict[str, Any]]:
    """``[{"seat": "A1", "row": 1, "col": 1}, ...]`` in file order; ``LineErrors`` names every bad line."""
    rows, errors = read_table(text, ("seat", "row", "col"))
    seats: list[dict[str, Any]] = []
    seen_seat: dict[str, int] = {}
    seen_place: dict[tuple[int, int], int] = {}
    for row in rows:
        seat = row.values["seat"]
        problems = []
        if not SEAT_RE.match(seat):
            problems.append(f"seat {seat!r} must be 1-16 letters, digits, '.', '_' or '-'")
        elif seat.upper() in seen_seat:
            problems.append(f"seat {seat!r} is already on line {seen_seat[seat.upper()]}")
        grid = []
        for axis in ("row", "col"):
            value = row.values[axis]
            if not value.isdigit() or not 1 <= int(value) <= MAX_GRID:
                problems.append(f"{axis} {value!r} must be a whole number from 1 to {MAX_GRID}")
            else:
                grid.append(int(value))
        if len(grid) == 2 and (place := (grid[0], grid[1])) in seen_place:
            problems.append(f"row {place[0]}, col {place[1]} is already seat on line {seen_place[place]}")
        if problems:
            errors.append((row.line, "; ".join(problems)))
            continue
        seen_seat[seat.upper()] = row.line
        seen_place[(grid[0], grid[1])] = row.line
        seats.append({"seat": seat, "row": grid[0], "col": grid[1]})
    if not seats and not errors:
        errors.append((1, "the seat map has a header but no seats"))
    if errors:
        raise LineErrors(source, sorted(errors))
    return seats


def seat_labels(seat_map: list[dict[str, Any]]) -> set[str]:
    return {str(entry["seat"]) for entry in seat_map}
