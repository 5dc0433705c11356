"""Who may open what of the reviewer pages: role × assigned or not × page, JSON, capture, report download
and export, against the real server; allowed capture views and downloads leave audit rows, refused ones
leave none."""

from __future__ import annotations

import re

import pytest
import reviewexam
from reviewexam import PASSWORD, ROLES
from staffclient import staff_session

from hall_server.store import db

review_template = reviewexam.review_template  # fixtures, shared with the other review tests
review_server = reviewexam.review_server

#: (role, exam the user is assigned to) -> may review exam A / is exam board of A / watches A live
REVIEWS = {("reviewer", "a"), ("exam_board", "a")}
BOARD = {("exam_board", "a")}
LIVE = {("organiser", "a"), ("invigilator", "a")}
WHO = [(role, which) for role in ROLES for which in ("a", "b")]


@pytest.fixture(scope="module")
def sessions(review_server):
    setup, server = review_server
    logged_in = {who: staff_session(server.url, setup.users[who], PASSWORD) for who in WHO}
    yield logged_in
    for session in logged_in.values():
        session.close()


@pytest.fixture(scope="module")
def facts(review_server):
    setup, _ = review_server
    store = db.connect(setup.data_dir)
    try:
        sid_a, capture_a = store.execute(
            "SELECT s.id, c.capture_id FROM agent_session s JOIN roster r ON r.id = s.roster_id "
            "JOIN capture c ON c.session_id = s.id AND c.changed = 1 WHERE r.student_number = 's0002' LIMIT 1"
        ).fetchone()
        sid_b, capture_b = store.execute(
            "SELECT s.id, c.capture_id FROM agent_session s JOIN capture c ON c.session_id = s.id "
            "AND c.changed = 1 WHERE s.exam_id = ? LIMIT 1",
            [setup.exam_b],
        ).fetchone()
    finally:
        store.close()
    return {"sid_a": sid_a, "capture_a": capture_a, "sid_b": sid_b, "capture_b": capture_b}


def _urls(setup, facts) -> dict[str, tuple[str, set[tuple[str, str]], int]]:
    """name -> (path, who may, status for a user who may not but reviews the exam)."""
    a = f"/dashboard/review/exams/{setup.exam_a}"
    capture = f"/dashboard/captures/{facts['sid_a']}/{facts['capture_a']}"
    return {
        "overview page": (a, REVIEWS, 404),
        "search JSON": (f"{a}/search.json?q=chat", REVIEWS, 404),
        "student page": (f"{a}/students/s0002", REVIEWS, 404),
        "timeline JSON": (f"{a}/students/s0002/timeline.json", REVIEWS, 404),
        "report HTML": (f"{a}/students/s0002/report.html", REVIEWS, 404),
        "audit page": (f"{a}/audit", BOARD, 403),
        "exam export": (f"{a}/export.zip", BOARD, 403),
        "full capture": (f"{capture}/full", REVIEWS | LIVE, 404),
        "thumbnail batch": (
            f"/dashboard/exams/{setup.exam_a}/thumbs?c={facts['sid_a']}.{facts['capture_a']}",
            REVIEWS | LIVE,
            404,
        ),
        "live hall page": (f"/dashboard/exams/{setup.exam_a}", LIVE, 404),
    }


@pytest.mark.parametrize("who", WHO, ids=lambda who: f"{who[0]}-{who[1]}")
def test_authorization_matrix(review_server, sessions, facts, who):
    setup, server = review_server
    session = sessions[who]
    for name, (path, allowed, refused_reviewer) in _urls(setup, facts).items():
        answer = session.get(server.url + path, allow_redirects=False, timeout=60)
        if who in allowed:
            expected = 200
        elif who in REVIEWS:
            expected = refused_reviewer  # the exam exists for them: a plain "not for your role"
        else:
            expected = 404  # never say whether the exam exists
        assert answer.status_code == expected, f"{who} {name}: {answer.status_code}"
        if expected != 200:
            assert "s0002" not in answer.text and "Student 02" not in answer.text, name


def test_other_exams_students_sessions_and_captures_stay_out_of_reach(review_server, sessions, facts):
    setup, server = review_server
    rita = sessions[("reviewer", "a")]
    a = f"{server.url}/dashboard/review/exams/{setup.exam_a}"
    assert rita.get(f"{a}/students/b0001", timeout=10).status_code == 404
    assert rita.get(f"{a}/students/b0001/timeline.json", timeout=10).status_code == 404
    b_capture = f"{server.url}/dashboard/captures/{facts['sid_b']}/{facts['capture_b']}/full"
    assert rita.get(b_capture, timeout=10).status_code == 404
    batch = rita.get(
        f"{server.url}/dashboard/exams/{setup.exam_a}/thumbs?c={facts['sid_b']}.{facts['capture_b']}"
    )
    assert batch.status_code == 200 and batch.content[:8] == b"%08d" % 2  # "[]": exam B's capture left out
    finding = {"kind": "note", "start": "2026-01-01T10:00:00.000Z", "text": "x"}
    cross = rita.post(f"{a}/sessions/{facts['sid_b']}/findings", json=finding, timeout=10)
    assert cross.status_code == 404
    for who in (("organiser", "a"), ("invigilator", "a"), ("exam_board", "b")):
        refused = sessions[who].post(f"{a}/sessions/{facts['sid_a']}/findings", json=finding, timeout=10)
        assert refused.status_code == 404, who
    no_token = rita.post(
        f"{a}/sessions/{facts['sid_a']}/findings", json=finding, headers={"X-CSRFToken": ""}, timeout=10
    )
    assert no_token.status_code == 400
    assert (
        sessions[("reviewer", "a")].post(f"{a}/holds", data={"student": "s0002", "reason": "r"}).status_code
        == 403
    )


def _audit_rows(setup, username: str) -> list[tuple[str, str]]:
    store = db.connect(setup.data_dir)
    try:
        return [
            (row[0], row[1])
            for row in store.execute(
                "SELECT a.action, a.detail FROM audit_log a JOIN user u ON u.id = a.user_id "
                "WHERE u.username = ? ORDER BY a.id",
                [username],
            )
        ]
    finally:
        store.close()


def test_capture_views_downloads_exports_and_holds_are_audited(review_server, sessions, facts):
    setup, server = review_server
    bea = sessions[("exam_board", "a")]
    a = f"{server.url}/dashboard/review/exams/{setup.exam_a}"
    assert bea.get(f"{a}/students/s0003/timeline.json", timeout=10).status_code == 200
    assert bea.get(f"{server.url}/dashboard/captures/{facts['sid_a']}/{facts['capture_a']}/full").ok
    report = bea.get(f"{a}/students/s0003/report.html", timeout=60)
    assert report.ok and 'attachment; filename="s0003-exam' in report.headers["Content-Disposition"]
    export = bea.get(f"{a}/export.zip", timeout=120)
    assert export.ok and export.content[:2] == b"PK"
    placed = bea.post(f"{a}/holds", data={"student": "s0003", "reason": "case 2026-17"}, timeout=10)
    assert placed.ok and "case 2026-17" in placed.text
    hold_id = re.search(r"/holds/(\d+)/lift", placed.text).group(1)
    lifted = bea.post(f"{a}/holds/{hold_id}/lift", timeout=10)
    assert lifted.ok and "/lift" not in lifted.text
    actions = [action for action, _ in _audit_rows(setup, setup.users[("exam_board", "a")])]
    for expected in (
        "capture_view",
        "view_capture",
        "report_export",
        "exam_export",
        "hold_placed",
        "hold_lifted",
    ):
        assert expected in actions, expected
    page = bea.get(f"{a}/audit?action=report_export", timeout=10)
    assert page.ok and page.text.count('class="audit-row"') >= 1 and "s0003" in page.text

    # Refused requests write nothing about the students: no capture view, no download.
    outsider = setup.users[("reviewer", "b")]
    assert not [row for row in _audit_rows(setup, outsider) if row[0] not in ("login",)]
