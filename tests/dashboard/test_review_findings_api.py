"""Findings over the reviewer API with real people: two reviewers and an exam-board member, each logged in
on their own Flask test client. Raising a suspicion and clearing a confirmed one both take two people, and
a finding names only an observation of its own session."""

from __future__ import annotations

from datetime import timedelta

import pytest
import reviewclients
import reviewexam

from invigil.payloads import SiteEvent
from invigil.timeutil import from_wire, to_wire

from reviewseed import post_site_events

review_template = reviewexam.review_template  # fixtures, shared with the other review tests
review_app = reviewclients.review_app


@pytest.fixture(scope="module")
def people(review_app):
    users = review_app.setup.users
    return {
        "rita": review_app.staff(users[("reviewer", "a")]),
        "rob": review_app.staff("reviewer_a2"),
        "bea": review_app.staff(users[("exam_board", "a")]),
    }


def _exam_url(review_app) -> str:
    return f"/dashboard/review/exams/{review_app.setup.exam_a}"


def _finding(person, review_app, student: str, finding_id: int) -> dict:
    answer = person.get(f"{_exam_url(review_app)}/students/{student}/timeline.json")
    assert answer.status_code == 200
    [found] = [
        f for f in answer.get_json()["findings"] if finding_id in (f["id"], (f["pending"] or {}).get("id"))
    ]
    return found


def test_clearing_a_confirmed_suspicion_takes_a_second_reviewer(review_app, people):
    rita, rob, bea = people["rita"], people["rob"], people["bea"]
    session_id = review_app.session_of("s0002")
    [(observation_id, at)] = review_app.query(
        "SELECT id, at FROM observation WHERE session_id = ? ORDER BY at LIMIT 1", [session_id]
    )
    findings_url = f"{_exam_url(review_app)}/sessions/{session_id}/findings"
    raised = rita.post(
        findings_url,
        {
            "kind": "suspected_irregularity",
            "start": at,
            "text": "chat site open",
            "observation_id": observation_id,
        },
    )
    assert raised.status_code == 201 and raised.get_json()["pending"] is False
    suspicion = raised.get_json()["id"]
    assert bea.post(f"{findings_url}/{suspicion}/confirm", {"text": "agreed"}).status_code == 201

    proposed = rob.post(
        findings_url,
        {"kind": "no_irregularity", "start": at, "text": "the exam's own help chat", "supersedes": suspicion},
    )
    assert proposed.status_code == 201 and proposed.get_json()["pending"] is True
    proposal = proposed.get_json()["id"]
    seen_by_rob = _finding(rob, review_app, "s0002", suspicion)
    assert seen_by_rob["id"] == suspicion and seen_by_rob["counts"]  # still a confirmed suspicion
    assert seen_by_rob["label"] == f"suspected (confirmed by {bea.username})"
    pending = seen_by_rob["pending"]
    assert (
        pending["id"] == proposal
        and pending["kind"] == "no_irregularity"
        and pending["author"] == rob.username
    )
    assert pending["mine"] and not pending["may_confirm"] and "awaiting a second person" in pending["status"]
    assert (
        not seen_by_rob["mine"] and not seen_by_rob["may_confirm"] and not seen_by_rob["may_propose_clearing"]
    )

    own = rob.post(f"{findings_url}/{proposal}/confirm", {})
    assert own.status_code == 409 and "second person" in own.get_json()["error"]["message"]
    second = rob.post(findings_url, {"kind": "note", "start": at, "supersedes": suspicion})
    assert second.status_code == 409 and f"proposal {proposal}" in second.get_json()["error"]["message"]
    assert _finding(rita, review_app, "s0002", suspicion)["pending"]["may_confirm"]

    assert rita.post(f"{findings_url}/{proposal}/confirm", {"text": "yes"}).status_code == 201
    cleared = _finding(bea, review_app, "s0002", proposal)
    assert cleared["id"] == proposal and cleared["kind"] == "no_irregularity" and cleared["pending"] is None
    assert [h["id"] for h in cleared["history"]] == [suspicion]
    assert [c["author"] for c in cleared["confirmations"]] == [rita.username]
    assert cleared["label"] == f"no irregularity (confirmed by {rita.username})"
    kinds = review_app.query("SELECT kind FROM annotation WHERE session_id = ? ORDER BY id", [session_id])
    assert kinds == [("suspected_irregularity",), ("confirmation",), ("no_irregularity",), ("confirmation",)]


def test_withdrawing_a_confirmed_suspicion_is_a_proposal_its_author_may_take_back(review_app, people):
    rita, rob = people["rita"], people["rob"]
    session_id = review_app.session_of("s0003")
    findings_url = f"{_exam_url(review_app)}/sessions/{session_id}/findings"
    [(start,)] = review_app.query("SELECT enrolled_at FROM agent_session WHERE id = ?", [session_id])
    suspicion = rob.post(findings_url, {"kind": "suspected_irregularity", "start": start}).get_json()["id"]
    assert rita.post(f"{findings_url}/{suspicion}/confirm", {}).status_code == 201
    withdrawal = rob.post(f"{findings_url}/{suspicion}/withdraw", {"text": "wrong student"})
    assert withdrawal.status_code == 201 and withdrawal.get_json()["pending"] is True
    found = _finding(rita, review_app, "s0003", suspicion)
    assert found["pending"]["kind"] == "withdrawn" and found["pending"]["may_confirm"]
    taken_back = rob.post(
        f"{findings_url}/{withdrawal.get_json()['id']}/withdraw", {"text": "no, right student"}
    )
    assert taken_back.status_code == 201 and taken_back.get_json()["pending"] is False
    found = _finding(rita, review_app, "s0003", suspicion)
    assert found["pending"] is None and found["counts"]


def test_a_finding_names_only_an_observation_of_its_own_session(review_app, people):
    rita = people["rita"]
    setup = review_app.setup
    [(b_session, enrolled)] = review_app.query(
        "SELECT id, enrolled_at FROM agent_session WHERE exam_id = ?", [setup.exam_b]
    )
    client = review_app.app.test_client()
    moment = to_wire(from_wire(enrolled) + timedelta(minutes=3))
    blocked = SiteEvent(
        "px-b0001-x1", from_wire(moment), "10.0.1.11", "chat.example.org", "blocked", "proxy", ""
    )
    post_site_events(client, [blocked])
    [(foreign,)] = review_app.query(
        "SELECT id FROM observation WHERE session_id = ? AND kind = 'blocked_site'", [b_session]
    )
    session_id = review_app.session_of("s0005")
    [(other_student,)] = review_app.query(
        "SELECT o.id FROM observation o JOIN agent_session s ON s.id = o.session_id JOIN roster r "
        "ON r.id = s.roster_id WHERE r.student_number = 's0002' LIMIT 1"
    )
    findings_url = f"{_exam_url(review_app)}/sessions/{session_id}/findings"
    before = review_app.query("SELECT COUNT(*) FROM annotation")
    finding = {"kind": "no_irregularity", "start": moment}
    for observation_id in (foreign, other_student):
        refused = rita.post(findings_url, {**finding, "observation_id": observation_id})
        assert refused.status_code == 409
        assert (
            f"observation {observation_id} is not an observation of this session"
            in (refused.get_json()["error"]["message"])
        )
    for name, value in (("observation_id", "12"), ("observation_id", True), ("supersedes", 1.5)):
        bad = rita.post(findings_url, {**finding, name: value})
        assert bad.status_code == 400 and name in bad.get_json()["error"]["message"], (name, value)
    broken = rita.post(findings_url, {**finding, "text": "\ud800"})  # JSON may carry a lone surrogate
    assert broken.status_code == 409 and "not valid Unicode" in broken.get_json()["error"]["message"]
    assert review_app.query("SELECT COUNT(*) FROM annotation") == before  # nothing stored
