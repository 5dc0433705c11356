"""Content-addressed, encrypted screenshot blobs on disk, written tmp -> fsync -> rename.

Layout: ``<data_dir>/blobs/<exam_id>/<sha[:2]>/<sha>``; ``<data_dir>/blobs/.tmp`` holds writes in progress
(same filesystem, so the rename is atomic). A reader never sees a partial blob: a file either has its
final name and full content, or does not exist under that name. Files are created 0600, folders 0700.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

from hall_server.store import crypto, private_files
from hall_server.store.private_files import fsync_dir


class BlobStore:
    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "blobs"
        self.tmp = self.root / ".tmp"
        private_files.make_dirs(self.tmp)

    def path_for(self, exam_id: int, sha256_hex: str) -> Path:
        # sha256_hex was checked against SHA256_RE or computed by us: it can never hold a path separator.
        return self.root / str(int(exam_id)) / sha256_hex[:2] / sha256_hex

    def exists(self, exam_id: int, sha256_hex: str) -> bool:
        return self.path_for(exam_id, sha256_hex).exists()

    def put(self, exam_id: int, exam_key: bytes, plaintext: bytes) -> tuple[str, bool]:
        """Store ``plaintext`` durably; returns (sha256, written). Returns only once the file is fsynced
        under its final name; an identical blob already stored is not written again."""
        sha = hashlib.sha256(plaintext).hexdigest()
        final = self.path_for(exam_id, sha)
        if final.exists():
            return sha, False
        sealed = crypto.encrypt_blob(exam_key, exam_id, sha, plaintext)
        tmp = self.tmp / f"{sha}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(sealed)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if not final.parent.exists():
            private_files.make_dirs(final.parent)
            fsync_dir(final.parent.parent)
            fsync_dir(final.parent.parent.parent)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return sha, True

    def get(self, exam_id: int, exam_key: bytes, sha256_hex: str) -> bytes:
        sealed = self.path_for(exam_id, sha256_hex).read_bytes()
        return crypto.decrypt_blob(exam_key, exam_id, sha256_hex, sealed)

    def delete_exam(self, exam_id: int) -> int:
        """Remove every blob of one exam (retention); returns how many files were removed."""
        folder = self.root / str(int(exam_id))
        if not folder.exists():
            return 0
        count = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        fsync_dir(self.root)
        return count

    def sweep_tmp(self) -> int:
        """Delete writes a crash interrupted (called at server start); they were never acknowledged."""
        removed = 0
        for path in self.tmp.glob("*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed
