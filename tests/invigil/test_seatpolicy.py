"""Tables for the per-seat policy file (invigil/seatpolicy.py): what the server writes, the proxy reads back;
what the proxy refuses, it refuses with every problem named."""

from __future__ import annotations

import json

import pytest

from invigil.policy import PolicyError
from invigil.seatpolicy import (
    SeatPolicyError,
    canonical_address,
    parse_policy_document,
    parse_seat_policy,
    seat_policy_text,
)

EXAMS = {
    3: ("Linear Algebra", False, "allow exam.example.nl\nallow a.example\n"),
    4: ("Biology", True, "allow exam.example.nl\nallow b.example/x/\n"),
}
SEATS = {"10.20.0.57": 3, "::ffff:10.20.0.58": 4, "2001:DB8::1": 4}


def document(**changes) -> str:
    base = json.loads(seat_policy_text(EXAMS, SEATS, "2026-01-20T09:00:00.000Z"))
    base.update(changes)
    return json.dumps(base)


def test_what_the_server_writes_the_proxy_reads_back():
    published = parse_seat_policy(seat_policy_text(EXAMS, SEATS, "2026-01-20T09:00:00.000Z"))
    assert dict(published.seats) == {"10.20.0.57": 3, "10.20.0.58": 4, "2001:db8::1": 4}
    assert published.written_at == "2026-01-20T09:00:00.000Z"
    # A line both exams hold is no problem: each policy is parsed on its own.
    algebra, biology = published.exams[3], published.exams[4]
    assert (algebra.title, algebra.intercept, biology.title, biology.intercept) == (
        "Linear Algebra",
        False,
        "Biology",
        True,
    )
    assert published.policy_for("10.20.0.57").decide_host("a.example").allowed
    assert not published.policy_for("10.20.0.57").decide_host("b.example").allowed
    assert published.policy_for("10.20.0.58").decide_host("b.example").allowed
    assert published.summary() == "2 exam(s), 3 seat(s), 4 rule(s)"


@pytest.mark.parametrize(
    ("address", "exam_id"),
    [
        ("10.20.0.57", 3),
        ("::ffff:10.20.0.57", 3),  # a dual-stack listener's spelling of the same laptop
        ("[2001:db8::1]", 4),
        ("2001:db8:0::1", 4),
        ("10.20.0.59", None),  # in no running exam
        ("", None),
        ("not an address", None),
        ("exam.example.nl", None),  # a name is never a seat
    ],
)
def test_exam_of_an_address(address, exam_id):
    published = parse_seat_policy(document())
    exam = published.exam_of(address)
    assert (exam.exam_id if exam else None) == exam_id
    if exam_id is None:
        assert published.policy_for(address).rules == ()  # the not-enrolled policy: nothing allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "not valid JSON"),
        ("[]", "the file must hold a JSON object"),
        ('{"exams": {}, "seats": {}}', "version None is not 1"),
        ('{"version": 2, "exams": {}, "seats": {}}', "version 2 is not 1"),
        ('{"version": 1, "exams": [], "seats": {}}', "exams must be an object"),
        ('{"version": 1, "exams": {}, "seats": []}', "seats must be an object"),
        ('{"version": 1, "exams": {"x": {}}, "seats": {}}', "exam id 'x' is not a number"),
        ('{"version": 1, "exams": {"1": "allow a.example"}, "seats": {}}', "exam 1: must be an object"),
        (
            '{"version": 1, "exams": {"1": {"title": "t", "intercept": "no", "policy": ""}}, "seats": {}}',
            "exam 1: intercept must be true or false",
        ),
        (
            '{"version": 1, "exams": {"1": {"title": 5, "intercept": false, "policy": ""}}, "seats": {}}',
            "exam 1: title must be text",
        ),
        (
            '{"version": 1, "exams": {"1": {"title": "t", "intercept": false}}, "seats": {}}',
            "exam 1: policy must be the policy's text",
        ),
        (
            '{"version": 1, "exams": {"1": {"title": "t", "intercept": false, '
            '"policy": "allow a.example\\nallow A.example.\\nalow b"}}, "seats": {}}',
            "exam 1: line 2: duplicate of line 1",
        ),
        (
            '{"version": 1, "exams": {"1": {"title": "t", "intercept": false, '
            '"policy": "allow a.example\\nallow A.example.\\nalow b"}}, "seats": {}}',
            "exam 1: line 3: unknown action 'alow'",
        ),
        (
            '{"version": 1, "exams": {}, "seats": {"10.0.0.5": "9"}}',
            "seat 10.0.0.5: exam 9 is not in the file",
        ),
        ('{"version": 1, "exams": {}, "seats": {"a.example": "9"}}', "is not an IP address"),
        ('{"version": 1, "exams": {}, "seats": {"10.0.0.5": 9}}', "seat 10.0.0.5: exam id 9 is not a number"),
        (
            '{"version": 1, "exams": {"1": {"title": "t", "intercept": false, "policy": ""}}, '
            '"seats": {"10.0.0.5": "1", "::ffff:10.0.0.5": "1"}}',
            "seat 10.0.0.5: listed twice",
        ),
    ],
)
def test_bad_files_are_refused_naming_the_problem(text, expected):
    with pytest.raises(SeatPolicyError) as refused:
        parse_seat_policy(text)
    assert expected in str(refused.value)


def test_every_problem_is_named_at_once_and_a_seat_of_a_bad_exam_adds_none():
    text = (
        '{"version": 1, "exams": {"1": {"title": "t", "intercept": false, "policy": "alow a"}, '
        '"2": {"title": "t", "intercept": 1, "policy": ""}}, "seats": {"10.0.0.5": "1", "x": "2"}}'
    )
    with pytest.raises(SeatPolicyError) as refused:
        parse_seat_policy(text)
    assert refused.value.problems == (
        "exam 1: line 1: unknown action 'alow'; start the line with 'allow' or 'block'",
        "exam 2: intercept must be true or false",
        "seat 'x': 'x' is not an IP address",
    )


def test_the_server_never_writes_what_the_proxy_would_refuse():
    with pytest.raises(SeatPolicyError, match="exam 3: line 2: duplicate of line 1"):
        seat_policy_text({3: ("t", False, "allow a.example\nallow a.example\n")}, {}, "")
    with pytest.raises(SeatPolicyError, match="exam 5 is not in the file"):
        seat_policy_text({}, {"10.0.0.5": 5}, "")


def test_a_title_is_written_printable():
    text = seat_policy_text({1: ("A\nallow evil.example\u2028\x00", False, "")}, {}, "")
    assert parse_seat_policy(text).exams[1].title == "A allow evil.example  "


@pytest.mark.parametrize(
    "text",
    ["allow exam.example.nl\n", "", "# nothing allowed\n", "\ufeffallow exam.example.nl\r\n"],
)
def test_a_plain_policy_is_one_policy_for_every_seat(text):
    document_ = parse_policy_document(text)
    assert document_.single is not None
    assert document_.policy_for("10.0.0.5") is document_.single
    assert document_.policy_for("anything") is document_.single


def test_a_bad_plain_policy_is_refused_with_its_lines():
    with pytest.raises(PolicyError, match="line 1: unknown action 'alow'"):
        parse_policy_document("alow exam.example.nl\n")


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("::ffff:10.0.0.5", "10.0.0.5"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_canonical_address(address, canonical):
    assert canonical_address(address) == canonical


@pytest.mark.parametrize("address", ["", "exam.example.nl", "10.0.0.256x"])
def test_canonical_address_refuses_what_is_no_address(address):
    with pytest.raises(ValueError):
        canonical_address(address)
