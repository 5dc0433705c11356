"""The server writes the running exams' policy where the proxy reads it; the proxy's grammar accepts it."""

from __future__ import annotations

import time
from datetime import timedelta

from hall_server import policy_publish
from hall_server.store import crypto, db, exams
from invigil.policy import parse_policy
from invigil.timeutil import utc_now

from support import LiveServer

POLICY = "allow exam.example.nl\nallow *.uni.example\nblock forum.uni.example\n"


def _exam(store, data_dir, hall_id, start_offset_min, duration_min, text, title):
    start = utc_now() + timedelta(minutes=start_offset_min)
    return exams.create_exam(
        store,
        crypto.load_or_create_master_key(data_dir),
        hall_id=hall_id,
        title=title,
        starts_at=start,
        ends_at=start + timedelta(minutes=duration_min),
        policy_text=text,
    )


def test_running_exam_policy_is_published_and_parses(exam):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    _exam(store, exam.data_dir, exam.hall_id, 24 * 60, 60, "allow tomorrow.example\n", "Tomorrow")
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=1800) is True
    text = (exam.data_dir / policy_publish.POLICY_FILE).read_text()
    policy = parse_policy(text)
    assert policy.decide_host("exam.example.nl").allowed
    assert not policy.decide_host("forum.uni.example").allowed
    assert not policy.decide_host("tomorrow.example").allowed  # not running yet
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=1800) is False  # unchanged: no rewrite


def test_no_running_exam_blocks_everything_and_ending_withdraws_the_rules(exam):
    store = db.connect(exam.data_dir)
    store.execute("UPDATE exam SET policy_text = ? WHERE id = ?", [POLICY, exam.exam_id])
    policy_publish.publish(store, exam.data_dir, enrol_early_s=1800)
    store.execute("UPDATE exam SET ended_at = ? WHERE id = ?", ["2026-01-01T00:00:00.000Z", exam.exam_id])
    assert policy_publish.publish(store, exam.data_dir, enrol_early_s=1800) is True
    policy = parse_policy((exam.data_dir / policy_publish.POLICY_FILE).read_text())
    assert not policy.decide_host("exam.example.nl").allowed


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
        assert parse_policy(path.read_text()).decide_host("a.uni.example").allowed
    finally:
        server.stop()
