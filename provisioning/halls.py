"""Halls in the store: create (idempotent), update, look up, list."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlite_utils

from hall_server.store import exams
from hall_server.store.db import write_transaction
from provisioning.errors import Conflict, NotFound, ProvisioningError
from provisioning.seatmap import seat_labels

#: A Linux interface name: at most 15 bytes, no '/', no whitespace (see dev_valid_name in the kernel).
INTERFACE_RE = re.compile(r"\A[A-Za-z0-9_.:@-]{1,15}\Z")
MAX_NAME_CHARS = 64


def check_hall_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ProvisioningError(f"hall name {name!r} must be 1-{MAX_NAME_CHARS} printable characters")
    return name


def check_interface(interface: str) -> str:
    if interface and not INTERFACE_RE.fullmatch(interface):
        raise ProvisioningError(
            f"interface {interface!r} is not a network interface name (e.g. eth0, enp3s0; see `ip link`)"
        )
    return interface


def _as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    hall_id, name, interface, seat_map, created_at, exam_count = row
    seats = json.loads(seat_map)
    return {
        "id": hall_id,
        "name": name,
        "interface": interface,
        "seat_map": seats,
        "seats": len(seats),
        "exams": exam_count,
        "created_at": created_at,
    }


_SELECT = (
    "SELECT hall.id, hall.name, hall.interface, hall.seat_map, hall.created_at, "
    "(SELECT count(*) FROM exam WHERE exam.hall_id = hall.id) FROM hall"
)


def get_hall(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    row = db.execute(f"{_SELECT} WHERE hall.name = ?", [name]).fetchone()
    if row is None:
        known = [r[0] for r in db.execute("SELECT name FROM hall ORDER BY name")]
        hint = f"known halls: {', '.join(known)}" if known else "no halls yet"
        raise NotFound(f"no hall {name!r} ({hint}); create it with `invigil-provision hall create`")
    return _as_dict(row)


def list_halls(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_as_dict(row) for row in db.execute(f"{_SELECT} ORDER BY hall.name").fetchall()]


def ensure_hall(
    db: sqlite_utils.Database, name: str, interface: str = "", seat_map: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], bool]:
    """Create the hall, or find it unchanged; returns ``(hall, created)``.

    Raises ``Conflict`` naming each difference when a hall of that name exists with other attributes.
    """
    check_hall_name(name)
    check_interface(interface)
    seat_map = seat_map or []
    try:
        hall = get_hall(db, name)
    except NotFound:
        exams.create_hall(db, name, interface, seat_map)
        return get_hall(db, name), True
    differences = []
    if hall["interface"] != interface:
        differences.append(f"interface {hall['interface']!r} (you gave {interface!r})")
    if hall["seat_map"] != seat_map:
        yours = f"yours has {len(seat_map)}" if len(seat_map) != hall["seats"] else "yours differs"
        differences.append(f"a seat map of {hall['seats']} seats ({yours})")
    if differences:
        raise Conflict(
            f"hall {name!r} already exists with {' and '.join(differences)}; "
            f"to change it run `invigil-provision hall update {name!r} ...`"
        )
    return hall, False


def update_hall(
    db: sqlite_utils.Database,
    name: str,
    interface: str | None = None,
    seat_map: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Change a hall's interface or seat map; a new seat map must still hold every seat a roster uses."""
    if interface is not None:
        check_interface(interface)
    with write_transaction(db):
        hall = get_hall(db, name)
        if seat_map is not None:
            used = {
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT seat FROM roster JOIN exam ON exam.id = roster.exam_id "
                    "WHERE exam.hall_id = ? AND seat IS NOT NULL",
                    [hall["id"]],
                )
            }
            missing = sorted(used - seat_labels(seat_map))
            if missing:
                raise Conflict(
                    f"the new seat map lacks seat(s) {', '.join(missing)} used by this hall's rosters; "
                    "add them to the map or re-import those rosters first"
                )
            db.execute("UPDATE hall SET seat_map = ? WHERE id = ?", [json.dumps(seat_map), hall["id"]])
        if interface is not None:
            db.execute("UPDATE hall SET interface = ? WHERE id = ?", [interface, hall["id"]])
    return get_hall(db, name)
