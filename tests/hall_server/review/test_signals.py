"""The review queue's signal rules (hall_server/review/signals.py), as tables over hand-made timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hall_server.review import signals
from hall_server.review.expected import ExpectedState, app_matches
from hall_server.review.reports.timeline import Frame, UnchangedSpan

T0 = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)
STATE = ExpectedState(
    platform_apps=("firefox",),
    platform_titles=("Ans",),
    platform_hosts=("ans.app",),
    allowed_apps=("libreoffice*",),
)


def frame(second: int, app: str | None, title: str = "Ans - question 1", monitor: int = 0) -> Frame:
    at = T0 + timedelta(seconds=second)
    return Frame(f"c{second}-{monitor}", monitor, at, "", "sha", None, 800, 600, "focus", app, title)


def data(frames: list[Frame], end_s: int = 600, **kwargs) -> signals.SessionData:
    entries: list[Frame | UnchangedSpan] = list(frames)
    times = sorted({f.at for f in frames} | {T0 + timedelta(seconds=s) for s in range(0, end_s + 1, 5)})
    return signals.SessionData(entries, times, 5, T0, **kwargs)


def spans(moments: list[signals.Moment], kind: str) -> list[tuple[int, int]]:
    return [
        (int((m.start - T0).total_seconds()), int((m.end - T0).total_seconds()))
        for m in moments
        if kind in m.kinds
    ]


@pytest.mark.parametrize(
    ("app", "patterns", "matches"),
    [
        ("firefox", ("firefox",), True),
        ("Firefox", ("firefox",), True),
        ("FIREFOX.EXE", ("firefox",), True),
        ("libreoffice-calc", ("libreoffice*",), True),
        ("soffice.bin", ("libreoffice*",), False),
        ("notepad.exe", ("firefox", "libreoffice*"), False),
        (None, ("firefox",), False),
    ],
)
def test_app_matching(app, patterns, matches):
    assert app_matches(app, patterns) is matches


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # the exam platform and the allowed spreadsheet all along: nothing
        ([frame(0, "firefox"), frame(60, "libreoffice-calc", "sheet"), frame(120, "firefox")], []),
        # forty seconds in a notes app
        ([frame(0, "firefox"), frame(100, "obsidian", "notes"), frame(140, "firefox")], [(100, 140)]),
        # three quick switches to a PDF, 10 s apart on the exam: one span (coalesced)
        (
            [
                frame(0, "firefox"),
                frame(100, "evince", "a.pdf"),
                frame(105, "firefox"),
                frame(115, "evince", "a.pdf"),
                frame(120, "firefox"),
                frame(130, "evince", "a.pdf"),
                frame(135, "firefox"),
            ],
            [(100, 135)],
        ),
        # two switches a minute apart stay two spans
        (
            [
                frame(0, "firefox"),
                frame(100, "evince"),
                frame(110, "firefox"),
                frame(200, "evince"),
                frame(210, "firefox"),
            ],
            [(100, 110), (200, 210)],
        ),
        # still off-exam at the last record: the span runs to it
        ([frame(0, "firefox"), frame(500, "ollama-app")], [(500, 600)]),
        # the agent could not tell the focused app: no span, and it does not break one
        ([frame(0, "firefox"), frame(100, "evince"), frame(110, None), frame(130, "firefox")], [(100, 130)]),
    ],
)
def test_off_exam_focus_spans(frames, expected):
    assert spans(signals.moments(data(frames), STATE, {}), "off_exam_focus") == expected


def test_off_exam_needs_a_declared_state():
    frames = [frame(0, "firefox"), frame(100, "evince"), frame(140, "firefox")]
    assert spans(signals.moments(data(frames), ExpectedState(), {}), "off_exam_focus") == []


@pytest.mark.parametrize(
    ("title", "kinds"),
    [
        ("Ans - question 4", set()),
        ("Wikipedia - Eigenvalue", {"other_page"}),
        ("ChatGPT - Mozilla Firefox", {"other_page", "assistant_named"}),
        ("Ans - Claude helps with question 4", {"assistant_named"}),
    ],
)
def test_platform_browser_showing_another_page(title, kinds):
    frames = [frame(0, "firefox"), frame(100, "firefox", title), frame(150, "firefox")]
    found = signals.moments(data(frames), STATE, {})
    assert {kind for m in found for kind in m.kinds} == kinds


def site(
    second: int, host: str, decision: str = "allowed", source: str = "proxy", url: str | None = None
) -> dict:
    return {
        "time": T0 + timedelta(seconds=second),
        "source": source,
        "host": host,
        "url": url,
        "decision": decision,
    }


@pytest.mark.parametrize(
    ("sites", "shares", "expected"),
    [
        ([site(10, "ans.app"), site(20, "cdn.ans.app")], {}, []),
        ([site(10, "chat.example.com", "blocked")], {}, [("blocked_site", 10, 10)]),
        # repeated blocked attempts within 5 minutes: one moment spanning them
        (
            [site(10, "chat.example.com", "blocked"), site(70, "chat.example.com", "blocked")],
            {},
            [("blocked_site", 10, 70)],
        ),
        ([site(30, "vpn.example.net", source="sentinel")], {}, [("bypass_site", 30, 30)]),
        # an allowed host outside the platform that few students opened
        ([site(40, "wiki.example.org")], {"wiki.example.org": 0.02}, [("new_site", 40, 40)]),
        # one most of the hall opens (a font server the platform uses) is ordinary
        ([site(40, "fonts.example.net")], {"fonts.example.net": 0.9}, []),
        ([site(50, "api.openai.com", "blocked")], {}, [("assistant_named", 50, 50)]),
    ],
)
def test_site_signals(sites, shares, expected):
    found = signals.moments(data([frame(0, "firefox")], sites=sites), STATE, shares)
    assert [(m.kinds[0], *spans([m], m.kinds[0])[0]) for m in found] == expected


def test_assistant_in_a_url_adds_its_kind():
    found = signals.moments(
        data([frame(0, "firefox")], sites=[site(50, "chatgpt.com", "blocked")]), STATE, {}
    )
    assert [m.kinds for m in found] == [("assistant_named", "blocked_site")]


def device(second: int, kind: str, **detail) -> dict:
    return {"at": T0 + timedelta(seconds=second), "kind": kind, "detail": detail}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([device(10, "monitors", count=1)], []),
        ([device(10, "monitors", count=2), device(90, "monitors", count=1)], [("second_monitor", 10, 80)]),
        (
            [device(10, "process_category", category="virtual_machine", names=["vbox"])],
            [("remote_tool", 10, 590)],
        ),
        (
            [
                device(10, "process_category", category="remote_access"),
                device(50, "process_category", category="remote_access", state="ended"),
            ],
            [("remote_tool", 10, 40)],
        ),
        ([device(10, "process_category", category="messaging")], []),
        ([device(20, "network_interface", category="vpn", names=["wg0"])], [("vpn", 20, 580)]),
        ([device(20, "network_interface", category="second_path")], [("second_network_path", 20, 580)]),
        ([device(20, "help_request")], []),
    ],
)
def test_device_signals(events, expected):
    """A device state is a moment at its report, with how long it lasted (to its end or the last record)."""
    found = signals.moments(data([frame(0, "firefox")], device_events=events), STATE, {})
    assert [(m.kinds[0], *spans([m], m.kinds[0])[0], m.detail["seconds"]) for m in found] == [
        (kind, at, at, seconds) for kind, at, seconds in expected
    ]


def test_a_capture_of_a_second_monitor_is_a_signal_without_a_report():
    frames = [frame(0, "firefox"), frame(200, "firefox", monitor=1)]
    assert spans(signals.moments(data(frames), STATE, {}), "second_monitor") == [(200, 200)]


def test_a_device_state_lasting_the_exam_does_not_swallow_the_moments_around_it():
    frames = [
        frame(0, "firefox"),
        frame(100, "evince", "a.pdf"),
        frame(140, "firefox"),
        frame(400, "gedit"),
        frame(420, "firefox"),
    ]
    events = [device(50, "process_category", category="virtual_machine")]
    found = signals.moments(data(frames, device_events=events), STATE, {})
    assert [(m.kinds, spans([m], m.kinds[0])[0]) for m in found] == [
        (("remote_tool",), (50, 50)),
        (("off_exam_focus",), (100, 140)),
        (("off_exam_focus",), (400, 420)),
    ]


def test_capture_gap_and_screens_around_it():
    frames = [
        frame(0, "firefox"),
        frame(100, "firefox", "Ans - question 2"),
        frame(400, "firefox", "Ans - q 3"),
    ]
    times = [T0 + timedelta(seconds=s) for s in (0, 5, 10, 100, 105, 400, 405)]
    found = signals.moments(signals.SessionData(list(frames), times, 5, T0), STATE, {})
    # two gaps 5 s apart are one moment; its screens: the one shown before, the change in it, the one after
    assert spans(found, "capture_gap") == [(10, 400)]
    assert found[0].capture_ids == ("c0-0", "c100-0", "c400-0")


def test_overlapping_signals_are_one_moment_with_every_kind():
    frames = [frame(0, "firefox"), frame(100, "slack", "chat"), frame(160, "firefox")]
    events = [
        device(101, "process_category", category="screen_sharing"),
        device(150, "process_category", category="screen_sharing", state="ended"),
    ]
    found = signals.moments(data(frames, device_events=events), STATE, {})
    assert [(m.kinds, spans([m], m.kinds[0])[0]) for m in found] == [
        (("off_exam_focus", "remote_tool"), (100, 160))
    ]
    assert found[0].detail["apps"] == ["slack"]


def test_left_early_and_screen_text():
    found = signals.moments(
        data(
            [frame(0, "firefox")],
            observations=[
                {"kind": "left_early", "at": T0 + timedelta(seconds=300), "detail": {"minutes_early": 50}}
            ],
            screen_text_hits=[(T0 + timedelta(seconds=30), "chatgpt")],
        ),
        STATE,
        {},
    )
    assert [m.kinds[0] for m in found] == ["screen_text", "left_early"]
