"""Payload shapes of the agent API and their validation (pure, stdlib only).

The agent builds these dataclasses and sends ``as_wire()``; the hall server reads requests with the
``parse_*`` functions, which raise :class:`~invigil.protocol.ProtocolError` naming the first problem.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from invigil import protocol as p
from invigil import tiles as t
from invigil.timeutil import from_wire, to_wire


def _need_object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise p.ProtocolError("not_an_object", f"{what} must be a JSON object")
    return payload


def _unknown_keys(payload: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(payload) - allowed)
    if extra:
        raise p.ProtocolError("unknown_field", f"{what} has unknown field(s): {', '.join(extra)[:200]}")


def _str(payload: dict[str, Any], key: str, *, max_len: int, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise p.ProtocolError("missing_field", f"field {key!r} is required")
        return None
    if not isinstance(value, str):
        raise p.ProtocolError("bad_type", f"field {key!r} must be a string")
    if len(value) > max_len:
        raise p.ProtocolError("too_long", f"field {key!r} is longer than {max_len} characters")
    if "\x00" in value:
        raise p.ProtocolError("bad_value", f"field {key!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800") is no text the store can keep
        raise p.ProtocolError("bad_value", f"field {key!r} is not valid Unicode (lone surrogate)") from None
    return value


def _int(payload: dict[str, Any], key: str, *, lo: int, hi: int, required: bool = True) -> int | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise p.ProtocolError("missing_field", f"field {key!r} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise p.ProtocolError("bad_type", f"field {key!r} must be an integer")
    if not lo <= value <= hi:
        raise p.ProtocolError("out_of_range", f"field {key!r} must be between {lo} and {hi}")
    return value


def _time(payload: dict[str, Any], key: str) -> datetime:
    text = _str(payload, key, max_len=40)
    try:
        return from_wire(text or "")
    except (ValueError, OverflowError) as exc:  # OverflowError: the offset shifts year 1 or 9999 out of range
        raise p.ProtocolError("bad_time", f"field {key!r}: {exc}") from None


def _choice(payload: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = _str(payload, key, max_len=64)
    if value not in choices:
        raise p.ProtocolError("bad_value", f"field {key!r} must be one of: {', '.join(choices)}")
    return value


def check_id(value: Any, what: str = "id") -> str:
    """Agent-made ids are 8-64 URL-safe characters: never a path, never empty."""
    if not isinstance(value, str) or not p.ID_RE.fullmatch(value):
        raise p.ProtocolError("bad_id", f"{what} must be 8-64 characters of A-Z a-z 0-9 _ -")
    return value


def _detail(payload: dict[str, Any]) -> dict[str, Any]:
    detail = payload.get("detail", {})
    if not isinstance(detail, dict):
        raise p.ProtocolError("bad_type", "field 'detail' must be a JSON object")
    if len(json.dumps(detail)) > p.MAX_DETAIL_BYTES:
        raise p.ProtocolError("too_long", f"field 'detail' is larger than {p.MAX_DETAIL_BYTES} bytes")
    return detail


@dataclass(frozen=True)
class Enrolment:
    student_number: str
    join_code: str
    agent_id: str
    agent_time: datetime
    agent_version: str = ""
    os: str = ""

    def as_wire(self) -> dict[str, Any]:
        return {**asdict(self), "agent_time": to_wire(self.agent_time)}


def parse_enrolment(payload: Any) -> Enrolment:
    payload = _need_object(payload, "the enrolment")
    _unknown_keys(
        payload,
        {"student_number", "join_code", "agent_id", "agent_time", "agent_version", "os"},
        "the enrolment",
    )
    student_number = (_str(payload, "student_number", max_len=32) or "").strip()
    if not student_number:
        raise p.ProtocolError("missing_field", "field 'student_number' is empty")
    join_code = (
        (_str(payload, "join_code", max_len=32) or "").strip().upper().replace(" ", "").replace("-", "")
    )
    return Enrolment(
        student_number=student_number,
        join_code=join_code,
        agent_id=check_id(payload.get("agent_id"), "agent_id"),
        agent_time=_time(payload, "agent_time"),
        agent_version=_str(payload, "agent_version", max_len=32, required=False) or "",
        os=_str(payload, "os", max_len=64, required=False) or "",
    )


@dataclass(frozen=True)
class Heartbeat:
    agent_time: datetime
    backlog: int = 0
    state: str = "capturing"

    def as_wire(self) -> dict[str, Any]:
        return {**asdict(self), "agent_time": to_wire(self.agent_time)}


HEARTBEAT_STATES = ("capturing", "paused", "degraded", "leaving")


def parse_heartbeat(payload: Any) -> Heartbeat:
    payload = _need_object(payload, "the heartbeat")
    _unknown_keys(payload, {"agent_time", "backlog", "state"}, "the heartbeat")
    return Heartbeat(
        agent_time=_time(payload, "agent_time"),
        backlog=_int(payload, "backlog", lo=0, hi=10_000_000, required=False) or 0,
        state=_choice(payload, "state", HEARTBEAT_STATES) if "state" in payload else "capturing",
    )


@dataclass(frozen=True)
class CaptureMeta:
    """What the agent says about one changed screen image; the body carries the image itself.

    ``width`` and ``height`` are always the screen's. A whole screen (a *key image*) has no ``base``; a
    *tile update* names the capture it updates in ``base``, its tile side in ``tile`` and the tiles it
    carries in ``tiles`` (a tile map, ``invigil.tiles``), and its body holds only those tiles.
    """

    monitor: int
    agent_time: datetime
    sha256: str
    width: int
    height: int
    trigger: str = "interval"
    focused_app: str | None = None
    window_title: str | None = None
    base: str | None = None
    tile: int | None = None
    tiles: str | None = None

    @property
    def is_update(self) -> bool:
        return self.base is not None

    def tile_indices(self) -> list[int]:
        """Row-major numbers of the tiles a tile update carries (checked by :func:`parse_capture_meta`)."""
        if self.tile is None or self.tiles is None:
            return []
        rows, cols = t.grid(self.width, self.height, self.tile)
        return t.decode_map(self.tiles, rows, cols)

    def as_header(self) -> str:
        # ensure_ascii keeps the header latin-1 safe while window titles stay UTF-8 exact. A key image
        # leaves the update fields out, so it reads as it always did.
        fields = {**asdict(self), "agent_time": to_wire(self.agent_time)}
        if self.base is None:
            for name in UPDATE_FIELDS:
                del fields[name]
        return json.dumps(fields, ensure_ascii=True)


#: The fields only a tile update carries; all three or none.
UPDATE_FIELDS = ("base", "tile", "tiles")


MAX_PIXELS_PER_SIDE = 16_384


def parse_capture_meta(header: str | None) -> CaptureMeta:
    if not header:
        raise p.ProtocolError("missing_meta", f"header {p.META_HEADER} with the capture metadata is required")
    if len(header) > 4096:
        raise p.ProtocolError("too_long", f"header {p.META_HEADER} is longer than 4096 characters")
    try:
        payload = json.loads(header)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder recurses
        raise p.ProtocolError("bad_json", f"header {p.META_HEADER} is not valid JSON") from None
    payload = _need_object(payload, f"header {p.META_HEADER}")
    _unknown_keys(
        payload,
        {"monitor", "agent_time", "sha256", "width", "height", "trigger", "focused_app", "window_title"}
        | set(UPDATE_FIELDS),
        "the capture metadata",
    )
    sha = _str(payload, "sha256", max_len=64) or ""
    if not p.SHA256_RE.fullmatch(sha):
        raise p.ProtocolError("bad_sha256", "field 'sha256' must be 64 lower-case hex digits")
    present = [name for name in UPDATE_FIELDS if payload.get(name) is not None]
    if present and len(present) != len(UPDATE_FIELDS):
        raise p.ProtocolError(
            "missing_field", "a tile update needs all of 'base', 'tile' and 'tiles'; a whole screen none"
        )
    meta = CaptureMeta(
        monitor=_int(payload, "monitor", lo=0, hi=p.MAX_MONITORS - 1) or 0,
        agent_time=_time(payload, "agent_time"),
        sha256=sha,
        width=_int(payload, "width", lo=1, hi=MAX_PIXELS_PER_SIDE) or 0,
        height=_int(payload, "height", lo=1, hi=MAX_PIXELS_PER_SIDE) or 0,
        trigger=_choice(payload, "trigger", p.CAPTURE_TRIGGERS) if "trigger" in payload else "interval",
        focused_app=_str(payload, "focused_app", max_len=p.MAX_APP_CHARS, required=False),
        window_title=_str(payload, "window_title", max_len=p.MAX_TITLE_CHARS, required=False),
    )
    if not present:
        return meta
    tile = _int(payload, "tile", lo=min(t.TILE_SIDES), hi=max(t.TILE_SIDES))
    if tile not in t.TILE_SIDES:
        raise p.ProtocolError(
            "bad_value", f"field 'tile' must be one of: {', '.join(map(str, t.TILE_SIDES))}"
        )
    meta = replace(
        meta,
        base=check_id(payload.get("base"), "base"),
        tile=tile,
        tiles=_str(payload, "tiles", max_len=4096),
    )
    meta.tile_indices()  # the map must fit the screen's grid and mark at least one tile
    return meta


@dataclass(frozen=True)
class Unchanged:
    """The screen of ``monitor`` still shows what capture ``since_capture_id`` showed, at ``agent_time``."""

    monitor: int
    agent_time: datetime
    since_capture_id: str

    def as_wire(self) -> dict[str, Any]:
        return {**asdict(self), "agent_time": to_wire(self.agent_time)}


def parse_unchanged(payload: Any) -> Unchanged:
    payload = _need_object(payload, "the unchanged record")
    _unknown_keys(payload, {"monitor", "agent_time", "since_capture_id"}, "the unchanged record")
    return Unchanged(
        monitor=_int(payload, "monitor", lo=0, hi=p.MAX_MONITORS - 1) or 0,
        agent_time=_time(payload, "agent_time"),
        since_capture_id=check_id(payload.get("since_capture_id"), "since_capture_id"),
    )


@dataclass(frozen=True)
class DeviceEvent:
    id: str
    kind: str
    agent_time: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def as_wire(self) -> dict[str, Any]:
        return {**asdict(self), "agent_time": to_wire(self.agent_time)}


def _batch(payload: Any, what: str) -> list[Any]:
    payload = _need_object(payload, what)
    _unknown_keys(payload, {"events"}, what)
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise p.ProtocolError("missing_field", "field 'events' must be a non-empty list")
    if len(events) > p.MAX_EVENTS_PER_BATCH:
        raise p.ProtocolError("too_many", f"at most {p.MAX_EVENTS_PER_BATCH} events per batch")
    return events


def _unique_ids(ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        raise p.ProtocolError("duplicate_id", "an event id appears twice in one batch")


def parse_device_events(payload: Any) -> list[DeviceEvent]:
    parsed = []
    for index, item in enumerate(_batch(payload, "the device-event batch")):
        try:
            item = _need_object(item, "an event")
            _unknown_keys(item, {"id", "kind", "agent_time", "detail"}, "the event")
            parsed.append(
                DeviceEvent(
                    id=check_id(item.get("id")),
                    kind=_choice(item, "kind", p.DEVICE_EVENT_KINDS),
                    agent_time=_time(item, "agent_time"),
                    detail=_detail(item),
                )
            )
        except p.ProtocolError as exc:
            raise p.ProtocolError(exc.code, f"events[{index}]: {exc.message}") from None
    _unique_ids([event.id for event in parsed])
    return parsed


@dataclass(frozen=True)
class SiteEvent:
    """One decision of the network policy: who (client IP) asked for which site, and what happened."""

    id: str
    time: datetime
    client_ip: str
    host: str
    decision: str
    source: str
    reason: str = ""
    url: str | None = None

    def as_wire(self) -> dict[str, Any]:
        return {**asdict(self), "time": to_wire(self.time)}


_HOST_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _site_host(item: dict[str, Any]) -> str:
    """A site event's host, lower-cased: an IP address or a host name of ASCII labels (IDN in xn-- form).
    Whatever else a client sends never reaches the timeline, the reports or the exam's site log."""
    host = (_str(item, "host", max_len=253) or "").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if not labels[-1].isdigit() and all(
        0 < len(label) <= 63 and set(label) <= _HOST_LABEL_CHARS and label[0] != "-" and label[-1] != "-"
        for label in labels
    ):
        return host
    raise p.ProtocolError(
        "bad_value",
        "field 'host' must be an IP address or a host name (letters, digits, '-' and '_' between dots; "
        "non-ASCII names in their xn-- form)",
    )


def parse_site_events(payload: Any) -> list[SiteEvent]:
    parsed = []
    for index, item in enumerate(_batch(payload, "the site-event batch")):
        try:
            item = _need_object(item, "an event")
            _unknown_keys(
                item, {"id", "time", "client_ip", "host", "decision", "source", "reason", "url"}, "the event"
            )
            client_ip = _str(item, "client_ip", max_len=64) or ""
            try:
                client_ip = str(ipaddress.ip_address(client_ip))
            except ValueError:
                raise p.ProtocolError("bad_value", "field 'client_ip' is not an IP address") from None
            parsed.append(
                SiteEvent(
                    id=check_id(item.get("id")),
                    time=_time(item, "time"),
                    client_ip=client_ip,
                    host=_site_host(item),
                    decision=_choice(item, "decision", p.SITE_DECISIONS),
                    source=_choice(item, "source", p.SITE_SOURCES),
                    reason=_str(item, "reason", max_len=200, required=False) or "",
                    url=_str(item, "url", max_len=2048, required=False),
                )
            )
        except p.ProtocolError as exc:
            raise p.ProtocolError(exc.code, f"events[{index}]: {exc.message}") from None
    _unique_ids([event.id for event in parsed])
    return parsed
