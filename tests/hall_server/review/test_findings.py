"""Findings: a suspicion counts only once a second person confirms it; nothing is edited in place;
author and time on every entry."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from hall_server.review import findings
from hall_server.store import db
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, add_staff, seed_exam, seed_student
from support import provision_exam


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
    findings.confirm(store, corrected, people["bea"], now)  # it cleared a confirmed suspicion
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == corrected and finding.status == findings.STATUS_NO_IRREGULARITY
    assert [entry.id for entry in finding.history] == [first]
    assert store.execute("SELECT COUNT(*) FROM annotation").fetchone()[0] == 4  # all kept

    with pytest.raises(findings.FindingRefused, match="superseded"):
        findings.confirm(store, first, people["bea"], now)
    with pytest.raises(sqlite3.IntegrityError, match="never edited in place"):
        store.execute("UPDATE annotation SET text = 'nothing' WHERE id = ?", [first])

    findings.withdraw(store, corrected, people["rob"], now, "recorded on the wrong student")
    assert findings.for_session(store, session_id) == []
    actions = [row[0] for row in store.execute("SELECT action FROM audit_log WHERE action LIKE 'finding%'")]
    assert actions == ["finding_recorded"] * 5


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


def _suspicion(store, session_id, author, confirmer, now, text="chat window beside the exam"):
    """A suspected irregularity that counts: recorded by ``author``, confirmed by ``confirmer``."""
    suspected = findings.record(
        store,
        session_id=session_id,
        author_id=author,
        verdict="suspected_irregularity",
        span_start=now - timedelta(minutes=3),
        span_end=now - timedelta(minutes=2),
        text=text,
        now=now,
    )
    findings.confirm(store, suspected, confirmer, now, "agreed")
    return suspected


def test_clearing_a_confirmed_suspicion_needs_a_second_person(review):
    store, people, session_id = review
    now = utc_now()
    suspected = _suspicion(store, session_id, people["rita"], people["bea"], now)
    proposal = findings.record(
        store,
        session_id=session_id,
        author_id=people["rob"],
        verdict="no_irregularity",
        span_start=now - timedelta(minutes=3),
        text="the chat window was the exam's own help chat",
        supersedes=suspected,
        now=now,
    )
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == suspected and finding.counts
    assert finding.status == findings.STATUS_CONFIRMED  # one person cannot clear it
    assert finding.pending is not None and finding.pending.id == proposal
    assert finding.pending.kind == "no_irregularity" and finding.pending.author == "rob"

    with pytest.raises(findings.FindingRefused, match="second person"):
        findings.confirm(store, proposal, people["rob"], now)
    with pytest.raises(findings.FindingRefused, match=f"proposal {proposal}"):
        findings.confirm(store, suspected, people["rob"], now)  # the suspicion itself: not while it waits
    with pytest.raises(findings.FindingRefused, match="reviewer or an exam-board member"):
        findings.confirm(store, proposal, people["ivan"], now)
    with pytest.raises(findings.FindingRefused, match=f"proposal {proposal}"):
        findings.record(
            store,
            session_id=session_id,
            author_id=people["bea"],
            verdict="note",
            span_start=now,
            supersedes=suspected,
            now=now,
        )
    with pytest.raises(findings.FindingRefused, match="waiting for a second person"):
        findings.record(
            store,
            session_id=session_id,
            author_id=people["rob"],
            verdict="no_irregularity",
            span_start=now,
            supersedes=proposal,
            now=now,
        )

    findings.confirm(store, proposal, people["rita"], now + timedelta(minutes=1), "yes, the help chat")
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == proposal and finding.status == findings.STATUS_NO_IRREGULARITY
    assert finding.pending is None and [e.id for e in finding.history] == [suspected]
    assert [(c.author, c.text) for c in finding.confirmations] == [("rita", "yes, the help chat")]
    kinds = [row[0] for row in store.execute("SELECT kind FROM annotation ORDER BY id")]
    assert kinds == ["suspected_irregularity", "confirmation", "no_irregularity", "confirmation"]
    exported = findings.as_json(finding)
    assert exported["status"] == findings.STATUS_NO_IRREGULARITY and exported["pending"] is None


def test_withdrawing_a_confirmed_suspicion_needs_a_second_person(review):
    store, people, session_id = review
    now = utc_now()
    suspected = _suspicion(store, session_id, people["rita"], people["bea"], now)
    withdrawal = findings.withdraw(store, suspected, people["rita"], now, "recorded on the wrong student")
    [finding] = findings.for_session(store, session_id)
    assert finding.status == findings.STATUS_CONFIRMED
    assert finding.pending is not None and finding.pending.id == withdrawal
    assert findings.as_json(finding)["pending"]["kind"] == "withdrawn"
    with pytest.raises(findings.FindingRefused, match="second person"):
        findings.confirm(store, withdrawal, people["rita"], now)
    findings.confirm(store, withdrawal, people["rob"], now)
    assert findings.for_session(store, session_id) == []


def test_a_proposal_is_withdrawn_by_its_author_only_and_the_suspicion_stands(review):
    store, people, session_id = review
    now = utc_now()
    suspected = _suspicion(store, session_id, people["rita"], people["bea"], now)
    proposal = findings.record(
        store,
        session_id=session_id,
        author_id=people["rob"],
        verdict="no_irregularity",
        span_start=now,
        supersedes=suspected,
        now=now,
    )
    with pytest.raises(findings.FindingRefused, match="only its author"):
        findings.withdraw(store, proposal, people["rita"], now, "not yours")
    with pytest.raises(findings.FindingRefused, match=f"proposal {proposal}"):
        findings.withdraw(store, suspected, people["rita"], now, "while a proposal waits")
    findings.withdraw(store, proposal, people["rob"], now, "I misread the window title")
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == suspected and finding.counts and finding.pending is None
    with pytest.raises(findings.FindingRefused, match="no proposal|no finding"):
        findings.confirm(store, proposal, people["rita"], now)  # a withdrawn proposal is gone
    again = findings.record(
        store,
        session_id=session_id,
        author_id=people["bea"],
        verdict="suspected_irregularity",
        span_start=now - timedelta(minutes=4),
        span_end=now - timedelta(minutes=2),
        text="a longer span",
        supersedes=suspected,
        now=now,
    )
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == suspected and finding.pending.id == again  # a correction waits too
    findings.confirm(store, again, people["rob"], now)
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == again and finding.counts and finding.status == findings.STATUS_CONFIRMED


def test_an_unconfirmed_suspicion_is_corrected_at_once(review):
    store, people, session_id = review
    now = utc_now()
    suspected = findings.record(
        store,
        session_id=session_id,
        author_id=people["rita"],
        verdict="suspected_irregularity",
        span_start=now,
        now=now,
    )
    corrected = findings.record(
        store,
        session_id=session_id,
        author_id=people["rob"],
        verdict="no_irregularity",
        span_start=now,
        supersedes=suspected,
        now=now,
    )
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == corrected and finding.pending is None  # it never counted


def test_a_finding_names_only_an_observation_of_its_own_session(review, client, exam):
    store, people, session_id = review
    other_exam = provision_exam(
        exam.data_dir, students=1, join_code="HALLB234", title="Organic Chemistry", hall="Hall B"
    )
    seed_student(FlaskHall(client, "10.0.1.11"), client, other_exam, "s0001", "10.0.1.11", changes=2)
    other = store.execute("SELECT id FROM observation WHERE exam_id = ?", [other_exam.exam_id]).fetchone()[0]
    own = store.execute("SELECT id FROM observation WHERE session_id = ?", [session_id]).fetchone()[0]
    before = store.execute("SELECT COUNT(*) FROM annotation").fetchone()[0]
    for observation_id, message in (
        (other, "not an observation of this session"),
        (987654, "no observation"),
    ):
        with pytest.raises(findings.FindingRefused, match=message):
            findings.record(
                store,
                session_id=session_id,
                author_id=people["rita"],
                verdict="no_irregularity",
                span_start=utc_now(),
                observation_id=observation_id,
                now=utc_now(),
            )
    assert store.execute("SELECT COUNT(*) FROM annotation").fetchone()[0] == before  # nothing stored
    named = findings.record(
        store,
        session_id=session_id,
        author_id=people["rita"],
        verdict="no_irregularity",
        span_start=utc_now(),
        observation_id=own,
        now=utc_now(),
    )
    [finding] = findings.for_session(store, session_id)
    assert finding.current.id == named and finding.current.observation_id == own
