"""The gap after the last record: a session that never left shows "no data" from its last capture record
to the end of its exam (or now, while the exam runs), in the timeline, the report and an exported page that
``invigil-server verify`` checks."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hall_server.review.reports.export import write_report
from hall_server.review.reports.timeline import Gap, SessionFacts, find_gaps, session_facts, timeline
from hall_server.store import db
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment
from invigil.timeutil import from_wire, to_wire, utc_now

from reviewseed import FlaskHall
from support import BIN, png_bytes, sha256

T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("records", "end", "gaps"),
    [
        ([5, 10, 15], None, []),  # as before: without an end, the gaps stop at the last record
        ([5, 10, 15], 30, []),  # 15 s after the last record is not more than 3 intervals of 5 s
        ([5, 10, 15], 31, [(15, 31)]),  # the trailing gap
        ([5, 40], 300, [(5, 40), (40, 300)]),  # between records, and after the last one
        ([], 100, [(0, 100)]),  # never sent anything: no data from enrolment to the end
        ([], 15, []),
        ([5, 10], 8, []),  # an end before the last record (an agent clock ahead) is no gap
    ],
)
def test_find_gaps_runs_to_the_end_it_is_given(records, end, gaps):
    found = find_gaps([at(s) for s in records], 5, at(0), at(end) if end is not None else None)
    assert found == [Gap(at(a), at(b)) for a, b in gaps]


def test_until_when_a_session_should_have_sent_records():
    facts = replace(
        _facts(),
        exam_ends_at=at(3600),
        extra_time_min=10,
        ended_at=None,
        state="capturing",
    )
    assert facts.watched_until(at(60)) == at(60)  # while the exam runs: now
    assert facts.watched_until(at(9000)) == at(3600 + 600)  # after: the end of the exam for the student
    assert replace(facts, exam_ended_at=at(1800)).watched_until(at(9000)) == at(1800)  # ended early
    assert replace(facts, superseded_at=at(900)).watched_until(at(9000)) == at(900)  # joined again
    assert replace(facts, ended_at=at(100), state="left").watched_until(at(9000)) is None
    assert replace(facts, state="left").watched_until(at(9000)) is None


def _facts() -> SessionFacts:
    return SessionFacts(
        *(1, 1, "Exam", T0, at(3600), 5, "s0001", "Student", None, 0, "agent", "0.1", "Linux", "10.0.0.1"),
        *(T0, None, "capturing", None, 0),
    )


@pytest.fixture
def recorded(client, exam):
    """Student s0001 enrolled and sent a screen, then nothing (their laptop's clock runs 25 s slow, within
    the skew bound, so the screen is dated before the enrolment); s0002 sent a screen and left."""
    store = db.connect(exam.data_dir)
    sessions = {}
    for number, address, slow_s in (("s0001", "10.0.0.11", 25), ("s0002", "10.0.0.12", 0)):
        hall = FlaskHall(client, address)
        answer = hall.enrol(Enrolment(number, exam.join_code, f"agent-{number}", utc_now(), "0.1", "Linux"))
        body = png_bytes(320, 200, seed=len(sessions) + 1)
        dated = utc_now() - timedelta(seconds=slow_s)
        meta = CaptureMeta(0, dated, sha256(body), 320, 200, focused_app="exam")
        assert hall.put_capture(f"cap-{number}", meta, body, "image/png")
        [(agent_time,)] = store.execute(
            "SELECT agent_time FROM capture WHERE session_id = ?", [answer["session_id"]]
        ).fetchall()
        sessions[number] = (answer["session_id"], from_wire(agent_time))
    hall.post_device_events([DeviceEvent("dev-left-1", "left", utc_now(), {})])
    assert store.execute("SELECT COUNT(*) FROM observation WHERE kind = 'clock_skew'").fetchone() == (0,)
    yield store, sessions
    store.close()


def test_the_timeline_shows_the_gap_after_the_last_record_of_a_session_that_never_left(recorded):
    store, sessions = recorded
    silent, last = sessions["s0001"]
    later = utc_now() + timedelta(minutes=2)
    assert timeline(store, silent, now=later).gaps == [Gap(last, later)]
    assert timeline(store, silent, now=last + timedelta(seconds=10)).gaps == []  # not yet 3 intervals
    # Once the exam is over, the gap ends with it.
    exam_end = session_facts(store, silent).exam_ends_at
    assert timeline(store, silent, now=exam_end + timedelta(hours=5)).gaps == [Gap(last, exam_end)]
    # The student who left has no gap after leaving.
    left, _ = sessions["s0002"]
    assert timeline(store, left, now=later).gaps == []


def test_the_report_shows_the_trailing_gap_and_verify_still_holds_the_page(recorded, exam, tmp_path):
    store, sessions = recorded
    _, last = sessions["s0001"]
    end = last + timedelta(seconds=20)  # the exam ended 20 s after the screen (about 5 s ago)
    store.execute("UPDATE exam SET ends_at = ? WHERE id = ?", [to_wire(end), exam.exam_id])
    out = tmp_path / "s0001.html"
    report = write_report(
        store, exam.data_dir, exam.exam_id, "s0001", "html", out, user_id=None, actor="test"
    )
    [session] = report.sessions
    assert session.timeline.gaps == [Gap(last, end)]
    page = out.read_text()
    assert f"<tr><td>{last:%H:%M:%S}</td><td>{end:%H:%M:%S}</td><td>20 s</td></tr>" in page
    verified = subprocess.run(
        [str(BIN / "invigil-server"), "verify", str(out)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert "all chains intact" in verified.stdout
