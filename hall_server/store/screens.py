"""The one way to an exam's images: its key, decryption, tile updates put back together, and media types.

Whoever shows a stored image to a person reads it here: the dashboard's thumbnails and full-size view,
the reports and the exports. :class:`Screens` belongs to one process (the blob store, the hall master key
and the exam keys it unwrapped a moment ago); :meth:`Screens.exam` opens one exam's images as
:class:`ExamScreens`, which remembers the small images it decrypted (thumbnails) for as long as it lives
(one request, one report). No decrypted screen is kept beyond that: a server process never holds a hall's
screens in memory.

Putting a tile update's screen back together costs about two bytes a screen pixel for as long as it takes
(``frames``), so a process does only :data:`REASSEMBLIES_AT_ONCE` at a time; a request that waits longer
than :data:`REASSEMBLY_WAIT_S` for its turn gets :class:`ScreensBusy` (the dashboard answers 503 with
Retry-After) instead of piling up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
#: Screens one process puts back together at once (each holds about two bytes a screen pixel) ...
REASSEMBLIES_AT_ONCE = 2
#: ... and how long a request waits for its turn before it is told to come back.
REASSEMBLY_WAIT_S = 5.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own counsel
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _give_back_memory() -> None:
    """Return the freed pages of a screen just put together to the system. glibc keeps freed memory in
    the allocation arena of the thread that freed it, so across a server's many threads each arena would
    keep a screen's worth of it resident."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class ScreensBusy(RuntimeError):
    """Every turn to put a screen together stayed taken for the whole wait: ask again after
    ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
    #: The process's turns to put a screen together (shared by all its ExamScreens), and the wait for one.
    reassemblies: threading.Semaphore = field(
        default_factory=lambda: threading.Semaphore(REASSEMBLIES_AT_ONCE)
    )
    reassembly_wait_s: float = REASSEMBLY_WAIT_S
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)
    _composer: frames.Composer = field(default_factory=frames.Composer, repr=False)

    def image(self, sha256_hex: str) -> bytes:
        """One stored image as it was uploaded (a whole screen, a tile-update strip or a thumbnail);
        :class:`frames.ScreenUnavailable` when it is gone. Kept for the life of this object."""
        body = self._cache.get(sha256_hex)
        if body is None:
            body = self._cache[sha256_hex] = self._decrypt(sha256_hex)
        return body

    def _decrypt(self, sha256_hex: str) -> bytes:
        """A stored image, not kept: the pieces of a screen are read once each and may be megabytes."""
        body = self._cache.get(sha256_hex)
        if body is not None:
            return body
        try:
            return self.blobs.get(self.exam_id, self.key, sha256_hex)
        except (FileNotFoundError, ValueError):
            raise frames.ScreenUnavailable(f"image {sha256_hex[:12]} is not stored") from None

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn to put a screen together; :class:`ScreensBusy` after the wait."""
        if not self.reassemblies.acquire(timeout=self.reassembly_wait_s):
            raise ScreensBusy(
                f"the hall server is putting other screens together; none came free in "
                f"{self.reassembly_wait_s:g} s: ask again in a moment",
                max(1, math.ceil(self.reassembly_wait_s)),
            )
        try:
            yield
        finally:
            self.reassemblies.release()
            _give_back_memory()

    def find(self, sha256_hex: str) -> bytes | None:
        """:meth:`image`, or None when it is gone."""
        try:
            return self.image(sha256_hex)
        except frames.ScreenUnavailable:
            return None

    def screen(self, session_id: int, capture_id: str) -> bytes:
        """What the screen showed at a capture, whole, as stored or put back together from its tile
        updates (PNG); :class:`frames.ScreenUnavailable` when it or an image it builds on is gone,
        :class:`ScreensBusy` when no turn to put it together came free in time."""
        return frames.screen_png(self.db, session_id, capture_id, self._decrypt, self._composer, self._turn)

    def find_screen(self, session_id: int, capture_id: str) -> bytes | None:
        """:meth:`screen`, or None when a piece of it is gone (:class:`ScreensBusy` still raises)."""
        try:
            return self.screen(session_id, capture_id)
        except frames.ScreenUnavailable:
            return None


class Screens:
    """A process's way to the exams' images: the blob store, the hall master key, and the exam keys
    unwrapped in the last :data:`KEY_TTL_S` seconds (every thumbnail would otherwise unwrap one)."""

    def __init__(
        self,
        blobs: BlobStore,
        master_key: bytes,
        key_ttl_s: float = KEY_TTL_S,
        reassemblies_at_once: int = REASSEMBLIES_AT_ONCE,
        reassembly_wait_s: float = REASSEMBLY_WAIT_S,
    ) -> None:
        self.blobs = blobs
        self.master_key = master_key
        self.key_ttl_s = key_ttl_s
        self._keys: dict[int, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        #: Turns to put a tile update's screen together, shared by every request of this process.
        self.reassemblies_at_once = reassemblies_at_once
        self.reassemblies = threading.Semaphore(reassemblies_at_once)
        self.reassembly_wait_s = reassembly_wait_s

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
        return ExamScreens(
            db, self.blobs, self.exam_key(db, exam_id), exam_id, self.reassemblies, self.reassembly_wait_s
        )
