"""Rules raise observations (signals for people), never verdicts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hall_server.ingest import rules
from hall_server.ingest.sessions import add_observation
from hall_server.store import db
from hall_server.store.db import write_transaction
from invigil.payloads import DeviceEvent, SiteEvent
from invigil.protocol import OBSERVATION_KINDS
from invigil.timeutil import utc_now

NOW = utc_now()
END = NOW + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("kind", "detail", "expected"),
    [
        ("monitors", {"count": 1}, []),
        ("monitors", {"count": 2}, ["second_monitor"]),
        ("network_interface", {"category": "vpn", "names": ["wg0"]}, ["vpn_interface"]),
        ("network_interface", {"category": "ethernet"}, []),
        (
            "network_interface",
            {"category": "tethering", "count": 1, "state": "present"},
            ["second_network_path"],
        ),
        ("network_interface", {"category": "mobile", "count": 1}, ["second_network_path"]),
        ("network_interface", {"category": "second_path", "count": 0, "state": "ended"}, []),
        ("process_category", {"category": "remote_access", "names": ["anydesk"]}, ["remote_tool"]),
        ("process_category", {"category": "virtual_machine"}, ["remote_tool"]),
        ("process_category", {"category": "messaging"}, []),
        ("help_request", {}, ["help_request"]),
        ("left", {}, ["left_early"]),
        ("agent_started", {}, []),
        ("network_interface", {"category": "vpn", "names": [], "state": "ended"}, []),
        ("process_category", {"category": "remote_access", "names": [], "state": "ended"}, []),
    ],
)
def test_device_event_rules(kind, detail, expected):
    event = DeviceEvent("ev-0000001", kind, NOW, detail)
    assert [kind for kind, _ in rules.observations_for_device_event(event, END)] == expected


def test_leaving_after_the_students_own_end_is_not_early():
    event = DeviceEvent("ev-0000001", "left", END + timedelta(seconds=1))
    assert rules.observations_for_device_event(event, END) == []
    assert rules.observations_for_device_event(event, END, END + timedelta(seconds=2)) == []


def test_a_clock_set_late_cannot_hide_an_early_leave():
    """The agent claims it left after its end; the server got the event 20 minutes before it."""
    event = DeviceEvent("ev-0000001", "left", END + timedelta(minutes=5))
    assert rules.observations_for_device_event(event, END, END - timedelta(minutes=20)) == [
        ("left_early", {"minutes_early": 20})
    ]


@pytest.mark.parametrize(
    ("decision", "source", "expected"),
    [
        ("allowed", "proxy", []),
        ("blocked", "proxy", ["blocked_site"]),
        ("blocked", "sentinel", ["bypass_site"]),
    ],
)
def test_site_event_rules(decision, source, expected):
    event = SiteEvent("site-000001", NOW, "10.0.0.5", "chat.example", decision, source)
    assert [kind for kind, _ in rules.observations_for_site_event(event)] == expected


def test_clock_skew_bound():
    assert rules.clock_skew(NOW + timedelta(seconds=29), NOW, 30) is None
    assert rules.clock_skew(NOW - timedelta(seconds=31), NOW, 30) == ("clock_skew", {"skew_s": -31.0})


ENROLLED = NOW - timedelta(minutes=20)


@pytest.mark.parametrize(
    ("dated", "expected"),
    [
        (NOW, None),
        (NOW + timedelta(seconds=30), None),
        (NOW + timedelta(seconds=31), {"skew_s": 31.0, "dated": "ahead_of_receipt"}),
        (NOW - timedelta(minutes=19), None),  # sent late from the spool: no skew
        (ENROLLED - timedelta(seconds=30), None),
        (ENROLLED - timedelta(seconds=45), {"skew_s": -45.0, "dated": "before_enrolment"}),
        (NOW + timedelta(days=365 * 73), {"skew_s": 2302128000.0, "dated": "ahead_of_receipt"}),
    ],
)
def test_a_record_the_agent_dated_is_skew_outside_enrolment_to_receipt(dated, expected):
    observation = rules.record_clock_skew(dated, NOW, ENROLLED, 30)
    assert observation == (("clock_skew", expected) if expected else None)


def test_an_observation_outside_the_wire_contract_is_refused(exam):
    """Every kind stored is one the dashboard labels (``invigil.protocol.OBSERVATION_KINDS``)."""
    store = db.connect(exam.data_dir)
    try:
        with write_transaction(store):
            assert add_observation(store, exam.exam_id, None, OBSERVATION_KINDS[0], NOW, {}) > 0
        with pytest.raises(ValueError, match="not an observation kind"), write_transaction(store):
            add_observation(store, exam.exam_id, None, "suspicious", NOW, {})
        assert store.execute("SELECT kind FROM observation").fetchall() == [(OBSERVATION_KINDS[0],)]
    finally:
        store.close()
