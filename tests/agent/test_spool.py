"""The spool keeps records in order through restarts, stays under its cap, leaves nothing when destroyed,
and holds nothing readable without the key it was given."""

from __future__ import annotations

import os

import pytest

from agent.spool import Spool, SpoolClosed

KEY = bytes(range(32))


def drain(spool: Spool) -> list[tuple[int, str, dict, bytes]]:
    out = []
    while (record := spool.peek()) is not None:
        out.append((record.seq, record.kind, record.meta, record.body))
        assert spool.ack(record.seq)
    return out


def test_records_come_back_in_order_with_meta_and_body(tmp_path):
    spool = Spool(tmp_path / "spool")
    first = spool.append({"kind": "image", "capture_id": "abc12345", "title": "Übung ✓"}, b"\x89PNG one")
    second = spool.append({"kind": "unchanged", "record_id": "def67890"})
    assert second > first
    assert len(spool) == 2 and spool.bytes_used > len(b"\x89PNG one")
    assert spool.peek() == spool.peek()  # peek does not consume
    records = drain(spool)
    assert records == [
        (first, "image", {"kind": "image", "capture_id": "abc12345", "title": "Übung ✓"}, b"\x89PNG one"),
        (second, "unchanged", {"kind": "unchanged", "record_id": "def67890"}, b""),
    ]
    assert spool.peek() is None and spool.bytes_used == 0
    assert not spool.ack(first)  # acking twice is harmless


def test_order_and_numbering_survive_a_restart(tmp_path):
    spool = Spool(tmp_path, key=KEY)
    seqs = [spool.append({"kind": "image", "n": n}, bytes([n]) * 10) for n in range(5)]
    spool.ack(spool.peek().seq)  # type: ignore[union-attr]
    reopened = Spool(tmp_path, key=KEY)
    assert [meta["n"] for _, _, meta, _ in drain(reopened)] == [1, 2, 3, 4]
    # Drained empty: the file names no longer carry the numbering, the state file does.
    again = Spool(tmp_path, key=KEY)
    assert again.append({"kind": "image"}) == seqs[-1] + 1


def test_half_written_files_are_removed_on_open(tmp_path):
    spool = Spool(tmp_path, key=KEY)
    spool.append({"kind": "image", "n": 1}, b"complete")
    (tmp_path / "000000000002-image.rec.tmp").write_bytes(b"IVSP\x01\x00\x00")  # crashed mid-write
    reopened = Spool(tmp_path, key=KEY)
    assert not list(tmp_path.glob("*.tmp"))
    assert [meta["n"] for _, _, meta, _ in drain(reopened)] == [1]


def test_a_corrupt_record_is_skipped_and_counted(tmp_path):
    spool = Spool(tmp_path, key=KEY)
    bad = spool.append({"kind": "image", "n": 1}, b"x")
    spool.append({"kind": "image", "n": 2}, b"y")
    next(tmp_path.glob(f"{bad:012d}-*.rec")).write_bytes(b"garbage")
    reopened = Spool(tmp_path, key=KEY)
    assert [meta["n"] for _, _, meta, _ in drain(reopened)] == [2]
    assert reopened.take_dropped().records == 1


def test_cap_drops_unchanged_records_first_then_oldest_images(tmp_path):
    body = b"i" * 1000
    spool = Spool(tmp_path, max_bytes=6000)
    for n, kind in enumerate(["image", "unchanged", "image", "unchanged", "image", "image", "image"]):
        spool.append({"kind": kind, "n": n}, body if kind == "image" else b"")
    assert spool.take_dropped().records == 0
    sizes = {path.name: path.stat().st_size for path in tmp_path.glob("*.rec")}
    assert sum(sizes.values()) == spool.bytes_used
    # One more image does not fit: both "unchanged" records go first, then the oldest image (n=0).
    spool.append({"kind": "image", "n": 7}, body)
    assert spool.bytes_used <= 6000
    dropped = spool.take_dropped()
    lost = [name for name in sizes if name.startswith(("000000000001", "000000000002", "000000000004"))]
    assert dropped.records == 3 and dropped.bytes == sum(sizes[name] for name in lost)
    assert spool.take_dropped().records == 0  # reported once
    assert [meta["n"] for _, _, meta, _ in drain(spool)] == [2, 4, 5, 6, 7]


def test_drops_not_yet_reported_survive_a_restart(tmp_path):
    spool = Spool(tmp_path, max_bytes=3000, key=KEY)
    for n in range(5):
        spool.append({"kind": "image", "n": n}, b"x" * 1000)
    assert Spool(tmp_path, max_bytes=3000, key=KEY).take_dropped().records == 3


def test_a_record_larger_than_the_cap_is_refused(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    with pytest.raises(ValueError, match="does not fit"):
        spool.append({"kind": "image"}, b"x" * 200)


@pytest.mark.parametrize("meta", [{}, {"kind": "Image"}, {"kind": "../x"}, {"kind": 3}])
def test_kind_must_be_a_plain_name(tmp_path, meta):
    with pytest.raises(ValueError, match="kind"):
        Spool(tmp_path).append(meta)


def test_destroy_leaves_nothing_behind(tmp_path):
    directory = tmp_path / "exam-spool"
    spool = Spool(directory, max_bytes=2000)
    for n in range(4):
        spool.append({"kind": "image", "n": n}, b"z" * 700)  # forces a drop and a state file
    (directory / "000000000099-image.rec.tmp").write_bytes(b"partial")
    spool.destroy()
    assert not directory.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SpoolClosed):
        spool.append({"kind": "image"})
    spool.destroy()  # twice is harmless


def test_nothing_on_disk_is_readable_without_the_key(tmp_path):
    spool = Spool(tmp_path, key=KEY)
    secret = b"\x89PNG\r\n\x1a\n" + b"the student's essay " * 50
    spool.append({"kind": "image", "capture_id": "cap00001", "title": "Essay.docx - Word"}, secret)
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert b"PNG" not in data and b"essay" not in data and b"Essay.docx" not in data
        assert KEY not in data
    assert Spool(tmp_path, key=KEY).peek().body == secret  # type: ignore[union-attr]


def test_a_spool_opened_with_another_key_deletes_the_leftovers(tmp_path):
    old = Spool(tmp_path, key=KEY)
    for n in range(3):
        old.append({"kind": "image", "n": n}, b"x" * 100)
    new_key = os.urandom(32)
    other = Spool(tmp_path, key=new_key)  # a session that never joined again: its key is gone
    assert other.leftovers_deleted == 3 and len(other) == 0 and not list(tmp_path.glob("*.rec"))
    seq = other.append({"kind": "image", "n": 9})
    assert seq == 4  # numbering goes on, so no record id is reused
    assert [meta["n"] for _, _, meta, _ in drain(Spool(tmp_path, key=new_key))] == [9]


def test_a_record_renamed_on_disk_does_not_open(tmp_path):
    spool = Spool(tmp_path, key=KEY)
    spool.append({"kind": "image", "n": 1}, b"one")
    spool.append({"kind": "image", "n": 2}, b"two")
    first, second = sorted(tmp_path.glob("*.rec"))
    second.unlink()
    first.rename(second)  # record 1 passed off as record 2
    reopened = Spool(tmp_path, key=KEY)
    assert drain(reopened) == [] and reopened.take_dropped().records == 1


def test_a_key_of_the_wrong_length_is_refused(tmp_path):
    with pytest.raises(ValueError, match="32 bytes"):
        Spool(tmp_path, key=b"short")
