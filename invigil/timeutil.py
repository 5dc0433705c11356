"""UTC time on the wire: ISO 8601 with an explicit offset, always parsed to an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_wire(moment: datetime) -> str:
    """Format an aware datetime as ``2026-11-23T17:16:29.123Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Invigil only speaks UTC with an explicit offset")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_wire(text: str) -> datetime:
    """Parse a wire timestamp; a timestamp without an offset is refused rather than guessed."""
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError("a timestamp must be an ISO 8601 string")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment.astimezone(UTC)
