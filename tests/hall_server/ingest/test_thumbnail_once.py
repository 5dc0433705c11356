"""A capture's thumbnail is written once: a resend of the same bytes is an idempotent success, other bytes
are refused with 409 naming the problem, and the first thumbnail stays what the live view shows."""

from __future__ import annotations

import json

from hall_server.store import db
from invigil import protocol as p
from invigil.timeutil import to_wire, utc_now

from support import png_bytes, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}


def blob_files(exam) -> list[str]:
    return sorted(str(path) for path in (exam.data_dir / "blobs").rglob("*") if path.is_file())


def test_a_second_thumbnail_with_other_bytes_is_refused_and_the_first_kept(client, exam):
    enrolled = client.post(
        f"{API}/enrol",
        json={
            "student_number": exam.students[0],
            "join_code": exam.join_code,
            "agent_id": "agent-thumb-1",
            "agent_time": to_wire(utc_now()),
        },
        headers=PROTOCOL,
    ).get_json()
    auth = {**PROTOCOL, "Authorization": f"Bearer {enrolled['session_token']}"}
    body = png_bytes(320, 200, seed=4)
    meta = {
        "monitor": 0,
        "agent_time": to_wire(utc_now()),
        "sha256": sha256(body),
        "width": 320,
        "height": 200,
    }
    put = client.put(
        f"{API}/captures/cap-thumb-0001",
        data=body,
        headers={**auth, "Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
    )
    assert put.status_code == 201
    url, headers = f"{API}/captures/cap-thumb-0001/thumbnail", {**auth, "Content-Type": "image/png"}
    first, other = png_bytes(96, 60, seed=1), png_bytes(96, 60, seed=2)
    assert client.put(url, data=first, headers=headers).status_code == 201
    resend = client.put(url, data=first, headers=headers)
    assert resend.status_code == 200 and resend.get_json()["duplicate"] is True
    files = blob_files(exam)

    replaced = client.put(url, data=other, headers=headers)

    assert replaced.status_code == 409, replaced.get_json()
    error = replaced.get_json()["error"]
    assert error["code"] == "thumbnail_exists" and "cap-thumb-0001" in error["message"]
    assert blob_files(exam) == files  # nothing stored for the refused one
    store = db.connect(exam.data_dir)
    try:
        stored = store.execute(
            "SELECT thumb_sha256 FROM capture WHERE capture_id = 'cap-thumb-0001'"
        ).fetchone()[0]
    finally:
        store.close()
    assert stored == sha256(first)
