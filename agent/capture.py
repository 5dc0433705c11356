"""The capture loop: grab every monitor, decide changed or not, encode, and append records to the spool.

One :class:`CaptureLoop` lives on the capture thread with its grabber (any :data:`agent.grab.Grab`: mss, the
Wayland portal, or in tests a callable that returns synthetic frames). It ticks every interval, on focus
changes and on server instructions.

Spool records written here (the uploader turns each into one request):

- ``image``: body = 4-bit grayscale PNG, of the whole screen (a key image) or of the tiles that changed
  since the last image of that monitor (a tile update, ``agent.updates``); meta ``capture_id``,
  ``capture_meta`` (the exact ``X-Invigil-Meta`` header value), ``media_type``, and for an update ``base``
  (the capture it updates);
- ``thumbnail``: body = small grayscale JPEG of the same capture; meta ``capture_id``, ``media_type``;
- ``unchanged``: no body; meta ``record_id`` and ``unchanged`` (the wire object of ``payloads.Unchanged``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from agent.change import (
    DEFAULT_PARAMS,
    ChangeParams,
    ChangeResult,
    compare,
    thumbnail,
    thumbnail_bgrx,
    update_thumbnail_bgrx,
)
from agent.encode import (
    EncodedImage,
    encode_levels,
    encode_thumbnail,
    levels_bgrx,
    luma,
    quantise_gray4,
)
from agent.grab import Grab, MonitorFrame
from agent.spool import Spool
from agent.updates import changed_tiles, pack_tiles
from invigil import payloads
from invigil import protocol as p
from invigil import tiles as t
from invigil.timeutil import utc_now

#: Triggers that always send an image, whatever the change test says.
FORCING_TRIGGERS = ("start", "instruction", "monitors")
#: The server refuses a longer X-Invigil-Meta header (``payloads.parse_capture_meta``).
MAX_META_HEADER_CHARS = 4096


def frame_thumbnail(
    frame: MonitorFrame, scale: int, previous: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """The change-test thumbnail of a frame, from its grabbed BGRX bytes when it has them (every grab).

    ``previous`` is the (bgrx, thumbnail) of the last grab of the same monitor: then only the strips whose
    bytes changed since are averaged again (:func:`agent.change.update_thumbnail_bgrx`).
    """
    if frame.bgrx is not None and frame.height >= scale and frame.width >= scale:
        if previous is not None:
            return update_thumbnail_bgrx(previous[0], previous[1], frame.bgrx, scale)
        return thumbnail_bgrx(frame.bgrx, scale)
    return thumbnail(frame.rgb, scale)


def frame_levels(frame: MonitorFrame) -> np.ndarray:
    """The 16 gray levels of a changed frame at full resolution (straight from its BGRX bytes when it has
    them): what the PNG carries and what the next tile update is compared against."""
    return levels_bgrx(frame.bgrx) if frame.bgrx is not None else quantise_gray4(luma(frame.rgb))


def preview(thumb: np.ndarray, levels: np.ndarray, width: int) -> EncodedImage:
    """The live view's JPEG of a changed screen, ``width`` px wide (never wider than the screen).

    Made from the change test's thumbnail (block means of 8 x 8 pixels, already there) when that is wide
    enough, as for 1920 px screens and wider; from the full-resolution levels for smaller screens.
    """
    width = min(width, levels.shape[1])
    if thumb.shape[1] >= width:
        return encode_thumbnail(thumb, width)
    return encode_thumbnail(levels * np.uint8(17), width)


def new_record_id() -> str:
    """A fresh agent-made id (22 URL-safe characters, matches ``protocol.ID_PATTERN``)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class CaptureSettings:
    """Knobs of the capture loop; :func:`capture_settings` fits them to what the hall server offers."""

    change: ChangeParams = DEFAULT_PARAMS
    #: Send a full image at least this often even when nothing changed enough (a clock ticking for an hour
    #: is still worth one picture every few minutes).
    max_unchanged_s: float = 300.0
    #: Width of the live view's picture (the hall view's tiles and the seat panel are narrower).
    thumbnail_width: int = 240
    send_thumbnails: bool = True
    #: Tile side of tile updates, or None to send every changed screen whole (a server that does not offer
    #: updates in its enrolment answer gets whole screens only).
    tile: int | None = 64
    #: A whole screen (key image) at least this often, so a reviewer's view of any moment is put back
    #: together from one key image and the updates since ...
    key_every_s: float = 300.0
    #: ... and after at most this many updates in a row (the server refuses longer chains).
    max_chain: int = 100
    #: An update carrying more than this share of the screen's tiles goes as a key image instead.
    key_share: float = 0.4


def capture_settings(offer: Any) -> CaptureSettings:
    """The capture settings for a hall server whose enrolment answer said ``tile_updates: offer``.

    A server that does not offer tile updates (or not this agent's tile side) gets whole screens only.
    """
    default = CaptureSettings()
    if not isinstance(offer, dict) or default.tile not in (offer.get("tiles") or ()):
        return replace(default, tile=None)
    max_chain = offer.get("max_chain")
    if isinstance(max_chain, int) and 0 <= max_chain < default.max_chain:
        return replace(default, max_chain=max_chain)
    return default


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did for one monitor."""

    monitor: int
    kind: str  # "image" or "unchanged"
    record_id: str
    change: ChangeResult
    body_bytes: int
    #: For an image: the number of tiles of a tile update, or 0 for a whole screen.
    tiles: int = 0


@dataclass
class _LastSent:
    reference: np.ndarray
    capture_id: str
    sent_at: datetime
    #: Gray levels (0..15) of the screen the server now holds for this monitor, when updates are on.
    levels: np.ndarray | None = None
    key_at: datetime | None = None
    chain: int = 0


@dataclass
class _PreviousGrab:
    """The last grab of a monitor, whether sent or not: its bytes, thumbnail and change verdict."""

    bgrx: np.ndarray
    thumb: np.ndarray
    #: The last-sent thumbnail ``change`` was computed against (compared by identity).
    reference: np.ndarray | None
    change: ChangeResult


class CaptureLoop:
    """Turns grabs into spool records; keeps per monitor the thumbnail of the last image sent."""

    def __init__(
        self,
        grab: Grab,
        spool: Spool,
        settings: CaptureSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_record_id,
    ) -> None:
        self.grab = grab
        self.spool = spool
        self.settings = settings or CaptureSettings()
        self.clock = clock
        self.new_id = new_id
        self._last: dict[int, _LastSent] = {}
        #: Per monitor, the BGRX bytes and thumbnail of the previous grab (not the last sent image).
        self._previous: dict[int, _PreviousGrab] = {}
        self._geometry: tuple[tuple[int, int, int, int], ...] | None = None
        #: Set by :meth:`send_key_images` (from the upload thread): the next image of each monitor is whole.
        self._rekey = False
        self._images_dropped = spool.images_dropped

    def send_key_images(self) -> None:
        """Send the next image of every monitor whole: the server lost an image that updates built on.

        Safe from the upload thread, which learns of the loss when the server refuses an update for its base.
        """
        self._rekey = True

    def tick(
        self, trigger: str = "interval", focused_app: str | None = None, window_title: str | None = None
    ) -> list[TickOutcome]:
        """Grab all monitors once and spool an image or an "unchanged" record for each.

        A tick comes every interval, on a focus/title change (trigger "focus"/"title") and on a server
        instruction ("instruction"). A change in the monitor layout forces an image of every monitor with
        trigger "monitors".
        """
        if trigger not in p.CAPTURE_TRIGGERS:
            raise ValueError(f"unknown capture trigger {trigger!r}")
        frames = list(self.grab())[: p.MAX_MONITORS]
        geometry = tuple((f.left, f.top, f.width, f.height) for f in frames)
        if self._geometry is not None and geometry != self._geometry and trigger not in FORCING_TRIGGERS:
            trigger = "monitors"
        self._geometry = geometry
        for gone in set(self._previous) - {frame.index for frame in frames}:
            del self._previous[gone]  # an unplugged monitor's last grab
        now = self.clock()
        return [self._one(frame, trigger, now, focused_app, window_title) for frame in frames]

    def _one(
        self,
        frame: MonitorFrame,
        trigger: str,
        now: datetime,
        focused_app: str | None,
        window_title: str | None,
    ) -> TickOutcome:
        previous = self._previous.pop(frame.index, None)
        last_grab = (previous.bgrx, previous.thumb) if previous is not None else None
        thumb = frame_thumbnail(frame, self.settings.change.scale, last_grab)
        last = self._last.get(frame.index)
        reference = last.reference if last else None
        if previous is not None and previous.reference is reference and np.array_equal(previous.thumb, thumb):
            change = previous.change  # same thumbnail against the same reference: the same verdict
        else:
            change = compare(reference, thumb, self.settings.change)
        if frame.bgrx is not None:
            self._previous[frame.index] = _PreviousGrab(frame.bgrx, thumb, reference, change)
        stale = last is not None and (now - last.sent_at).total_seconds() >= self.settings.max_unchanged_s
        if last is not None and not change.changed and not stale and trigger not in FORCING_TRIGGERS:
            return self._unchanged(frame.index, now, last, change)
        levels = frame_levels(frame)
        image, update = self._image(frame.index, levels, trigger, now, whole=stale)
        if image is None:
            # The change test saw a change, but not in the 16 gray levels the server keeps: this thumbnail
            # is the new reference, so the same screen does not count as a change again next tick.
            assert last is not None
            last.reference = thumb
            return self._unchanged(frame.index, now, last, change)
        capture_id = self.new_id()
        base = last.capture_id if update is not None and last is not None else None
        meta = payloads.CaptureMeta(
            monitor=frame.index,
            agent_time=now,
            sha256=image.sha256,
            width=levels.shape[1],
            height=levels.shape[0],
            trigger=trigger,
            focused_app=focused_app[: p.MAX_APP_CHARS] if focused_app else None,
            window_title=window_title[: p.MAX_TITLE_CHARS] if window_title else None,
            base=base,
            tile=self.settings.tile if base else None,
            tiles=update[1] if update else None,
        )
        while len(meta.as_header()) > MAX_META_HEADER_CHARS and meta.window_title:
            # ensure_ascii spells an emoji as 12 characters: 512 of them would not fit the header.
            meta = replace(meta, window_title=meta.window_title[: len(meta.window_title) // 2])
        self.spool.append(
            {
                "kind": "image",
                "capture_id": capture_id,
                "capture_meta": meta.as_header(),
                "media_type": image.media_type,
                **({"base": base} if base else {}),
            },
            image.data,
        )
        if self.settings.send_thumbnails:
            thumb_image = preview(thumb, levels, self.settings.thumbnail_width)
            self.spool.append(
                {"kind": "thumbnail", "capture_id": capture_id, "media_type": thumb_image.media_type},
                thumb_image.data,
            )
        if update is None:
            sent = _LastSent(thumb, capture_id, now, levels if self.settings.tile else None, now, 0)
        else:
            assert last is not None
            sent = _LastSent(thumb, capture_id, now, levels, last.key_at, last.chain + 1)
        self._last[frame.index] = sent
        return TickOutcome(
            frame.index, "image", capture_id, change, len(image.data), update[0] if update else 0
        )

    def _unchanged(self, monitor: int, now: datetime, last: _LastSent, change: ChangeResult) -> TickOutcome:
        """Spool an "unchanged" record: the screen still shows the last image sent."""
        record_id = self.new_id()
        unchanged = payloads.Unchanged(monitor, now, last.capture_id)
        self.spool.append({"kind": "unchanged", "record_id": record_id, "unchanged": unchanged.as_wire()})
        return TickOutcome(monitor, "unchanged", record_id, change, 0)

    def _key_due(self, last: _LastSent, trigger: str, now: datetime) -> str | None:
        """Why the next image of a monitor must be whole, or None when a tile update will do."""
        if self.settings.tile is None or last.levels is None or last.key_at is None:
            return "updates off"
        if trigger in ("start", "monitors"):
            return trigger
        if (now - last.key_at).total_seconds() >= self.settings.key_every_s:
            return "key image due"
        if last.chain >= self.settings.max_chain:
            return "chain long enough"
        return None

    def _image(
        self, monitor: int, levels: np.ndarray, trigger: str, now: datetime, whole: bool = False
    ) -> tuple[EncodedImage | None, tuple[int, str] | None]:
        """The PNG to send for ``levels`` and, for a tile update, its tile count and tile map.

        ``whole`` asks for a whole screen (the screen went unsent for ``max_unchanged_s``). (None, None)
        when updates are on and no tile changed: the caller sends "unchanged" instead.
        """
        last = self._last.get(monitor)
        rekey, self._rekey = self._rekey, False
        if self.spool.images_dropped != self._images_dropped:  # the spool's cap dropped what updates need
            self._images_dropped, rekey = self.spool.images_dropped, True
        if rekey:
            for other in self._last.values():
                other.levels = None  # every monitor's next image is whole
        tile = self.settings.tile
        if whole or rekey or last is None or tile is None or self._key_due(last, trigger, now) is not None:
            return encode_levels(levels), None
        assert last.levels is not None
        if last.levels.shape != levels.shape:
            return encode_levels(levels), None
        indices = changed_tiles(last.levels, levels, tile)
        rows, cols = t.grid(levels.shape[1], levels.shape[0], tile)
        if not indices:
            return None, None
        if len(indices) > self.settings.key_share * rows * cols:
            return encode_levels(levels), None
        return encode_levels(pack_tiles(levels, indices, tile)), (
            len(indices),
            t.encode_map(indices, rows, cols),
        )

    def run(
        self,
        stop: threading.Event,
        interval_s: float | Callable[[], float],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Tick until ``stop`` is set: "start" first, then "interval" every ``interval_s`` seconds.

        ``interval_s`` may be a callable so the heartbeat can change it. Errors go to ``on_error`` (for
        instance a ``capture_error`` device event) or, without one, end the loop.
        """
        trigger = "start"
        while not stop.is_set():
            try:
                self.tick(trigger)
                trigger = "interval"
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            stop.wait(interval_s() if callable(interval_s) else interval_s)
