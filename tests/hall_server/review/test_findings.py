"""Findings: a suspicion counts only once a second person confirms it; nothing is edited in place;
author and time on every entry."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from hall_server.review import findings
from hall_server.store import db
from invigil.timeutil import utc_now

from reviewseed import add_staff, seed_exam


@pytest.fixture
def review(exam, client):
    seed_exam(client, exam, students=1, changes=2)
    store = db.connect(exam.data_dir)
    people = {
        name: add_staff(store, name, role)
        for name, role in (
            ("rita", "reviewer"),
            ("rob", "reviewer"),
            ("bea", "exam_board"),
            ("ivan", "invigilator"),
        )
    }
    session_id = store.execute("SELECT id FROM agent_session").fetchone()[0]
    return store, people, session_id


def test_a_suspicion_counts_only_once_a_second_person_confirms_it(review):
    store, people, session_id = review
    now = utc_now()
    suspected = findings.record(
        store,
        session_id=session_id,
        author_id=people["rita"],
        verdict="suspected_irregularity",
        span_start=now - timedelta(minutes=3),
        span_end=now - timedelta(minutes=2),
        text="chat window next to the exam",
        now=now,
    )
    [finding] = findings.for_session(store, session_id)
    assert not finding.counts and finding.status == findings.STATUS_AWAITING

    with pytest.raises(findings.FindingRefused, match="second person"):
        findings.confirm(store, suspected, people["rita"], now)
    with pytest.raises(findings.FindingRefused, match="reviewer or an exam-board member"):
        findings.confirm(store, suspected, people["ivan"], now)

    findings.confirm(store, suspected, people["bea"], now + timedelta(minutes=1), "agreed")
    [finding] = findings.for_session(store, session_id)
    assert finding.counts and finding.status == findings.STATUS_CONFIRMED
    assert [(c.author, c.text) for c in finding.confirmations] == [("bea", "agreed")]
    assert finding.current.author == "rita" and finding.current.created_at.endswith("Z")
    with pytest.raises(findings.FindingRefused, match="already confirmed"):
        findings.confirm(store, suspected, people["bea"], now)


def test_corrections_are_new_entries_and_nothing_is_edited_in_place(review):
    store, people, session_id = review
    now = utc_now()
    first = findings.record(
        store,
        session_id=session_id,
        author_id=people["rob"],
        verdict="suspected_irregularity",
        span_start=now,
        text="second monitor",
        now=now,
    )
    findings.confirm(store, first, people["rita"], now)
    corrected = findings.record(
        store,
        session_id=session_id,
        author_id=people["rob"],
        verdict="no_irregularity",
        span_start=now,
        text="the second monitor was the hall's projector feed",
        supersedes=first,
        now=now,
    )
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == corrected and finding.status == findings.STATUS_NO_IRREGULARITY
    assert [entry.id for entry in finding.history] == [first]
    assert store.execute("SELECT COUNT(*) FROM annotation").fetchone()[0] == 3  # all kept

    with pytest.raises(findings.FindingRefused, match="superseded"):
        findings.confirm(store, first, people["bea"], now)
    with pytest.raises(sqlite3.IntegrityError, match="never edited in place"):
        store.execute("UPDATE annotation SET text = 'nothing' WHERE id = ?", [first])

    findings.withdraw(store, corrected, people["rob"], now, "recorded on the wrong student")
    assert findings.for_session(store, session_id) == []
    actions = [row[0] for row in store.execute("SELECT action FROM audit_log WHERE action LIKE 'finding%'")]
    assert actions == ["finding_recorded"] * 4


@pytest.mark.parametrize(
    ("who", "verdict", "message"),
    [
        ("ivan", "no_irregularity", "only a reviewer or an exam-board member"),
        ("rita", "guilty", "a finding is one of"),
    ],
)
def test_refused_findings(review, who, verdict, message):
    store, people, session_id = review
    with pytest.raises(findings.FindingRefused, match=message):
        findings.record(
            store,
            session_id=session_id,
            author_id=people[who],
            verdict=verdict,
            span_start=utc_now(),
            now=utc_now(),
        )
