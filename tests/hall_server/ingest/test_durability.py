"""Crash durability: SIGKILL the real server while 50 agents upload, restart it, and check every promise.

A 2xx answer to a capture upload promises that the blob is fsynced under its final name and its row is
committed. SIGKILL of the whole gunicorn process group is the crash: workers die mid-request, in the
middle of tmp writes, renames and commits. (A process crash keeps the page cache, so this proves the
write order and atomic rename, not the fsync itself; docs/durability.md covers power loss.)
"""

from __future__ import annotations

import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.transport import HallClient, Refused, Unreachable
from hall_server.store import crypto, db, exams
from hall_server.store.blobs import BlobStore
from invigil.payloads import CaptureMeta, Enrolment
from invigil.timeutil import utc_now

from support import provision_exam, sha256

AGENTS = 50
LOAD_S = 2.0


@pytest.fixture
def exam(tmp_path: Path):
    """A running exam with a roster of one student per agent (``live_server`` serves this one)."""
    return provision_exam(tmp_path / "data", students=AGENTS)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise_png(rng: random.Random) -> tuple[bytes, int, int]:
    """A grey PNG of random pixels, 30-150 KB: incompressible, like a busy screen, and never repeated."""
    width, height = rng.randrange(180, 400), rng.randrange(160, 380)
    rows = b"".join(b"\x00" + rng.randbytes(width) for _ in range(height))
    body = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows, 1))
        + _chunk(b"IEND", b"")
    )
    return body, width, height


@dataclass(frozen=True)
class Upload:
    session_id: int
    capture_id: str
    meta: CaptureMeta
    body: bytes


@dataclass
class Agent:
    index: int
    client: HallClient
    session_id: int
    acknowledged: list[Upload] = field(default_factory=list)
    unacknowledged: list[Upload] = field(default_factory=list)
    failure: BaseException | None = None

    def upload_until(self, stop: threading.Event) -> None:
        """Thread body: upload distinct captures until the server goes away (or ``stop``)."""
        rng = random.Random(self.index)
        number = 0
        while not stop.is_set():
            number += 1
            body, width, height = noise_png(rng)
            upload = Upload(
                self.session_id,
                f"cap-{self.index:03d}-{number:06d}",
                CaptureMeta(0, utc_now(), sha256(body), width, height),
                body,
            )
            try:
                self.client.put_capture(upload.capture_id, upload.meta, upload.body, "image/png")
            except Unreachable:
                self.unacknowledged.append(upload)  # the agent keeps it in its spool and resends later
                return
            except BaseException as exc:  # a Refused here is a server bug; report it from the main thread
                self.failure = exc
                return
            self.acknowledged.append(upload)


def resend(client: HallClient, upload: Upload) -> bool:
    """Upload from the spool as the agent does: a kept-alive connection that died with the old server
    fails once with Unreachable, and the agent simply tries again."""
    for _attempt in range(3):
        try:
            return client.put_capture(upload.capture_id, upload.meta, upload.body, "image/png")
        except Unreachable:
            time.sleep(0.1)
    raise AssertionError(f"{upload.capture_id}: the restarted server stayed unreachable")


def undecryptable_blobs(data_dir: Path, exam_id: int, key: bytes) -> list[str]:
    """Files under a final blob name that are not a complete sealed blob of exactly their name."""
    bad = []
    for path in (data_dir / "blobs" / str(exam_id)).rglob("*"):
        if not path.is_file():
            continue
        try:
            plain = crypto.decrypt_blob(key, exam_id, path.name, path.read_bytes())
        except Exception:
            bad.append(path.name)
            continue
        if sha256(plain) != path.name:
            bad.append(path.name)
    return bad


def test_sigkill_during_50_uploads_loses_no_acknowledged_capture(exam, live_server):
    store = db.connect(exam.data_dir)
    agents = []
    for index, student in enumerate(exam.students):
        client = HallClient(live_server.url, timeout_s=10)
        answer = client.enrol(Enrolment(student, exam.join_code, f"agent-{index:04d}", utc_now()))
        agents.append(Agent(index, client, answer["session_id"]))

    stop = threading.Event()
    threads = [threading.Thread(target=agent.upload_until, args=(stop,), daemon=True) for agent in agents]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_S)
    live_server.kill()  # mid-request: no graceful shutdown, no chance to finish a write
    stop.set()
    deadline = time.monotonic() + 15
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "an agent hung after the server died"
    assert [agent.failure for agent in agents if agent.failure] == []

    acknowledged = [upload for agent in agents for upload in agent.acknowledged]
    unacknowledged = [upload for agent in agents for upload in agent.unacknowledged]
    assert len(acknowledged) > AGENTS, f"only {len(acknowledged)} captures were acknowledged before the kill"
    assert all(len(agent.unacknowledged) <= 1 for agent in agents)  # cut off with at most one in hand

    key = exams.exam_key(store, crypto.load_or_create_master_key(exam.data_dir), exam.exam_id)
    # Right after the crash, before anything cleans up: a final name only ever holds a whole blob.
    assert undecryptable_blobs(exam.data_dir, exam.exam_id, key) == []

    live_server.start()
    blobs = BlobStore(exam.data_dir)
    assert list(blobs.tmp.iterdir()) == [], "interrupted writes were not swept at start"

    rows = {
        (row[0], row[1]): (row[2], row[3])
        for row in store.execute(
            "SELECT session_id, capture_id, sha256, size FROM capture WHERE changed = 1"
        ).fetchall()
    }
    missing = [
        upload.capture_id for upload in acknowledged if (upload.session_id, upload.capture_id) not in rows
    ]
    assert missing == [], f"{len(missing)} acknowledged captures lost: {missing[:5]}"
    for upload in acknowledged:
        assert rows[upload.session_id, upload.capture_id] == (upload.meta.sha256, len(upload.body))
        assert blobs.get(exam.exam_id, key, upload.meta.sha256) == upload.body
    for sha, _size in rows.values():  # a committed row, acknowledged or not, never points at nothing
        assert blobs.exists(exam.exam_id, sha)
    assert undecryptable_blobs(exam.data_dir, exam.exam_id, key) == []

    # The agents resend what was never acknowledged; then a few acknowledged ones, as a spool replay would.
    def client_of(upload: Upload) -> HallClient:
        return agents[int(upload.capture_id.split("-")[1])].client

    for upload in unacknowledged:
        resend(client_of(upload), upload)  # True or False: it may have been committed but not answered
    for upload in acknowledged[:: max(1, len(acknowledged) // 20)]:
        assert resend(client_of(upload), upload) is False
    first = acknowledged[0]
    other_bytes = Upload(
        first.session_id,
        first.capture_id,
        *next((u.meta, u.body) for u in [*acknowledged, *unacknowledged] if u.body != first.body),
    )
    try:  # an acknowledged id resent with other bytes must not replace what was acknowledged
        resend(client_of(first), other_bytes)
    except Refused as exc:
        assert exc.status == 409 and exc.code == "id_reused"
    else:
        raise AssertionError("an acknowledged capture id was overwritten")

    for upload in [*acknowledged, *unacknowledged]:
        count, stored_sha = store.execute(
            "SELECT count(*), max(sha256) FROM capture WHERE session_id = ? AND capture_id = ?",
            [upload.session_id, upload.capture_id],
        ).fetchone()
        assert (count, stored_sha) == (1, upload.meta.sha256)
        assert blobs.get(exam.exam_id, key, upload.meta.sha256) == upload.body
    total = store.execute("SELECT count(*) FROM capture").fetchone()[0]
    assert total == len(acknowledged) + len(unacknowledged)
    store.close()
    for agent in agents:
        agent.client.close()
