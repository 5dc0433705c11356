"""``invigil-provision hall ...``: create, update and list halls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from provisioning import halls
from provisioning.cli.context import Session, read_text, table
from provisioning.seatmap import parse_seat_map

pass_session = click.make_pass_decorator(Session)
seat_map_option = click.option(
    "--seat-map",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CSV with header seat,row,col: one seat per line (row and col count from 1).",
)


def _seat_map(path: Path | None) -> list[dict[str, Any]] | None:
    return None if path is None else parse_seat_map(read_text(path, "seat map"), source=str(path))


def _summary(hall: dict[str, Any]) -> str:
    interface = hall["interface"] or "no interface"
    return (
        f"hall {hall['name']!r} (id {hall['id']}): {interface}, {hall['seats']} seats, {hall['exams']} exams"
    )


@click.group()
def hall() -> None:
    """Exam halls: the room, its network interface and its seat map.

    \b
    Example:
      invigil-provision hall list
    """


@hall.command("create")
@click.argument("name")
@click.option("--interface", default="", help="The hall network's interface on this box (see `ip link`).")
@seat_map_option
@pass_session
def hall_create(session: Session, name: str, interface: str, seat_map: Path | None) -> None:
    """Create hall NAME. Running it again with the same attributes changes nothing.

    \b
    Example:
      invigil-provision hall create "Hall A" --interface enp3s0 --seat-map hall-a-seats.csv
    """
    seats = _seat_map(seat_map)
    with session.store() as store:
        record, created = halls.ensure_hall(store, name, interface, seats)
    if not created:
        session.note(f"hall {name!r} already exists with these attributes; nothing changed")
    session.emit({**record, "created": created}, ("created " if created else "") + _summary(record))


@hall.command("update")
@click.argument("name")
@click.option("--interface", default=None, help="New network interface.")
@seat_map_option
@pass_session
def hall_update(session: Session, name: str, interface: str | None, seat_map: Path | None) -> None:
    """Change hall NAME's interface or seat map (every seat used by a roster must stay on the map).

    \b
    Example:
      invigil-provision hall update "Hall A" --seat-map hall-a-seats-v2.csv
    """
    if interface is None and seat_map is None:
        raise click.UsageError("nothing to change: give --interface or --seat-map")
    seats = _seat_map(seat_map)
    with session.store() as store:
        record = halls.update_hall(store, name, interface, seats)
    session.emit(record, "updated " + _summary(record))


@hall.command("list")
@pass_session
def hall_list(session: Session) -> None:
    """List the halls.

    \b
    Example:
      invigil-provision --json hall list
    """
    with session.store() as store:
        records = halls.list_halls(store)
    session.emit(records, table(records, ["id", "name", "interface", "seats", "exams"]))
