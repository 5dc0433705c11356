"""What a report page shows of its chained records: the links the renderer puts on each row, and reading
them back for ``invigil-server verify``.

An element that shows one chained record carries ``data-chain="SESSION:SEQ"`` (``unchained`` for a record
stored before the chain existed), and each value it shows is the whole text of an element inside it with
``data-field="NAME"``, NAME being the record's field. A session's head is shown in elements with
``data-chain-head="SESSION"`` (fields ``head``, ``length``, ``genesis``) and its counts in one with
``data-chain-counts="SESSION"`` (``frames``, ``unchanged``, ``sites``, ``device_events``). The site log and
the device events are tables with ``data-chained="KIND"``: every body row of them shows a record.

:func:`expected` gives the text a verified record shows in a field, the way the template prints it, so a
page edited by hand disagrees with its chain wherever the edit is visible.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from hall_server.store import chain
from invigil.timeutil import from_wire

UNCHAINED = "unchained"
#: The fields every row of a kind shows (a capture's window title and id only in a screenshot caption).
ALWAYS_SHOWN = {
    "capture": ("agent_time", "focused_app"),
    "site_event": ("time", "source", "host", "url", "decision", "reason"),
    "device_event": ("agent_time", "received_at", "kind", "detail"),
}
HEAD_FIELDS = ("head", "length")
COUNT_FIELDS = ("frames", "unchanged", "sites", "device_events")
#: Where a complete list of each kind is shown (the filmstrip shows a sample of captures, so none).
COMPLETE_LISTS = {"site_event": "site log", "device_event": "device events"}
FIELD_LABELS = {
    "agent_time": "time",
    "received_at": "receive time",
    "time": "time",
    "focused_app": "application",
    "window_title": "window title",
    "capture_id": "capture id",
    "length": "number of records",
    "device_events": "device events",
    "unchanged": "unchanged records",
    "frames": "screen changes",
}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def hms(value: datetime | str) -> str:
    """A moment as the report's rows print it (UTC)."""
    moment = from_wire(value) if isinstance(value, str) else value
    return f"{moment:%H:%M:%S}"


# --- the renderer's side ------------------------------------------------------------------------------


def _detail(text: Any) -> str:
    """A device event's detail as canonical JSON of the object it holds (the page prints the object)."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        value = {}
    return json.dumps(value if isinstance(value, dict) else {}, sort_keys=True)


_SITE_VALUES = ("received_at", "source", "host", "url", "decision", "reason")


def _site_key(time: datetime, values: dict[str, Any]) -> tuple[Any, ...]:
    return ("site", time, *(values[name] for name in _SITE_VALUES))


def _device_key(at: datetime, received_at: str, kind: str, detail: Any) -> tuple[Any, ...]:
    return ("device", at, received_at, kind, _detail(detail))


@dataclass(frozen=True)
class RowLinks:
    """Which chained record each row of one session's page shows, as the ``data-chain`` value."""

    session_id: int
    captures: dict[str, int]
    sites: list[int | None]
    device_events: list[int | None]

    def _link(self, seq: int | None) -> str:
        return UNCHAINED if seq is None else f"{self.session_id}:{seq}"

    def capture(self, frame: Any) -> str:
        return self._link(self.captures.get(frame.capture_id))

    def site(self, index: int) -> str:
        return self._link(self.sites[index])

    def device(self, index: int) -> str:
        return self._link(self.device_events[index])


def row_links(
    session_chain: chain.SessionChain, sites: list[dict[str, Any]], devices: list[dict[str, Any]]
) -> RowLinks:
    """Match the timeline's site and device rows (in the order the page prints them) to chained records:
    by content, since a timeline row does not carry its event id (identical events pair off in order)."""
    captures: dict[str, int] = {}
    by_content: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for record in session_chain.records:
        f = record.fields
        if record.kind == "capture":
            captures[f["capture_id"]] = record.seq
        elif record.kind == "site_event":
            by_content[_site_key(from_wire(f["time"]), f)].append(record.seq)
        elif record.kind == "device_event":
            key = _device_key(from_wire(f["agent_time"]), f["received_at"], f["kind"], f["detail"])
            by_content[key].append(record.seq)

    def take(key: tuple[Any, ...]) -> int | None:
        seqs = by_content.get(key)
        return seqs.pop(0) if seqs else None

    return RowLinks(
        session_chain.session_id,
        captures,
        [take(_site_key(e["time"], e)) for e in sites],
        [take(_device_key(d["at"], d["received_at"], d["kind"], d["detail"])) for d in devices],
    )


# --- what a verified record shows -----------------------------------------------------------------------


def expected(kind: str, name: str, fields: dict[str, Any]) -> str | None:
    """The text field ``name`` of a record shows on the page, or None when rows of ``kind`` never show it."""
    value = fields.get(name)
    if name in ("agent_time", "received_at", "time"):
        return hms(value) if isinstance(value, str) else None
    if kind == "capture":
        if name == "focused_app":
            return value or "?"
        if name in ("window_title", "capture_id"):
            return value or ""
        if name == "monitor":
            return f"monitor {int(value or 0) + 1}"
        return None
    if kind == "site_event":
        return None if name not in ALWAYS_SHOWN[kind] else str(value or "")
    if kind == "device_event":
        if name == "kind":
            return str(value).replace("_", " ")
        if name == "detail":
            return _detail(value)
    return None


def normalised(kind: str, name: str, text: str) -> str:
    """What the page shows, in the form :func:`expected` gives (a detail is compared as JSON)."""
    if kind == "device_event" and name == "detail":
        try:
            return _detail(json.loads(text))
        except ValueError:
            return text
    return text


def image_bytes(src: str) -> bytes | None:
    """The bytes of a ``data:`` URI (None for anything else or bad base64)."""
    header, comma, data = src.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return None


def required(kind: str, classes: tuple[str, ...], fields: dict[str, Any]) -> list[str]:
    """The fields a row of ``kind`` must show for this record."""
    names = list(ALWAYS_SHOWN.get(kind, ()))
    if kind == "capture" and "shot" in classes:
        names += ["capture_id"] + (["window_title"] if fields.get("window_title") else [])
    if kind == "capture" and "film" in classes and fields.get("monitor"):
        names.append("monitor")
    return names


# --- reading a page back --------------------------------------------------------------------------------


@dataclass
class ShownRow:
    """One element of the page that shows a chained record (``what`` ``record``), a session's head
    (``head``) or counts (``counts``), or a row of a complete list that shows none (``unlinked``)."""

    what: str
    ref: str
    line: int
    section: str
    classes: tuple[str, ...]
    fields: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: The ``src`` of every image inside it (a screenshot's data: URI).
    images: list[str] = field(default_factory=list)


class _PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[ShownRow] = []
        self.section = "the title block"
        #: open elements: tag, the row it starts, the text of the field it is, that field's name and row
        self._stack: list[tuple[str, ShownRow | None, list[str] | None, str | None, ShownRow | None]] = []
        self._heading: list[str] | None = None
        self._tables: list[str | None] = []
        self._in_head = 0

    def _row(self) -> ShownRow | None:
        return next((entry[1] for entry in reversed(self._stack) if entry[1] is not None), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        line = self.getpos()[0]
        classes = tuple(values.get("class", "").split())
        if tag in ("h2", "h3"):
            self._heading = []
        if tag == "table":
            self._tables.append(values.get("data-chained"))
        if tag == "thead":
            self._in_head += 1
        row: ShownRow | None = None
        if "data-chain" in values:
            row = ShownRow("record", values["data-chain"], line, self.section, classes)
        elif "data-chain-head" in values:
            row = ShownRow("head", values["data-chain-head"], line, self.section, classes)
        elif "data-chain-counts" in values:
            row = ShownRow("counts", values["data-chain-counts"], line, self.section, classes)
        elif (tag == "tr" and self._tables and self._tables[-1] and not self._in_head) or (
            tag == "div" and {"shot", "film"} & set(classes)
        ):
            listed = (self._tables[-1] if tag == "tr" else None) or "capture"
            row = ShownRow("unlinked", listed, line, self.section, classes)
        if row is not None:
            self.rows.append(row)
        if tag == "img" and (holder := self._row()) is not None:
            holder.images.append(values.get("src", ""))
        name = values.get("data-field")
        owner = (row if row is not None else self._row()) if name is not None else None
        if tag not in _VOID:
            self._stack.append((tag, row, [] if owner is not None else None, name, owner))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)
        for _tag, _row, text, _name, _owner in self._stack:
            if text is not None:
                text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "h3") and self._heading is not None:
            self.section = " ".join("".join(self._heading).split())
            self._heading = None
        if tag == "table" and self._tables:
            self._tables.pop()
        if tag == "thead" and self._in_head:
            self._in_head -= 1
        if not any(open_tag == tag for open_tag, *_ in self._stack):
            return
        while self._stack:
            open_tag, _row, text, name, owner = self._stack.pop()
            if text is not None and name is not None and owner is not None:
                owner.fields[name].append("".join(text))
            if open_tag == tag:
                break


def read_page(html: str) -> list[ShownRow]:
    """Every element of a rendered report that shows chained data, with the text of each shown field."""
    reader = _PageReader()
    reader.feed(html)
    reader.close()
    return reader.rows


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " "))
