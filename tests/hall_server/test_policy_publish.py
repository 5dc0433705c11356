"""The server publishes each running exam's policy and the map from laptop address to exam where the proxy
reads it (``invigil.seatpolicy``), built from sessions enrolled through the real agent API; the proxy's own
parser accepts every file it writes, and a policy with errors is never published."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hall_server import policy_publish
from hall_server.app import create_app
from hall_server.policy_publish import SessionSeat, seat_map
from hall_server.store import crypto, db, exams
from invigil.payloads import DeviceEvent, Enrolment, Heartbeat
from invigil.policy import PolicyError, parse_policy
from invigil.seatpolicy import parse_seat_policy
from invigil.timeutil import utc_now
from provisioning.errors import LineErrors
from provisioning.exams import check_policy

from reviewseed import FlaskHall
from support import LiveServer

POLICY = "allow exam.example.nl\nallow *.uni.example\nblock forum.uni.example\n"
EARLY = 1800


def _exam(store, data_dir, hall_id, start_offset_min, duration_min, text, title, join_code=None, **more):
    start = utc_now() + timedelta(minutes=start_offset_min)
    exam_id = exams.create_exam(
        store,
        crypto.load_or_create_master_key(data_dir),
        hall_id=hall_id,
        title=title,
        starts_at=start,
        ends_at=start + timedelta(minutes=duration_min),
        policy_text=text,
        join_code=join_code,
        **more,
    )
    exams.add_roster(store, exam_id, [exams.RosterEntry(f"t{i}", f"Student {i}") for i in range(1, 4)])
    return exam_id


def _published(exam):
    return parse_seat_policy((exam.data_dir / policy_publish.POLICY_FILE).read_text())


def _enrol(client, address: str, student: str, join_code: str) -> FlaskHall:
    laptop = FlaskHall(client, address)
    laptop.enrol(
        Enrolment(
            student,
            join_code,
            f"agent-{student}-" + address.replace(".", "-").replace(":", "-"),
            utc_now(),
            "0.1",
            "Linux",
        )
    )
    return laptop


# ------------------------------------------------------------------------------------ the pure parts

T0 = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sessions", "expected"),
    [
        ([], {}),
        ([(1, 10, "10.0.0.5", 0)], {"10.0.0.5": 10}),
        # One address claimed by two live sessions: the one seen last wins, whatever its exam.
        ([(1, 10, "10.0.0.5", 5), (2, 20, "10.0.0.5", 9)], {"10.0.0.5": 20}),
        ([(1, 10, "10.0.0.5", 9), (2, 20, "10.0.0.5", 5)], {"10.0.0.5": 10}),
        ([(1, 10, "10.0.0.5", 5), (2, 20, "10.0.0.5", 5)], {"10.0.0.5": 20}),  # a tie: the newer session
        # Spellings of one address are one seat.
        ([(1, 10, "::ffff:10.0.0.5", 5), (2, 20, "10.0.0.5", 1)], {"10.0.0.5": 10}),
        ([(1, 10, "2001:DB8::0001", 5)], {"2001:db8::1": 10}),
        # Sessions of exams that are not running, and addresses that are none, are no seats.
        ([(1, 30, "10.0.0.5", 9), (2, 10, "10.0.0.6", 1)], {"10.0.0.6": 10}),
        ([(1, 10, "not-an-address", 9), (2, 10, "", 1)], {}),
        (
            [(1, 10, "10.0.0.5", 1), (2, 10, "10.0.0.6", 2), (3, 20, "10.0.0.7", 3)],
            {
                "10.0.0.5": 10,
                "10.0.0.6": 10,
                "10.0.0.7": 20,
            },
        ),
    ],
)
def test_seat_map(sessions, expected):
    seats = [SessionSeat(sid, exam, ip, T0 + timedelta(seconds=s)) for sid, exam, ip, s in sessions]
    assert seat_map(seats, {10, 20}) == expected


@pytest.mark.parametrize(
    ("started", "ended", "offset_min", "running"),
    [
        (False, False, -10, True),  # inside its window
        (False, False, -29, True),  # enrolment opens early
        (False, False, -31, False),  # not yet
        (False, False, 200, False),  # over (and no extra time)
        (True, False, -300, True),  # the invigilator started it before its window
        (True, True, 0, False),  # and ended it
    ],
)
def test_running(started, ended, offset_min, running):
    exam = policy_publish.ExamPolicy(1, "x", T0, T0 + timedelta(minutes=180), started, ended, "")
    now = T0 + timedelta(minutes=offset_min)
    got = policy_publish.running([exam], now, timedelta(minutes=30), timedelta(0))
    assert (got == [exam]) is running


# --------------------------------------------------------------------------- the published document


def test_two_exams_sharing_a_rule_each_get_their_own_policy(exam):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    other = _exam(store, exam.data_dir, exam.hall_id, -5, 60, "allow exam.example.nl\nallow b.example\n", "B")
    _exam(store, exam.data_dir, exam.hall_id, 24 * 60, 60, "allow tomorrow.example\n", "Tomorrow")
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY) is True
    published = _published(exam)
    assert set(published.exams) == {exam.exam_id, other}  # tomorrow's exam is not running yet
    mine, theirs = published.exams[exam.exam_id].policy, published.exams[other].policy
    assert mine.decide_host("exam.example.nl").allowed and theirs.decide_host("exam.example.nl").allowed
    assert mine.decide_host("a.uni.example").allowed and not theirs.decide_host("a.uni.example").allowed
    assert theirs.decide_host("b.example").allowed and not mine.decide_host("b.example").allowed
    assert published.exams[other].title == "B" and published.exams[other].intercept is False
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY) is False  # unchanged: no rewrite


def test_each_exam_carries_its_interception_setting(exam):
    store = db.connect(exam.data_dir)
    intercepted = _exam(
        store, exam.data_dir, exam.hall_id, -5, 60, "allow a.example/x/\n", "I", interception=True
    )
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    published = _published(exam)
    assert published.exams[intercepted].intercept is True
    assert published.exams[exam.exam_id].intercept is False
    store.execute("UPDATE exam SET interception = 0 WHERE id = ?", [intercepted])
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY) is True
    assert _published(exam).exams[intercepted].intercept is False


def test_no_running_exam_publishes_no_exam_and_ending_withdraws_the_rules(exam):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    store.execute("UPDATE exam SET ended_at = ? WHERE id = ?", ["2026-01-01T00:00:00.000Z", exam.exam_id])
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY) is True
    published = _published(exam)
    assert published.exams == {} and published.seats == {}
    assert not published.policy_for("10.0.0.5").decide_host("exam.example.nl").allowed


def test_only_the_appliances_own_hall_is_published(exam, caplog):
    store = db.connect(exam.data_dir)
    other_hall = exams.create_hall(store, "Hall B")
    elsewhere = _exam(store, exam.data_dir, other_hall, -5, 60, "allow b.example\n", "Elsewhere")
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY, hall_name="Hall A")
    assert set(_published(exam).exams) == {exam.exam_id}
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY, hall_name="Hall B")
    assert set(_published(exam).exams) == {elsewhere}
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)  # no hall named: every hall
    assert set(_published(exam).exams) == {exam.exam_id, elsewhere}
    with caplog.at_level(logging.ERROR, "invigil.policy"):
        policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY, hall_name="Hall C")
    assert _published(exam).exams == {}
    assert "no hall is named 'Hall C'" in caplog.text


def test_the_hall_name_setting_reaches_the_publisher(exam, monkeypatch):
    monkeypatch.setenv("INVIGIL_HALL_NAME", "Hall A")
    app = create_app({"data_dir": str(exam.data_dir), "policy_publish_interval_s": 0})
    assert app.extensions["invigil"].settings["hall_name"] == "Hall A"


# ----------------------------------------------------------------- seats from real enrolments and time


def test_seats_come_from_sessions_enrolled_through_the_api_and_follow_the_laptops(exam, client):
    store = db.connect(exam.data_dir)
    other = _exam(store, exam.data_dir, exam.hall_id, -5, 60, "allow b.example\n", "B", join_code="HALLB234")
    first = _enrol(client, "10.20.0.11", exam.students[0], exam.join_code)
    _enrol(client, "10.20.0.12", "t1", "HALLB234")
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    assert _published(exam).seats == {"10.20.0.11": exam.exam_id, "10.20.0.12": other}

    # A laptop whose address changes is followed: its heartbeat comes from the new address.
    first.heartbeat(Heartbeat(utc_now()))
    mover = FlaskHall(client, "10.20.0.31")
    mover.token = first.token
    mover.heartbeat(Heartbeat(utc_now()))
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY) is True
    assert _published(exam).seats == {"10.20.0.31": exam.exam_id, "10.20.0.12": other}

    # The laptop at .12 leaves exam B and joins exam A from the same address: it is re-mapped.
    leaver = FlaskHall(client, "10.20.0.12")
    leaver.enrol(Enrolment("t2", "HALLB234", "agent-leaver", utc_now(), "0.1", "Linux"))
    leaver.post_device_events([DeviceEvent(str(uuid.uuid4()), "left", utc_now())])
    assert _published_after(store, exam)["10.20.0.12"] == other  # t1's session there is still live
    time.sleep(0.01)
    _enrol(client, "10.20.0.12", exam.students[1], exam.join_code)
    assert _published_after(store, exam) == {"10.20.0.31": exam.exam_id, "10.20.0.12": exam.exam_id}


def _published_after(store, exam):
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    return dict(_published(exam).seats)


def test_an_exam_starting_while_another_ends(exam, client):
    """The publisher's output over time: the morning exam's seats and rules give way to the afternoon's."""
    store = db.connect(exam.data_dir)
    morning = exam.exam_id
    start = utc_now() - timedelta(minutes=10)
    store.execute(
        "UPDATE exam SET policy_text = ?, starts_at = ?, ends_at = ? WHERE id = ?",
        ["allow morning.example\n", _wire(start), _wire(start + timedelta(minutes=60)), morning],
    )
    afternoon = _exam(
        store, exam.data_dir, exam.hall_id, 20, 120, "allow afternoon.example\n", "PM", "HALLP234"
    )
    _enrol(client, "10.20.0.11", exam.students[0], exam.join_code)
    _enrol(client, "10.20.0.12", "t1", "HALLP234")  # early, inside the afternoon's enrolment window

    def at(minutes: int) -> tuple[set[int], dict[str, int]]:
        policy_publish.publish(store, exam.data_dir, EARLY, now=utc_now() + timedelta(minutes=minutes))
        published = _published(exam)
        return set(published.exams), dict(published.seats)

    assert at(0) == ({morning, afternoon}, {"10.20.0.11": morning, "10.20.0.12": afternoon})
    # The morning exam is over (no extra time): its rules and its seat go, the afternoon's stay.
    assert at(60) == ({afternoon}, {"10.20.0.12": afternoon})
    store.execute("UPDATE exam SET ended_at = ? WHERE id = ?", [_wire(utc_now()), afternoon])
    assert at(60) == (set(), {})


def _wire(moment: datetime) -> str:
    from invigil.timeutil import to_wire

    return to_wire(moment)


def test_ten_exams_at_once(exam, client):
    store = db.connect(exam.data_dir)
    ids = []
    for n in range(10):
        code = f"HALL{n}X{n}Z"
        ids.append(
            _exam(
                store,
                exam.data_dir,
                exam.hall_id,
                -5,
                60,
                f"allow shared.example\nallow site{n}.example\n",
                f"E{n}",
                code,
            )
        )
        _enrol(client, f"10.20.1.{n + 1}", "t1", code)
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    published = _published(exam)
    for n, exam_id in enumerate(ids):
        policy = published.policy_for(f"10.20.1.{n + 1}")
        assert policy.decide_host("shared.example").allowed and policy.decide_host(f"site{n}.example").allowed
        assert not any(policy.decide_host(f"site{m}.example").allowed for m in range(10) if m != n)
        assert published.exam_of(f"10.20.1.{n + 1}").exam_id == exam_id
    assert published.exam_of("10.20.1.99") is None


# -------------------------------------------------------------------------------------- bad policies

BAD = "allow exam.example.nl\nallow EXAM.example.nl.\nalow x.example\n"


def test_a_bad_policy_is_refused_and_the_old_file_kept(exam, caplog):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    path = exam.data_dir / policy_publish.POLICY_FILE
    before = path.read_bytes()
    # As an old row, or anything that bypassed the organiser's CLI, could hold it.
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [BAD, exam.exam_id])
    with pytest.raises(policy_publish.PublicationRefused) as refused:
        policy_publish.publish(store, exam.data_dir, enrol_early_s=EARLY)
    assert f"exam {exam.exam_id} ('Linear Algebra'): line 2: duplicate of line 1" in str(refused.value)
    assert "line 3: unknown action 'alow'" in str(refused.value)
    assert path.read_bytes() == before

    publisher = policy_publish.PolicyPublisher(lambda: db.connect(exam.data_dir), exam.data_dir, EARLY, 1)
    with caplog.at_level(logging.INFO, "invigil.policy"):
        assert publisher.publish_once() is False
        assert publisher.publish_once() is False
    assert caplog.text.count("network policy not published, the proxy keeps its previous one") == 1
    assert path.read_bytes() == before
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", ["allow fixed.example\n", exam.exam_id])
    assert publisher.publish_once() is True
    assert _published(exam).exams[exam.exam_id].policy.decide_host("fixed.example").allowed


def test_the_publisher_and_the_organisers_cli_refuse_with_one_grammar():
    with pytest.raises(PolicyError) as grammar:
        parse_policy(BAD)
    with pytest.raises(LineErrors) as cli:
        check_policy(BAD, "policy.txt")
    now = utc_now()
    exam = policy_publish.ExamPolicy(7, "X", now, now, True, False, BAD)
    with pytest.raises(policy_publish.PublicationRefused) as server:
        policy_publish.check_policies([exam])
    assert list(cli.value.errors) == list(grammar.value.errors)
    for line, message in grammar.value.errors:
        assert f"line {line}: {message}" in str(server.value)


def test_the_served_server_publishes_on_its_own(exam, tmp_path):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    server = LiveServer(exam.data_dir)
    try:
        server.start()
        path = exam.data_dir / policy_publish.POLICY_FILE
        deadline = time.monotonic() + 15
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        published = parse_seat_policy(path.read_text())
        assert published.exams[exam.exam_id].policy.decide_host("a.uni.example").allowed
    finally:
        server.stop()
