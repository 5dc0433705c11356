"""The agent API end to end: the real agent transport against the real server under gunicorn."""

from __future__ import annotations

from agent.capture import new_record_id
from agent.spool import key_from_wire
from agent.transport import HallClient, Refused
from hall_server.store import crypto, db, exams
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat, Unchanged
from invigil.timeutil import utc_now

from support import png_bytes, sha256


def test_enrol_upload_and_read_back(exam, live_server):
    client = HallClient(live_server.url)
    answer = client.enrol(Enrolment("s0001", exam.join_code.lower(), "agent-0001", utc_now(), "0.1", "Linux"))
    assert answer["exam"]["title"] == "Linear Algebra"
    assert answer["exam"]["capture_interval_s"] == 5

    body = png_bytes(640, 400, seed=1)
    meta = CaptureMeta(0, utc_now(), sha256(body), 640, 400, window_title="Exam – Q1 ✓")
    assert client.put_capture("cap-0000001", meta, body, "image/png") is True
    assert client.put_capture("cap-0000001", meta, body, "image/png") is False  # a resend is stored once
    assert client.put_unchanged("unc-0000001", Unchanged(0, utc_now(), "cap-0000001")) is True
    beat = client.heartbeat(Heartbeat(utc_now(), backlog=3))
    assert 0 <= beat["health"] <= 10 and beat["instructions"] == []
    assert client.post_device_events([DeviceEvent("dev-0000001", "monitors", utc_now(), {"count": 2})]) == {
        "stored": 1,
        "duplicates": 0,
    }

    store = db.connect(exam.data_dir)
    rows = store.execute(
        "SELECT capture_id, changed, unseal(exam_id, window_title) FROM capture ORDER BY agent_time"
    ).fetchall()
    assert rows == [("cap-0000001", 1, "Exam – Q1 ✓"), ("unc-0000001", 0, None)]
    key = exams.exam_key(store, crypto.load_or_create_master_key(exam.data_dir), exam.exam_id)
    from hall_server.store.blobs import BlobStore

    assert BlobStore(exam.data_dir).get(exam.exam_id, key, sha256(body)) == body
    kinds = [row[0] for row in store.execute("SELECT kind FROM observation").fetchall()]
    assert kinds == ["second_monitor"]


def test_wrong_join_code_and_unknown_student_are_refused_clearly(exam, live_server):
    client = HallClient(live_server.url)
    try:
        client.enrol(Enrolment("s0001", "WRONG234", "agent-0001", utc_now()))
    except Refused as exc:
        assert exc.status == 403 and exc.code == "bad_join_code" and "code shown in the hall" in exc.message
    else:
        raise AssertionError("a wrong join code was accepted")
    try:
        client.enrol(Enrolment("x9999", exam.join_code, "agent-0001", utc_now()))
    except Refused as exc:
        assert exc.status == 404 and exc.code == "not_on_roster" and "x9999" in exc.message
    else:
        raise AssertionError("an unknown student was enrolled")


def test_the_spool_key_is_the_students_own_for_this_exam_and_never_stored(exam, live_server):
    def key(student: str) -> str:
        client = HallClient(live_server.url, timeout_s=5)
        return client.enrol(Enrolment(student, exam.join_code, new_record_id(), utc_now()))["spool_key"]

    first = key("s0001")
    assert len(key_from_wire(first) or b"") == 32
    assert key("s0001") == first  # joining again after a crash gets the same key back
    assert key("s0002") != first
    for path in exam.data_dir.rglob("*"):  # the database, its WAL, the blobs
        data = path.read_bytes() if path.is_file() else b""
        assert first.encode() not in data and key_from_wire(first) not in data, path.name
