"""The server-health value 0-10 every heartbeat answer carries, so agents back off before it hurts."""

from __future__ import annotations


def health(inflight: int, busy_inflight: int, disk_free_bytes: int, disk_low_bytes: int = 1 << 30) -> int:
    """Server health 0-10 sent in every heartbeat answer; agents back off as it falls."""
    if disk_free_bytes < disk_low_bytes:
        return 0
    load = min(1.0, inflight / max(1, busy_inflight))
    return max(0, min(10, round(10 * (1 - load))))
