"""Blobs at rest: encrypted per exam, content-addressed, never visible half-written; a destroyed exam key
makes every copy unreadable."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from cryptography.exceptions import InvalidTag

from hall_server.store import crypto, db, exams
from hall_server.store.blobs import BlobStore


@pytest.fixture
def store(exam):
    connection = db.connect(exam.data_dir)
    yield connection
    connection.close()


def test_blob_is_encrypted_on_disk_and_decrypts_to_the_upload(exam, store):
    master = crypto.load_or_create_master_key(exam.data_dir)
    key = exams.exam_key(store, master, exam.exam_id)
    blobs = BlobStore(exam.data_dir)
    body = b"\x89PNG\r\n\x1a\n" + b"exam answer text " * 200
    sha, written = blobs.put(exam.exam_id, key, body)
    assert written and sha == hashlib.sha256(body).hexdigest()
    on_disk = blobs.path_for(exam.exam_id, sha).read_bytes()
    assert b"exam answer text" not in on_disk
    assert blobs.get(exam.exam_id, key, sha) == body
    assert blobs.put(exam.exam_id, key, body) == (sha, False)  # content-addressed: stored once
    assert list(blobs.tmp.iterdir()) == []


def test_a_blob_moved_to_another_name_or_exam_fails_to_decrypt(exam, store):
    master = crypto.load_or_create_master_key(exam.data_dir)
    key = exams.exam_key(store, master, exam.exam_id)
    blobs = BlobStore(exam.data_dir)
    sha_a, _ = blobs.put(exam.exam_id, key, b"first screen")
    sha_b, _ = blobs.put(exam.exam_id, key, b"second screen")
    shutil.copy(blobs.path_for(exam.exam_id, sha_a), blobs.path_for(exam.exam_id, sha_b))
    with pytest.raises(InvalidTag):
        blobs.get(exam.exam_id, key, sha_b)


def test_destroying_the_exam_key_makes_a_backup_copy_of_the_blobs_unreadable(exam, store, tmp_path):
    master = crypto.load_or_create_master_key(exam.data_dir)
    key = exams.exam_key(store, master, exam.exam_id)
    blobs = BlobStore(exam.data_dir)
    sha, _ = blobs.put(exam.exam_id, key, b"screen of a student")
    backup = tmp_path / "blob-backup"
    shutil.copytree(blobs.root, backup)  # e.g. last night's copy of the blob store
    store.execute(
        "UPDATE exam_key SET wrapped = NULL, destroyed_at = 'now' WHERE exam_id = ?", [exam.exam_id]
    )
    with pytest.raises(crypto.KeyUnavailable):
        exams.exam_key(store, master, exam.exam_id)
    sealed = (backup / str(exam.exam_id) / sha[:2] / sha).read_bytes()
    assert b"screen of a student" not in sealed
    with pytest.raises(InvalidTag):  # no key left on the appliance opens it; guessing one does not either
        crypto.decrypt_blob(crypto.new_exam_key(), exam.exam_id, sha, sealed)


def test_wrong_master_key_is_reported_plainly(exam, store):
    with pytest.raises(crypto.KeyUnavailable, match="wrong master.key"):
        exams.exam_key(store, b"\x00" * 32, exam.exam_id)


def test_interrupted_writes_are_swept_and_never_visible(exam):
    blobs = BlobStore(exam.data_dir)
    (blobs.tmp / "deadbeef.123.tmp").write_bytes(b"half a blob")
    assert blobs.sweep_tmp() == 1
    assert list(blobs.tmp.iterdir()) == []
