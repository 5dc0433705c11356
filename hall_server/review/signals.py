"""Signals for the review queue: pure rules over one session's stored timeline that name the moments a
reviewer should look at. A signal is an observation for a person, never a verdict: it says where to look,
and only people record findings (hall_server/review/findings.py).

Every rule takes plain data (frames and unchanged spans from :func:`timeline.collapse`, site and device
events as stored) and returns :class:`Moment` s; :func:`moments` runs them all and merges moments of one
session that overlap or nearly touch, so one switch to a chat window with its site event is one moment with
two kinds. docs/review.md explains each kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from hall_server.review.expected import ExpectedState, app_matches, text_matches
from hall_server.review.reports.timeline import Frame, Gap, UnchangedSpan, find_gaps
from invigil.protocol import SECOND_PATH_CATEGORIES
from invigil.timeutil import to_wire

#: The order of the queue: the kinds a reviewer clears first come first.
KINDS = (
    "assistant_named",
    "off_exam_focus",
    "other_page",
    "bypass_site",
    "blocked_site",
    "new_site",
    "second_network_path",
    "remote_tool",
    "vpn",
    "second_monitor",
    "screen_text",
    "capture_gap",
    "left_early",
)

#: Words in a window title, host or URL that name an AI assistant or a chat service.
ASSISTANT_WORDS = (
    "chatgpt",
    "openai",
    "copilot",
    "gemini",
    "claude",
    "anthropic",
    "perplexity",
    "deepseek",
    "mistral.ai",
    "le chat",
    "huggingface",
    "ollama",
    "lm studio",
    "gpt4all",
    "poe.com",
    "character.ai",
    "wolframalpha",
)

#: Off-exam stretches separated by less than this on the exam are one span (a flurry of Alt-Tabs).
COALESCE = timedelta(seconds=20)
#: Repeats of one site within this time are one moment.
SITE_REPEAT = timedelta(minutes=5)
#: An allowed host that at least this share of the exam's students opened is the hall's ordinary traffic.
COMMON_HOST_SHARE = 0.25
#: Process categories that raise ``remote_tool`` (a messaging app running in the background does not).
REMOTE_CATEGORIES = ("remote_access", "screen_sharing", "virtual_machine")
#: Network-interface categories: a VPN or tunnel, or a second way out next to the hall network (the agent
#: reports a category, never the network's name).
VPN_CATEGORIES = ("vpn", "tunnel")


@dataclass(frozen=True)
class Moment:
    """A moment or span of one session worth a look, with the screens before, during and after it."""

    kinds: tuple[str, ...]
    start: datetime
    end: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    capture_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Stable while the stored data stays: the start and the first kind."""
        return f"{to_wire(self.start)}/{self.kinds[0]}"

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def rank(self) -> int:
        return min(KINDS.index(kind) for kind in self.kinds)


@dataclass
class SessionData:
    """What the rules read of one session (from the store, opened)."""

    entries: list[Frame | UnchangedSpan]
    record_times: list[datetime]
    interval_s: int
    enrolled_at: datetime
    sites: list[dict[str, Any]] = field(default_factory=list)  # time, source, host, url, decision
    device_events: list[dict[str, Any]] = field(default_factory=list)  # at, kind, detail
    observations: list[dict[str, Any]] = field(default_factory=list)  # kind, at, detail
    screen_text_hits: list[tuple[datetime, str]] = field(default_factory=list)  # at, watch word
    #: Until when a session that never left should have sent records (timeline.SessionFacts.watched_until);
    #: None for one that left: the silence after its last record is then a gap too.
    watched_until: datetime | None = None


def _frames(entries: Sequence[Frame | UnchangedSpan]) -> list[Frame]:
    return sorted((e for e in entries if isinstance(e, Frame)), key=lambda f: (f.at, f.monitor))


def last_time(data: SessionData) -> datetime:
    return max(data.record_times, default=data.enrolled_at)


def _merge(
    spans: list[tuple[datetime, datetime, set[str]]], within: timedelta
) -> list[tuple[datetime, datetime, set[str]]]:
    merged: list[tuple[datetime, datetime, set[str]]] = []
    for start, end, names in sorted(spans, key=lambda s: s[0]):
        if merged and start - merged[-1][1] <= within:
            first, last, seen = merged[-1]
            merged[-1] = (first, max(last, end), seen | names)
        else:
            merged.append((start, end, set(names)))
    return merged


def focus_spans(
    frames: Sequence[Frame], predicate: Callable[[Frame], bool], end: datetime, coalesce: timedelta = COALESCE
) -> list[tuple[datetime, datetime, set[str]]]:
    """Spans during which the frame in focus satisfies ``predicate``: from such a frame until the next frame
    that does not (or ``end``), stretches less than ``coalesce`` apart merged. Each span carries the
    applications seen in it. Frames without a focused application (the agent could not tell) break no span."""
    spans: list[tuple[datetime, datetime, set[str]]] = []
    current: tuple[datetime, set[str]] | None = None
    for frame in frames:
        if frame.focused_app is None:
            continue
        if predicate(frame):
            if current is None:
                current = (frame.at, set())
            current[1].add(frame.focused_app)
        elif current is not None:
            spans.append((current[0], frame.at, current[1]))
            current = None
    if current is not None:
        spans.append((current[0], max(end, current[0]), current[1]))
    return _merge(spans, coalesce)


def names_assistant(*texts: str | None) -> bool:
    return any(text_matches(text, ASSISTANT_WORDS) for text in texts)


def focus_moments(data: SessionData, state: ExpectedState) -> list[Moment]:
    """Off-exam focus (an application neither the platform nor allowed), a page of the platform's browser
    that is not the exam, and any window whose title names an assistant."""
    frames = _frames(data.entries)
    end = last_time(data)
    found: list[Moment] = []

    def off_exam(frame: Frame) -> bool:
        return not app_matches(frame.focused_app, state.platform_apps + state.allowed_apps)

    def other_page(frame: Frame) -> bool:
        return app_matches(frame.focused_app, state.platform_apps) and not text_matches(
            frame.window_title, state.platform_titles
        )

    def assistant(frame: Frame) -> bool:
        return names_assistant(frame.window_title, frame.focused_app)

    rules: list[tuple[str, Callable[[Frame], bool]]] = [("assistant_named", assistant)]
    if state.declared:
        rules.append(("off_exam_focus", off_exam))
    if state.platform_apps and state.platform_titles:
        rules.append(("other_page", other_page))
    for kind, predicate in rules:
        for start, stop, apps in focus_spans(frames, predicate, end):
            found.append(Moment((kind,), start, stop, {"apps": sorted(apps)}))
    return found


def _host_in(host: str, hosts: Iterable[str]) -> bool:
    host = host.casefold()
    return any(host == h.casefold() or host.endswith("." + h.casefold()) for h in hosts)


def site_moments(data: SessionData, state: ExpectedState, host_share: dict[str, float]) -> list[Moment]:
    """Blocked sites, sites seen around the proxy, hosts or URLs naming an assistant, and *new sites*:
    allowed hosts outside the exam platform that few of the exam's students opened (``host_share``: host ->
    share of the exam's sessions that opened it). Repeats of one host within SITE_REPEAT are one moment."""
    spans: dict[tuple[str, str], list[tuple[datetime, datetime, set[str]]]] = {}
    for site in data.sites:
        host = site["host"] or ""
        kinds = []
        if site["source"] == "sentinel":
            kinds.append("bypass_site")
        elif site["decision"] == "blocked":
            kinds.append("blocked_site")
        elif (
            state.platform_hosts
            and not _host_in(host, state.platform_hosts)
            and host_share.get(host, 0.0) < COMMON_HOST_SHARE
        ):
            kinds.append("new_site")
        if names_assistant(host, site.get("url")):
            kinds.append("assistant_named")
        for kind in kinds:
            spans.setdefault((kind, host), []).append((site["time"], site["time"], {host}))
    found = []
    for (kind, host), times in spans.items():
        for start, stop, _ in _merge(times, SITE_REPEAT):
            found.append(Moment((kind,), start, stop, {"hosts": [host]}))
    return found


def device_moments(data: SessionData) -> list[Moment]:
    """A second monitor (reported, or a capture of a monitor after the first), a remote-access, screen-
    sharing or VM tool, a VPN, and a second network path: each a moment at its report (what to look at is
    the screen when it appeared), with ``seconds`` until the agent reported it ended or the last record.
    A state that lasts the whole exam is not a span, so it never swallows the other moments around it."""
    found: list[Moment] = []
    open_since: dict[tuple[str, str], datetime] = {}
    for event in sorted(data.device_events, key=lambda e: e["at"]):
        detail = event["detail"] or {}
        category = str(detail.get("category", ""))
        if event["kind"] == "monitors":
            count = detail.get("count")
            kind = "second_monitor" if isinstance(count, int) and count > 1 else None
            ended = isinstance(count, int) and count <= 1
            category = "monitors"
        elif event["kind"] == "network_interface":
            kind = (
                "vpn"
                if category in VPN_CATEGORIES
                else "second_network_path"
                if category in SECOND_PATH_CATEGORIES
                else None
            )
            ended = detail.get("state") == "ended"
        elif event["kind"] == "process_category":
            kind = "remote_tool" if category in REMOTE_CATEGORIES else None
            ended = detail.get("state") == "ended"
        else:
            continue
        if ended:
            for (open_kind, open_category), since in list(open_since.items()):
                if open_category == category:
                    found.append(_state_moment(open_kind, since, event["at"], category))
                    del open_since[(open_kind, open_category)]
        elif kind is not None and (kind, category) not in open_since:
            open_since[(kind, category)] = event["at"]
    end = last_time(data)
    for (kind, category), since in open_since.items():
        found.append(_state_moment(kind, since, max(since, end), category))
    if not any("second_monitor" in m.kinds for m in found):
        extra = [f for f in _frames(data.entries) if f.monitor > 0]
        if extra:
            found.append(_state_moment("second_monitor", extra[0].at, extra[-1].at, "captured"))
    return found


def _state_moment(kind: str, since: datetime, until: datetime, category: str) -> Moment:
    return Moment(
        (kind,), since, since, {"category": category, "seconds": round((until - since).total_seconds())}
    )


def gap_moments(data: SessionData) -> list[Moment]:
    """Pauses in the capture records longer than the timeline's gap (no data is never "nothing happened"),
    the silence after the last record of a session that never left included."""
    gaps: list[Gap] = find_gaps(
        sorted(data.record_times), data.interval_s, data.enrolled_at, data.watched_until
    )
    return [Moment(("capture_gap",), gap.start, gap.end, {"seconds": round(gap.seconds)}) for gap in gaps]


def observation_moments(data: SessionData) -> list[Moment]:
    """Observations the ingest rules raised that no other rule here reads from the events: leaving early."""
    return [
        Moment(("left_early",), obs["at"], obs["at"], dict(obs["detail"] or {}))
        for obs in data.observations
        if obs["kind"] == "left_early"
    ]


def text_moments(data: SessionData) -> list[Moment]:
    """Screens whose text (OCR) holds one of the exam's watch words."""
    spans: dict[str, list[tuple[datetime, datetime, set[str]]]] = {}
    for at, word in data.screen_text_hits:
        spans.setdefault(word, []).append((at, at, {word}))
    return [
        Moment(("screen_text",), start, stop, {"words": sorted(words)})
        for times in spans.values()
        for start, stop, words in _merge(times, SITE_REPEAT)
    ]


def screens_for(frames: Sequence[Frame], start: datetime, end: datetime) -> tuple[str, ...]:
    """The capture ids that show a moment: the screen shown before it, the first (and last) changed during
    it, and the first after it; when nothing changed during it, the screen shown at its start."""
    before = [f for f in frames if f.at < start]
    # A span ends at the capture that ended it (back on the exam): that one is "after", not "during".
    during = [f for f in frames if start <= f.at < end or f.at == start]
    after = [f for f in frames if f.at >= end and f not in during]
    chosen: list[Frame] = []
    if before:
        chosen.append(before[-1])
    chosen.extend(during[:1] + during[-1:] if len(during) > 1 else during)
    if after:
        chosen.append(after[0])
    seen: list[str] = []
    for frame in chosen:
        if frame.capture_id not in seen:
            seen.append(frame.capture_id)
    return tuple(seen[:4])


def merge_moments(found: list[Moment], within: timedelta = timedelta(seconds=10)) -> list[Moment]:
    """Moments of one session that overlap or lie within ``within`` of each other become one, with every
    kind (in queue order) and the details of each kind."""
    merged: list[Moment] = []
    for moment in sorted(found, key=lambda m: (m.start, m.rank)):
        if merged and moment.start - merged[-1].end <= within:
            last = merged[-1]
            kinds = tuple(sorted(set(last.kinds) | set(moment.kinds), key=KINDS.index))
            detail = dict(last.detail)
            for name, value in moment.detail.items():
                if isinstance(value, list) and isinstance(detail.get(name), list):
                    detail[name] = sorted(set(detail[name]) | set(value))
                else:
                    detail.setdefault(name, value)
            merged[-1] = replace(last, kinds=kinds, end=max(last.end, moment.end), detail=detail)
        else:
            merged.append(moment)
    return merged


def moments(data: SessionData, state: ExpectedState, host_share: dict[str, float]) -> list[Moment]:
    """Every signal of one session, merged, each with the screens that show it, in time order."""
    found = [
        *focus_moments(data, state),
        *site_moments(data, state, host_share),
        *device_moments(data),
        *gap_moments(data),
        *observation_moments(data),
        *text_moments(data),
    ]
    frames = _frames(data.entries)
    return [replace(m, capture_ids=screens_for(frames, m.start, m.end)) for m in merge_moments(found)]
