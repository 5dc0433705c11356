"""The pure parts of the reviewer's overview: which observations a verdict covers, how search hits are
grouped into runs, and notes beside findings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hall_server.review import findings
from hall_server.review.reports import overview
from invigil.timeutil import to_wire

T0 = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)


def _entry(
    entry_id: int, kind: str, start_min: float, end_min: float | None = None, **extra
) -> findings.Entry:
    values = {
        "id": entry_id,
        "exam_id": 1,
        "session_id": 1,
        "author_id": 7,
        "author": "rita",
        "created_at": to_wire(T0),
        "span_start": to_wire(T0 + timedelta(minutes=start_min)),
        "span_end": to_wire(T0 + timedelta(minutes=end_min)) if end_min is not None else None,
        "kind": kind,
        "text": "",
        "supersedes": None,
        "confirms": None,
        "observation_id": None,
        **extra,
    }
    return findings.Entry(**values)


OBSERVATIONS = [
    (1, T0 + timedelta(minutes=10)),
    (2, T0 + timedelta(minutes=20)),
    (3, T0 + timedelta(minutes=30)),
]


@pytest.mark.parametrize(
    ("entries", "open_ids"),
    [
        ([], {1, 2, 3}),
        ([_entry(10, "no_irregularity", 9, 21)], {3}),  # a span covers two
        ([_entry(10, "suspected_irregularity", 10, None, text="x")], {2, 3}),  # a moment at the observation
        ([_entry(10, "no_irregularity", 10.05)], {2, 3}),  # within one capture interval (5 s)
        ([_entry(10, "no_irregularity", 11)], {1, 2, 3}),  # a minute off: not this one
        ([_entry(10, "no_irregularity", 0, observation_id=3)], {1, 2}),  # names it
        ([_entry(10, "note", 0, 60)], {1, 2, 3}),  # a note is not a verdict
        ([_entry(10, "no_irregularity", 0, 60), _entry(11, "withdrawn", 0, supersedes=10)], {1, 2, 3}),
    ],
)
def test_an_observation_is_reviewed_once_a_current_verdict_covers_it(entries, open_ids):
    resolved = findings.resolve(entries)
    assert overview.unreviewed(OBSERVATIONS, resolved, timedelta(seconds=5)) == open_ids


def test_a_note_stands_beside_the_findings_and_never_counts():
    [note] = findings.resolve([_entry(10, "note", 5, 6, text="looked away for a minute")])
    assert note.status == findings.STATUS_NOTE and not note.counts


def test_search_hits_group_runs_per_student_and_split_after_a_pause():
    rows = [
        ("s1", "Ann", 1, to_wire(T0), "chat.example.com"),
        ("s1", "Ann", 1, to_wire(T0 + timedelta(minutes=2)), "chat.example.com"),
        ("s1", "Ann", 1, to_wire(T0 + timedelta(minutes=40)), "chat.example.com"),
        ("s2", "Bob", 2, to_wire(T0 + timedelta(minutes=3)), "chat.example.com"),
    ]
    hits = overview._runs(rows, "site", lambda row: (row[4], "blocked"))
    assert [(hit.student_number, hit.count) for hit in hits] == [("s1", 2), ("s1", 1), ("s2", 1)]
    assert hits[0].until == rows[1][3]
