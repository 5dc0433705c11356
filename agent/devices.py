"""Device checks: monitor layout, VPN/tunnel interfaces, a second network path and process categories,
reported only on change.

:meth:`DeviceChecker.check` runs once per capture interval, on the capture thread; the events it returns
are spooled. What leaves the machine is a category and the *matched* names only: the
process list itself is never stored, sent or logged (docs/agent.md). A second network path
(``agent.netpaths``) leaves as a category and a count, without names. The matching is pure
(:func:`match_processes`, :func:`match_interfaces`); psutil and mss sit behind injected callables so tests
feed recorded data.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from invigil import protocol as p
from invigil.payloads import DeviceEvent

#: Interface name patterns (lower case, fnmatch) and the category the server's rule sees.
INTERFACE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("wg*", "vpn"),
    ("ipsec*", "vpn"),
    ("*vpn*", "vpn"),
    ("nordlynx*", "vpn"),
    ("tailscale*", "vpn"),
    ("zt*", "vpn"),
    ("*wireguard*", "vpn"),
    ("tun*", "tunnel"),
    ("tap*", "tunnel"),
    ("utun*", "tunnel"),
    ("ppp*", "tunnel"),
    ("wintun*", "tunnel"),
)
#: The shipped table (package data next to this module; organisers add theirs with --categories).
SHIPPED_CATEGORIES = Path(__file__).with_name("categories.json")
#: At most this many matched names per event (a detail must stay under ``MAX_DETAIL_BYTES``).
MAX_NAMES = 20

Categories = dict[str, tuple[str, ...]]


class CategoriesError(ValueError):
    """A categories file cannot be used; the message names the problem."""


def parse_categories(raw: Any, source: str = "categories file") -> Categories:
    """Read ``{"categories": {category: [pattern, ...]}}`` (pure); categories must be the protocol's."""
    table = raw.get("categories") if isinstance(raw, dict) else None
    if not isinstance(table, dict):
        raise CategoriesError(f'{source}: expected {{"categories": {{"remote_access": ["anydesk", ...]}}}}')
    parsed: Categories = {}
    for category, patterns in table.items():
        if category not in p.PROCESS_CATEGORIES:
            raise CategoriesError(
                f"{source}: unknown category {category!r} (known: {', '.join(p.PROCESS_CATEGORIES)})"
            )
        if not isinstance(patterns, list) or not all(isinstance(x, str) and x.strip() for x in patterns):
            raise CategoriesError(f"{source}: {category} must be a list of non-empty name patterns")
        parsed[category] = tuple(x.strip().lower() for x in patterns)
    return parsed


def load_categories(extra_files: Iterable[str | Path] = ()) -> Categories:
    """The shipped ``agent/categories.json`` plus each organiser file's patterns (``--categories FILE``)."""
    try:
        shipped = SHIPPED_CATEGORIES.read_text("utf-8")
    except OSError as exc:
        raise CategoriesError(
            f"the agent's own {SHIPPED_CATEGORIES} is missing: reinstall it ({exc})"
        ) from None
    merged = parse_categories(json.loads(shipped), "agent/categories.json")
    for path in extra_files:
        try:
            raw = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CategoriesError(f"cannot read categories file {path}: {exc}") from None
        for category, patterns in parse_categories(raw, str(path)).items():
            merged[category] = tuple(dict.fromkeys((*merged.get(category, ()), *patterns)))
    return merged


def _bare_name(name: str) -> str:
    name = name.strip().lower()
    for suffix in (".exe", ".app"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


@functools.lru_cache(maxsize=8)
def _compiled(categories: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    # One regex per category instead of one fnmatch call per pattern: the process scan runs every interval
    # and was the agent's largest CPU item (bench/agent.py, ~15 ms per interval).
    return tuple(
        (category, re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns)))
        for category, patterns in categories
        if patterns
    )


def match_processes(names: Iterable[str], categories: Categories) -> dict[str, tuple[str, ...]]:
    """Category -> sorted matched process names (pure); categories without a match are left out."""
    found: dict[str, set[str]] = {}
    compiled = _compiled(tuple(sorted(categories.items())))
    for name in {_bare_name(n) for n in names if n}:
        for category, pattern in compiled:
            if pattern.match(name):
                found.setdefault(category, set()).add(name)
    return {c: tuple(sorted(v)[:MAX_NAMES]) for c, v in sorted(found.items())}


def match_interfaces(up: Mapping[str, bool]) -> dict[str, tuple[str, ...]]:
    """Category ("vpn" / "tunnel") -> names of *up* interfaces matching :data:`INTERFACE_PATTERNS` (pure)."""
    found: dict[str, set[str]] = {}
    for name, is_up in up.items():
        if not is_up:
            continue
        lowered = name.lower()
        for pattern, category in INTERFACE_PATTERNS:
            if fnmatch.fnmatchcase(lowered, pattern):
                found.setdefault(category, set()).add(name)
                break
    return {c: tuple(sorted(v)[:MAX_NAMES]) for c, v in sorted(found.items())}


def monitor_layout(monitors: Iterable[Mapping[str, Any]]) -> tuple[tuple[int, int, int, int], ...]:
    """mss monitor dicts -> ((left, top, width, height), ...) in mss order (pure)."""
    return tuple((int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"])) for m in monitors)


def psutil_process_names() -> list[str]:
    """Names of running processes (only the name attribute is read); the real source for the checker.

    On Windows the names come from a Toolhelp snapshot (``agent.winprocess``), which opens no process.
    """
    if sys.platform == "win32":
        from agent.winprocess import process_table

        return list(process_table().values())
    import psutil

    return [proc.info.get("name") or "" for proc in psutil.process_iter(["name"])]


def psutil_interfaces() -> dict[str, bool]:
    """Interface name -> is up, from ``psutil.net_if_stats``; the real source for the checker."""
    import psutil

    return {name: stats.isup for name, stats in psutil.net_if_stats().items()}


@dataclass
class DeviceChecker:
    """Remembers what it last reported and returns device events only for changes.

    ``list_monitors`` returns mss-style monitor dicts (the capture thread's grabber feeds it; None skips
    the monitor check), ``list_interfaces`` and ``list_processes`` default to psutil. ``list_paths(up, skip)``
    returns category -> count of second network paths (``agent.netpaths.PathProbe.paths``; None skips it).
    """

    categories: Categories
    new_id: Callable[[], str]
    list_monitors: Callable[[], list[dict[str, Any]]] | None = None
    list_interfaces: Callable[[], Mapping[str, bool]] = psutil_interfaces
    list_processes: Callable[[], Iterable[str]] = psutil_process_names
    list_paths: Callable[[Mapping[str, bool], Collection[str]], dict[str, int]] | None = None
    _layout: tuple[tuple[int, int, int, int], ...] | None = None
    _interfaces: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _processes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _paths: dict[str, int] = field(default_factory=dict)

    def check_monitors(self, now: datetime) -> list[DeviceEvent]:
        """The monitor check alone: a ``monitors`` event when the layout changed since it was last reported.
        Run before every capture, so the server knows a new layout before it receives its screens (it
        refuses a screen of a size no reported monitor has)."""
        if self.list_monitors is None:
            return []
        layout = monitor_layout(self.list_monitors())
        if layout == self._layout:
            return []
        self._layout = layout
        detail = {"count": len(layout), "geometry": [list(g) for g in layout]}
        return [DeviceEvent(self.new_id(), "monitors", now, detail)]

    def check(self, now: datetime) -> list[DeviceEvent]:
        """Run every check once and return the events of what changed since the last run."""
        events = self.check_monitors(now)
        up = self.list_interfaces()
        matched = match_interfaces(up)
        events += self._diff("network_interface", self._interfaces, matched, now)
        self._interfaces = matched
        if self.list_paths is not None:
            paths = self.list_paths(up, {name for names in matched.values() for name in names})
            events += self._path_diff(self._paths, paths, now)
            self._paths = paths
        running = match_processes(self.list_processes(), self.categories)
        events += self._diff("process_category", self._processes, running, now)
        self._processes = running
        return events

    def _diff(
        self,
        kind: str,
        before: dict[str, tuple[str, ...]],
        after: dict[str, tuple[str, ...]],
        now: datetime,
    ) -> list[DeviceEvent]:
        events = []
        for category in sorted(set(before) | set(after)):
            old, new = before.get(category, ()), after.get(category, ())
            if old == new:
                continue
            # "ended" lets the server tell "it stopped" from "it started"; names are those still present.
            state = "present" if new else "ended"
            detail = {"category": category, "names": list(new), "state": state}
            if not new:
                detail["ended_names"] = list(old)
            events.append(DeviceEvent(self.new_id(), kind, now, detail))
        return events

    def _path_diff(self, before: dict[str, int], after: dict[str, int], now: datetime) -> list[DeviceEvent]:
        """``network_interface`` events for second paths: the category and how many, never a name."""
        events = []
        for category in sorted(set(before) | set(after)):
            count = after.get(category, 0)
            if before.get(category, 0) == count:
                continue
            detail = {"category": category, "count": count, "state": "present" if count else "ended"}
            events.append(DeviceEvent(self.new_id(), "network_interface", now, detail))
        return events
