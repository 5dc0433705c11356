"""The one way to an exam's images: its key, decryption, tile updates put back together, and media types.

Whoever shows a stored image to a person reads it here: the dashboard's thumbnails and full-size view,
the reports and the exports. :class:`Screens` belongs to one process (the blob store, the hall master key
and the exam keys it unwrapped a moment ago); :meth:`Screens.exam` opens one exam's images as
:class:`ExamScreens`, which remembers what it decrypted for as long as it lives (one request, one report).
No decrypted screen is kept beyond that: a server process never holds a hall's screens in memory.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils
from PIL import Image

from hall_server.store import crypto, exams, frames, images
from hall_server.store.blobs import BlobStore
from invigil.protocol import IMAGE_MEDIA_TYPES

#: How long an unwrapped exam key is reused: once retention destroyed a key, no process decrypts with it
#: for longer than this.
KEY_TTL_S = 60.0
_KEYS_MAX = 64


def media_type(body: bytes) -> str:
    """The media type of a stored image, from its magic bytes (``application/octet-stream`` when unknown)."""
    return IMAGE_MEDIA_TYPES.get(images.sniff_format(body) or "", "application/octet-stream")


def as_png(body: bytes) -> bytes:
    """A stored image as PNG (what the agent sends already is one; a JPEG or WebP thumbnail is converted)."""
    if images.sniff_format(body) == "png":
        return body
    with Image.open(io.BytesIO(body)) as image:
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()


@dataclass
class ExamScreens:
    """One exam's stored images, decrypted with its key; remembers what it decrypted while it lives."""

    db: sqlite_utils.Database
    blobs: BlobStore
    key: bytes
    exam_id: int
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)
    _composer: frames.Composer = field(default_factory=frames.Composer, repr=False)

    def image(self, sha256_hex: str) -> bytes:
        """One stored image as it was uploaded (a whole screen, a tile-update strip or a thumbnail);
        :class:`frames.ScreenUnavailable` when it is gone."""
        body = self._cache.get(sha256_hex)
        if body is None:
            try:
                body = self.blobs.get(self.exam_id, self.key, sha256_hex)
            except (FileNotFoundError, ValueError):
                raise frames.ScreenUnavailable(f"image {sha256_hex[:12]} is not stored") from None
            self._cache[sha256_hex] = body
        return body

    def find(self, sha256_hex: str) -> bytes | None:
        """:meth:`image`, or None when it is gone."""
        try:
            return self.image(sha256_hex)
        except frames.ScreenUnavailable:
            return None

    def screen(self, session_id: int, capture_id: str) -> bytes:
        """What the screen showed at a capture, whole, as stored or put back together from its tile
        updates (PNG); :class:`frames.ScreenUnavailable` when it or an image it builds on is gone."""
        return frames.screen_png(self.db, session_id, capture_id, self.image, self._composer)

    def find_screen(self, session_id: int, capture_id: str) -> bytes | None:
        """:meth:`screen`, or None when a piece of it is gone."""
        try:
            return self.screen(session_id, capture_id)
        except frames.ScreenUnavailable:
            return None


class Screens:
    """A process's way to the exams' images: the blob store, the hall master key, and the exam keys
    unwrapped in the last :data:`KEY_TTL_S` seconds (every thumbnail would otherwise unwrap one)."""

    def __init__(self, blobs: BlobStore, master_key: bytes, key_ttl_s: float = KEY_TTL_S) -> None:
        self.blobs = blobs
        self.master_key = master_key
        self.key_ttl_s = key_ttl_s
        self._keys: dict[int, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_data_dir(cls, data_dir: str | Path) -> Screens:
        """For commands run on the appliance: the data directory's blob store and master key."""
        return cls(BlobStore(data_dir), crypto.load_or_create_master_key(data_dir))

    def exam_key(self, db: sqlite_utils.Database, exam_id: int) -> bytes:
        """The exam's blob key; :class:`crypto.KeyUnavailable` once retention destroyed it."""
        now = time.monotonic()
        with self._lock:
            hit = self._keys.get(exam_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = exams.exam_key(db, self.master_key, exam_id)
        with self._lock:
            if len(self._keys) >= _KEYS_MAX:
                self._keys.clear()
            self._keys[exam_id] = (now + self.key_ttl_s, key)
        return key

    def exam(self, db: sqlite_utils.Database, exam_id: int) -> ExamScreens:
        """One exam's images; :class:`crypto.KeyUnavailable` once retention destroyed its key."""
        return ExamScreens(db, self.blobs, self.exam_key(db, exam_id), exam_id)
