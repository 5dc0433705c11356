"""The per-session hash chain: every stored record is linked in commit order, and `invigil-server verify`
names the first broken link of a tampered or shortened chain, in the store and in an exported report."""

from __future__ import annotations

import subprocess

import pytest

from agent.transport import HallClient
from hall_server.review.reports import integrity
from hall_server.store import chain, db
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Unchanged
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, seed_exam
from support import BIN, png_bytes, sha256


@pytest.fixture
def seeded(exam, client):
    return seed_exam(client, exam, students=2)


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "invigil-server"), "verify", *args], capture_output=True, text=True)


def test_every_record_is_chained_once_in_commit_order(exam, client, seeded):
    store = db.connect(exam.data_dir)
    result = chain.verify_store(store)
    assert result.ok and result.sessions == 2
    session_id = store.execute("SELECT MIN(id) FROM agent_session").fetchone()[0]
    stored = sum(
        store.execute(f"SELECT COUNT(*) FROM {table} WHERE session_id = ?", [session_id]).fetchone()[0]
        for table in ("capture", "device_event", "site_event")
    )
    head, length = store.execute(
        "SELECT chain_head, chain_length FROM agent_session WHERE id = ?", [session_id]
    ).fetchone()
    assert length == stored == 6 + 12 + 2 + 3
    seqs = [record.seq for record in chain.session_chain(store, session_id).records]
    assert seqs == list(range(1, length + 1))

    # A resend (the agent lost the answer) is stored once and does not move the head.
    hall = FlaskHall(client, "10.0.0.11")
    hall.enrol(Enrolment("s0001", exam.join_code, "agent-resend", utc_now()))
    body = png_bytes(seed=99)
    meta = CaptureMeta(0, utc_now(), sha256(body), 320, 200)
    assert hall.put_capture("cap-resend", meta, body, "image/png") is True
    new_session = store.execute("SELECT MAX(id) FROM agent_session").fetchone()[0]
    before = store.execute("SELECT chain_head FROM agent_session WHERE id = ?", [new_session]).fetchone()
    assert hall.put_capture("cap-resend", meta, body, "image/png") is False
    assert (
        store.execute("SELECT chain_head FROM agent_session WHERE id = ?", [new_session]).fetchone() == before
    )
    assert (
        store.execute("SELECT chain_head FROM agent_session WHERE id = ?", [session_id]).fetchone()[0] == head
    )


def test_real_agent_client_over_http_builds_a_valid_chain(exam, live_server):
    hall = HallClient(live_server.url)
    hall.enrol(Enrolment("s0003", exam.join_code, "agent-http", utc_now()))
    body = png_bytes(seed=5)
    assert hall.put_capture(
        "cap-http-0001", CaptureMeta(0, utc_now(), sha256(body), 320, 200), body, "image/png"
    )
    assert hall.put_unchanged("unc-http-0001", Unchanged(0, utc_now(), "cap-http-0001"))
    hall.post_device_events([DeviceEvent("dev-http-0001", "help_request", utc_now(), {})])
    answer = _verify("--data-dir", str(exam.data_dir))
    assert answer.returncode == 0, answer.stderr
    assert "1 session(s), 3 chained record(s): all chains intact" in answer.stdout


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (
            "UPDATE capture SET window_title = 'Notes' WHERE capture_id = 'cap-s0001-0003'",
            "link 10: capture cap-s0001-0003 (received ",
        ),
        (
            "UPDATE site_event SET decision = 'allowed' WHERE event_id = 'px-s0001-2'",
            "site_event proxy/px-s0001-2 (received ",
        ),
        ("DELETE FROM device_event WHERE event_id = 'dev-s0001-1'", "link 19: missing between capture"),
        (
            "DELETE FROM site_event WHERE event_id = 'sn-s0001-3'",
            "the session says 23 links but only 22 remain",
        ),
    ],
)
def test_verify_names_the_first_broken_link(exam, seeded, tamper, named):
    store = db.connect(exam.data_dir)
    store.execute(tamper)
    answer = _verify("--data-dir", str(exam.data_dir))
    assert answer.returncode == 1
    assert named in answer.stderr
    assert "session 1," in answer.stderr and "session 2" not in answer.stderr  # the other seat is intact
    assert "1 broken" in answer.stdout


def test_verify_an_exported_report(exam, seeded, tmp_path):
    out = tmp_path / "s0001.html"
    subprocess.run(
        [
            str(BIN / "invigil-server"),
            "report",
            "--data-dir",
            str(exam.data_dir),
            "--exam",
            str(exam.exam_id),
            "--student",
            "s0001",
            "--format",
            "html",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert _verify(str(out)).returncode == 0
    assert integrity.verify_export(out).records == 23

    # Someone edits the exported page: the visible site log and the embedded records agree again, but the
    # chain does not.
    page = out.read_text()
    out.write_text(page.replace('"decision":"blocked"', '"decision":"allowed"'))
    answer = _verify(str(out))
    assert answer.returncode == 1
    assert "site_event proxy/px-s0001-2" in answer.stderr
