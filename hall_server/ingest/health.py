"""The server's load as agents see it: the health value 0-10 every heartbeat answer carries, so agents back
off before it hurts, and overload, where the agent API answers ``503`` with ``Retry-After`` before it reads a
request's body.

Load is what a writer meets, not how many threads are busy: the number of writers of this process queued
for the store's write lock (``store.writegate.WriteGate.waiting``) and the recent acknowledgement latency
of the agent API (the mean over the last ``LATENCY_WINDOW_S`` of the answers it served). Refused requests
are not counted, so a server that refuses everything for a moment sees its latency window empty and
accepts again: overload never locks itself in.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: The latency the health value and the overload decision look at: the answers of the last seconds.
LATENCY_WINDOW_S = 2.0


@dataclass
class AckLatency:
    """Acknowledgement times of the agent API in this process, over a sliding window (thread-safe)."""

    window_s: float = LATENCY_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _samples: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=4096)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, ms: float) -> None:
        with self._lock:
            self._samples.append((self.clock(), ms))

    def recent_ms(self) -> float:
        """The mean acknowledgement time of the last ``window_s`` (0 with no answer in it)."""
        horizon = self.clock() - self.window_s
        with self._lock:
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()
            if not self._samples:
                return 0.0
            return sum(ms for _, ms in self._samples) / len(self._samples)


@dataclass(frozen=True)
class Limits:
    """From the settings: where health reaches 0, and past which the API refuses with 503."""

    busy_queue: int = 16
    busy_latency_ms: float = 400.0
    overload_queue: int = 48
    overload_latency_ms: float = 2000.0
    retry_after_s: int = 5

    @classmethod
    def from_settings(cls, settings: dict[str, object]) -> Limits:
        return cls(
            int(settings["health_busy_queue"]),  # type: ignore[call-overload]
            float(settings["health_busy_latency_ms"]),  # type: ignore[arg-type]
            int(settings["overload_queue"]),  # type: ignore[call-overload]
            float(settings["overload_latency_ms"]),  # type: ignore[arg-type]
            int(settings["overload_retry_after_s"]),  # type: ignore[call-overload]
        )


def health(
    queue: int, latency_ms: float, disk_free_bytes: int, limits: Limits, disk_low_bytes: int = 1 << 30
) -> int:
    """Server health 0-10 (pure): 10 idle, falling as the write queue or the latency nears its busy limit,
    0 when either reaches it or the disk is nearly full."""
    if disk_free_bytes < disk_low_bytes:
        return 0
    load = max(queue / max(1, limits.busy_queue), latency_ms / max(1.0, limits.busy_latency_ms))
    return max(0, min(10, round(10 * (1 - min(1.0, load)))))


def overloaded(queue: int, latency_ms: float, limits: Limits) -> bool:
    """Whether to refuse a request with 503 before reading it (pure); a limit of 0 is off."""
    by_queue = limits.overload_queue > 0 and queue >= limits.overload_queue
    by_latency = limits.overload_latency_ms > 0 and latency_ms >= limits.overload_latency_ms
    return by_queue or by_latency
