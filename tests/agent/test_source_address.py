"""Several agents on one machine send from their own loopback addresses; the server records each one's."""

from __future__ import annotations

from agent.transport import HallClient
from hall_server.store import db
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now


def test_enrolment_is_attributed_to_the_source_address(exam, live_server):
    for index, number in enumerate(exam.students[:2]):
        client = HallClient(live_server.url, source_address=f"127.0.0.{21 + index}")
        client.enrol(Enrolment(number, exam.join_code, f"agent-src-{index:04d}", utc_now()))
    store = db.connect(exam.data_dir)
    rows = store.execute("SELECT unseal(exam_id, client_ip) FROM agent_session ORDER BY id").fetchall()
    assert [row[0] for row in rows] == ["127.0.0.21", "127.0.0.22"]
