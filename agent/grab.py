"""Grab every monitor with mss; the frames every grabber returns, and the error it raises when it cannot.

The capture loop (``agent.capture``) takes any :data:`Grab` callable: :class:`MssGrabber` on X11, Windows
and macOS, ``agent.portal.PortalGrabber`` on Wayland, and in tests their own that return synthetic frames.
Which one fits this session is decided by ``agent.display``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from invigil import protocol


class MonitorFrame:
    """One monitor's pixels at one moment. ``index`` is the wire's monitor number (0 = first monitor).

    Pixels come either as ``rgb`` ((h, w, 3) uint8, RGB order; synthetic frames in tests) or as ``bgrx``
    ((h, w, 4) uint8, mss's B, G, R, pad order, usually a view of the grabbed bytes). The capture loop reads
    ``bgrx`` when present, so a real grab is never converted to RGB unless someone asks for :attr:`rgb`.
    A frame's pixels must not change once it is made: the capture loop keeps the previous grab's ``bgrx``
    to see which strips changed, so a :data:`Grab` returns fresh buffers each call (mss does).
    """

    __slots__ = ("_rgb", "bgrx", "height", "index", "left", "top", "width")

    def __init__(
        self,
        index: int,
        left: int,
        top: int,
        width: int,
        height: int,
        rgb: np.ndarray | None = None,
        *,
        bgrx: np.ndarray | None = None,
    ) -> None:
        self.index, self.left, self.top, self.width, self.height = index, left, top, width, height
        if (rgb is None) == (bgrx is None):
            raise ValueError(f"monitor {index}: give the pixels as rgb or as bgrx, not both or neither")
        pixels, channels, name = (rgb, 3, "RGB") if rgb is not None else (bgrx, 4, "BGRX")
        assert pixels is not None
        if pixels.shape != (height, width, channels) or pixels.dtype != np.uint8:
            raise ValueError(
                f"monitor {index}: pixels {pixels.shape} {pixels.dtype} do not match "
                f"{width}x{height} {name} uint8"
            )
        self._rgb = rgb
        #: (height, width, 4) uint8 BGRX as grabbed, or None for a frame made from RGB.
        self.bgrx = bgrx

    @property
    def rgb(self) -> np.ndarray:
        """(height, width, 3) uint8, RGB order, C-contiguous; converted from ``bgrx`` on first use."""
        if self._rgb is None:
            assert self.bgrx is not None
            bgrx = np.ascontiguousarray(self.bgrx)
            # Pillow's C unpacker reorders BGRX to RGB about twice as fast as a strided numpy copy.
            image = Image.frombuffer("RGB", (self.width, self.height), bgrx, "raw", "BGRX", 0, 1)
            self._rgb = np.asarray(image)
        return self._rgb


#: What the capture loop calls to get the current pixels of every monitor.
Grab = Callable[[], Sequence[MonitorFrame]]


class CaptureUnavailable(RuntimeError):
    """The screen cannot be captured here; the message is for the student, ``reason`` for the device event."""

    reason = "unavailable"


def frame_from_bgra(index: int, monitor: Mapping[str, Any], bgra: np.ndarray) -> MonitorFrame:
    """A frame of an mss-style (h, w, 4) BGRA array, without copying it."""
    height, width = bgra.shape[:2]
    return MonitorFrame(index, int(monitor["left"]), int(monitor["top"]), width, height, bgrx=bgra)


class MssGrabber:
    """The real :data:`Grab`: all physical monitors through one mss instance.

    Create, call and close it on the same thread (the capture thread): the X11 connection behind mss is
    not meant to be shared between threads.
    """

    def __init__(self, display: str | None = None) -> None:
        import mss  # imported here so that tests and the server never need a display library

        self._mss = mss.MSS(display=display) if display else mss.MSS()

    def monitors(self) -> list[dict[str, Any]]:
        """Geometry of each physical monitor (mss's entry 0, the union of all, is left out)."""
        return [dict(m) for m in self._mss.monitors[1 : protocol.MAX_MONITORS + 1]]

    def __call__(self) -> list[MonitorFrame]:
        frames = []
        for index, monitor in enumerate(self.monitors()):
            shot = self._mss.grab(monitor)
            bgra = np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)  # no copy
            frames.append(frame_from_bgra(index, monitor, bgra))
        return frames

    def close(self) -> None:
        self._mss.close()

    def __enter__(self) -> MssGrabber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
