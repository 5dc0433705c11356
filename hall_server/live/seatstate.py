"""Seat states of the invigilator's hall view: the pure merge of roster, enrolment and mDNS discovery.

Three sources meet here: the roster (who is expected, where they sit), enrolment (agent sessions and their
heartbeats) and mDNS discovery (laptops announcing themselves, maybe before they enrol). Discovery is a
hint: the seat states work from enrolment alone when campus Wi-Fi filters multicast. Pure functions;
``hall_server.live.hallview`` feeds them from the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The seat states that put a seat under "needs attention".
ATTENTION_STATES = ("offline", "stale")


@dataclass(frozen=True)
class Thresholds:
    """When a seat turns stale or offline; from the settings ``seat_stale_intervals``/``seat_offline_s``."""

    stale_intervals: int = 2
    offline_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Thresholds:
        return cls(int(settings["seat_stale_intervals"]), float(settings["seat_offline_s"]))


@dataclass(frozen=True)
class SessionFacts:
    """The latest agent session of one roster entry, as far as the seat state needs it."""

    session_id: int
    agent_id: str
    last_seen_at: datetime
    state: str  # the agent's own state from its last heartbeat, or "left"
    ended_at: datetime | None


def seat_state(
    session: SessionFacts | None,
    discovered: Mapping[str, bool],
    now: datetime,
    capture_interval_s: int,
    thresholds: Thresholds,
) -> str:
    """One roster seat's state (pure). ``discovered`` maps agent id -> present (not gone) from mDNS.

    expected: nobody enrolled for the seat; live: heartbeats arrive; stale: none for ``stale_intervals``
    capture intervals; offline: none for ``offline_s`` (or mDNS saw the laptop go and it is stale);
    left: the student pressed leave (or the exam ended for them).
    """
    if session is None:
        return "expected"
    if session.ended_at is not None or session.state == "left":
        return "left"
    silent_s = (now - session.last_seen_at).total_seconds()
    stale_after = thresholds.stale_intervals * capture_interval_s
    if silent_s > max(thresholds.offline_s, stale_after):
        return "offline"
    if silent_s > stale_after:
        return "offline" if discovered.get(session.agent_id) is False else "stale"
    return "live"


def merge_seats(
    roster: Iterable[dict[str, Any]],
    sessions: Mapping[int, SessionFacts],
    discovered: Mapping[str, bool],
    now: datetime,
    capture_interval_s: int,
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """Roster seats with their states, plus one entry per laptop mDNS sees that enrolled nowhere here.

    ``roster`` rows carry at least ``r`` (roster id); they are returned with ``state`` (and ``sid``, the
    session id or None) added. Unenrolled laptops come last as ``{"r": None, "agent": id, "state":
    "present_not_enrolled"}``: before enrolment nothing ties a laptop to a student.
    """
    seats = []
    enrolled_agents = {facts.agent_id for facts in sessions.values()}
    for row in roster:
        facts = sessions.get(row["r"])
        seats.append(
            {
                **row,
                "sid": facts.session_id if facts else None,
                "state": seat_state(facts, discovered, now, capture_interval_s, thresholds),
            }
        )
    for agent_id, present in sorted(discovered.items()):
        if present and agent_id not in enrolled_agents:
            seats.append({"r": None, "agent": agent_id, "state": "present_not_enrolled"})
    return seats


def needs_attention(seat: Mapping[str, Any]) -> bool:
    """What the "needs attention" filter shows: offline, stale, open observations, help requests."""
    return seat["state"] in ATTENTION_STATES or bool(seat.get("obs")) or bool(seat.get("help"))


def seat_sort_key(seat: Mapping[str, Any]) -> tuple[Any, ...]:
    """Seat-map order when the hall has one, else by seat label, then student number."""
    if seat.get("r") is None:
        return (2, 0, 0, "", seat.get("agent") or "")
    if seat.get("row") is not None and seat.get("col") is not None:
        return (0, seat["row"], seat["col"], "", "")
    label = str(seat.get("seat") or "")
    return (1, 0, 0, (len(label), label) if label else (1 << 30, ""), seat.get("no") or "")
