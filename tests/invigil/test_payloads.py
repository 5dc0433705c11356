"""The wire contract's validation: one table per payload, each bad case naming its problem."""

from __future__ import annotations

import json

import pytest

from invigil import payloads
from invigil.protocol import ProtocolError
from invigil.timeutil import from_wire, to_wire, utc_now

NOW = to_wire(utc_now())
SHA = "ab" * 32


def meta(**changes):
    base = {"monitor": 0, "agent_time": NOW, "sha256": SHA, "width": 1920, "height": 1080}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_meta"),
        ("{", "bad_json"),
        ("[]", "not_an_object"),
        (meta(sha256="AB" * 32), "bad_sha256"),
        (meta(sha256="ab"), "bad_sha256"),
        (meta(monitor=16), "out_of_range"),
        (meta(monitor=True), "bad_type"),
        (meta(width=0), "out_of_range"),
        (meta(height=100_000), "out_of_range"),
        (meta(agent_time="2026-11-23T10:00:00"), "bad_time"),
        (meta(agent_time="yesterday"), "bad_time"),
        (meta(agent_time=...), "missing_field"),
        (meta(trigger="keystroke"), "bad_value"),
        (meta(window_title="x" * 600), "too_long"),
        (meta(window_title="a\x00b"), "bad_value"),
        (meta(extra=1), "unknown_field"),
        ("x" * 5000, "too_long"),
    ],
)
def test_bad_capture_meta_is_refused_by_name(header, code):
    with pytest.raises(ProtocolError) as caught:
        payloads.parse_capture_meta(header)
    assert caught.value.code == code


def test_capture_meta_round_trips_unicode_titles_as_ascii_header():
    original = payloads.CaptureMeta(1, utc_now(), SHA, 800, 600, "focus", "Firefox", "Tentamen – Vraag 3 ✓")
    header = original.as_header()
    assert header.isascii()
    parsed = payloads.parse_capture_meta(header)
    assert parsed.window_title == "Tentamen – Vraag 3 ✓"
    assert abs((parsed.agent_time - original.agent_time).total_seconds()) < 0.001


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("cap-00000001", True),
        ("A_b-12345678", True),
        ("short", False),
        ("../../etc/passwd", False),
        ("..%2f..%2f", False),
        ("a" * 65, False),
        ("caf\u00e9-0001", False),
        ("dot.ted.id", False),
        (12345678, False),
    ],
)
def test_ids_can_never_be_paths(value, ok):
    if ok:
        assert payloads.check_id(value) == value
    else:
        with pytest.raises(ProtocolError):
            payloads.check_id(value)


def test_enrolment_normalises_join_code_as_students_type_it():
    parsed = payloads.parse_enrolment(
        {"student_number": " s0001 ", "join_code": "abcd-23 45", "agent_id": "agent-0001", "agent_time": NOW}
    )
    assert (parsed.student_number, parsed.join_code) == ("s0001", "ABCD2345")


def test_device_event_batch_names_the_bad_item():
    good = {"id": "ev-0000001", "kind": "help_request", "agent_time": NOW}
    with pytest.raises(ProtocolError) as caught:
        payloads.parse_device_events({"events": [good, {**good, "id": "ev-0000002", "kind": "keylog"}]})
    assert caught.value.message.startswith("events[1]:")
    with pytest.raises(ProtocolError) as caught:
        payloads.parse_device_events({"events": [good, good]})
    assert caught.value.code == "duplicate_id"
    with pytest.raises(ProtocolError):
        payloads.parse_device_events({"events": [{**good, "detail": {"x": "y" * 5000}}]})


@pytest.mark.parametrize(
    ("ip", "ok"), [("10.0.0.5", True), ("fe80::1", True), ("10.0.0.300", False), ("example.nl", False)]
)
def test_site_events_need_a_real_client_address(ip, ok):
    event = {
        "id": "site-000001",
        "time": NOW,
        "client_ip": ip,
        "host": "Exam.Example.NL",
        "decision": "blocked",
        "source": "proxy",
    }
    if ok:
        [parsed] = payloads.parse_site_events({"events": [event]})
        assert parsed.host == "exam.example.nl"
    else:
        with pytest.raises(ProtocolError):
            payloads.parse_site_events({"events": [event]})


def test_wire_time_is_utc_with_offset():
    moment = from_wire("2026-11-23T18:00:00+01:00")
    assert to_wire(moment) == "2026-11-23T17:00:00.000Z"
    with pytest.raises(ValueError):
        from_wire("2026-11-23T18:00:00")
