"""The capture-gap decision (pure): when a silent seat raises ``capture_gap``, and what its closed detail
says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hall_server.ingest import rules

SINCE = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)
END = SINCE + timedelta(hours=2)


@pytest.mark.parametrize(
    ("setting_s", "interval_s", "gap_s"),
    [
        (0, 5, 15.0),  # the default: 3 capture intervals of the exam
        (0, 1, 3.0),
        (0, 60, 180.0),
        (40, 5, 40.0),  # the setting, when given, whatever the interval
        (2.5, 60, 2.5),
    ],
)
def test_how_long_a_seat_may_be_silent(setting_s, interval_s, gap_s):
    assert rules.capture_gap_s(setting_s, interval_s) == gap_s


@pytest.mark.parametrize(
    ("silent_s", "left", "ends_at", "raised"),
    [
        (14, False, END, False),  # within 3 intervals of 5 s
        (15, False, END, False),  # exactly the limit is not yet a gap
        (16, False, END, True),
        (3600, False, END, True),
        (16, True, END, False),  # the student left: no gap, however long
        (16, False, SINCE + timedelta(seconds=16), False),  # the exam is over for the student now
        (16, False, SINCE + timedelta(seconds=10), False),  # ... and was before
        (16, False, SINCE + timedelta(seconds=17), True),  # extra time still running
    ],
)
def test_a_silent_seat_raises_a_gap_only_while_its_exam_runs(silent_s, left, ends_at, raised):
    now = SINCE + timedelta(seconds=silent_s)
    found = rules.capture_gap(since=SINCE, now=now, gap_s=15.0, left=left, ends_at=ends_at)
    if raised:
        assert found == ("capture_gap", {"since": "2026-06-01T09:00:00.000Z"})
    else:
        assert found is None


@pytest.mark.parametrize(
    ("until_s", "resumed", "seconds"),
    [(42, True, 42), (42.6, True, 43), (90, False, 90), (0, True, 0)],
)
def test_a_closed_gap_says_until_when_and_how_long(until_s, resumed, seconds):
    detail = {"since": "2026-06-01T09:00:00.000Z"}
    until = SINCE + timedelta(seconds=until_s)
    closed = rules.closed_gap(detail, SINCE, until, resumed)
    assert closed == {
        "since": "2026-06-01T09:00:00.000Z",
        "until": until.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "seconds": seconds,
        "resumed": resumed,
    }
    assert detail == {"since": "2026-06-01T09:00:00.000Z"}  # the open detail is not changed in place
