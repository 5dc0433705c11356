"""The seat-state merge of roster, enrolment and mDNS discovery (pure), and the hall summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hall_server.live.bus import hall_summary
from hall_server.live.seatstate import SessionFacts, Thresholds, merge_seats, needs_attention, seat_state

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
T = Thresholds(stale_intervals=2, offline_s=60)


def facts(
    silent_s: float, state: str = "capturing", ended: bool = False, agent: str = "agent-1"
) -> SessionFacts:
    return SessionFacts(1, agent, NOW - timedelta(seconds=silent_s), state, NOW if ended else None)


@pytest.mark.parametrize(
    ("session", "discovered", "expected"),
    [
        (None, {}, "expected"),
        (None, {"agent-1": True}, "expected"),  # a laptop on mDNS is not tied to a seat before enrolment
        (facts(3), {}, "live"),
        (facts(10), {}, "live"),  # exactly 2 intervals of 5 s: not yet stale
        (facts(11), {}, "stale"),
        (facts(11), {"agent-1": True}, "stale"),
        (facts(11), {"agent-1": False}, "offline"),  # mDNS saw the laptop go
        (facts(3), {"agent-1": False}, "live"),  # heartbeats win over a lost multicast packet
        (facts(61), {}, "offline"),
        (facts(3, state="left"), {}, "left"),
        (facts(300, ended=True), {}, "left"),
    ],
)
def test_seat_state(session, discovered, expected):
    assert seat_state(session, discovered, NOW, 5, T) == expected


def test_a_long_capture_interval_stretches_stale_before_offline():
    assert seat_state(facts(100), {}, NOW, 60, T) == "live"
    assert seat_state(facts(121), {}, NOW, 60, T) == "offline"


def test_merge_adds_unenrolled_laptops_and_works_from_enrolment_alone():
    roster = [{"r": 1, "no": "s1"}, {"r": 2, "no": "s2"}]
    sessions = {1: facts(2, agent="agent-a")}
    seats = merge_seats(roster, sessions, {"agent-a": True, "agent-x": True, "agent-gone": False}, NOW, 5, T)
    assert [(s["r"], s.get("agent"), s["state"]) for s in seats] == [
        (1, None, "live"),
        (2, None, "expected"),
        (None, "agent-x", "present_not_enrolled"),
    ]
    without_mdns = merge_seats(roster, sessions, {}, NOW, 5, T)
    assert [s["state"] for s in without_mdns] == ["live", "expected"]


def test_needs_attention_and_summary():
    assert needs_attention({"state": "stale"}) and needs_attention({"state": "live", "help": True})
    assert not needs_attention({"state": "live", "obs": 0})
    seats = [{"state": "live", "sid": 1}, {"state": "expected", "sid": None}]
    assert hall_summary(seats, None)["note"].startswith("discovery off")
    filtered = hall_summary(seats, {"agents_seen": 0})
    assert "mDNS filtered" in filtered["note"]
    assert hall_summary(seats, {"agents_seen": 3})["note"] is None
    assert filtered["counts"] == {"expected": 1, "live": 1}
