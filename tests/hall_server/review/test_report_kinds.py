"""Every kind of finding (with pending proposals), observation, device event and site event renders in a
report: the timeline plot (SVG) and the HTML page for generated timelines of random mixes, spans, monitors
and missing images, and one PDF with every kind at once (WeasyPrint)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from hall_server.review import findings
from hall_server.review.findings import Entry, Finding
from hall_server.review.reports import pdf, plot, render
from hall_server.review.reports.data import Moment, ReportData, SessionReport, Shot
from hall_server.review.reports.timeline import Frame, Gap, SessionFacts, Timeline, UnchangedSpan
from hall_server.store.chain import SessionChain
from hall_server.store.exams import ExamFacts
from invigil import protocol
from invigil.timeutil import to_wire

from support import png_bytes

EXAM_START = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)
EXAM_END = EXAM_START + timedelta(hours=2)
FINDING_KINDS = (*findings.VERDICTS, findings.NOTE)
PROPOSAL_KINDS = tuple(findings.PROPOSAL_TEXT)
SVG = "{http://www.w3.org/2000/svg}"
PNG_URI = "data:image/png;base64," + base64.b64encode(png_bytes(64, 40, seed=3)).decode()

moments = st.integers(-3600, 4 * 3600).map(lambda s: EXAM_START + timedelta(seconds=s))
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # any character a person types
details = st.dictionaries(
    st.sampled_from(["host", "category", "count", "skew_s", "names", "reason"]),
    st.one_of(st.none(), st.integers(-5, 5), texts, st.lists(texts, max_size=2)),
    max_size=3,
)
people = st.sampled_from([(1, "rita"), (2, "rob"), (3, "bea")])


@st.composite
def entries(draw, kinds, entry_id: int, session_id: int = 7) -> Entry:
    author_id, author = draw(people)
    start = draw(moments)
    end = draw(st.one_of(st.none(), st.integers(0, 7200).map(lambda s: start + timedelta(seconds=s))))
    return Entry(
        id=entry_id,
        exam_id=1,
        session_id=session_id,
        author_id=author_id,
        author=author,
        created_at=to_wire(draw(moments)),
        span_start=to_wire(start),
        span_end=to_wire(end) if end else None,
        kind=draw(st.sampled_from(kinds)),
        text=draw(texts),
        supersedes=None,
        confirms=None,
        observation_id=draw(st.one_of(st.none(), st.integers(1, 50))),
    )


@st.composite
def finding_lists(draw) -> list[Finding]:
    result = []
    for index in range(draw(st.integers(0, 5))):
        base = 100 * (index + 1)
        current = draw(entries(FINDING_KINDS, base))
        history = [draw(entries(FINDING_KINDS, base + 1 + i)) for i in range(draw(st.integers(0, 2)))]
        confirmations = [
            draw(entries(("confirmation",), base + 10 + i)) for i in range(draw(st.integers(0, 2)))
        ]
        pending = draw(st.one_of(st.none(), entries(PROPOSAL_KINDS, base + 20)))
        result.append(Finding(current, history, confirmations, pending))
    return result


@st.composite
def screens(draw, monitors: int) -> list[Frame | UnchangedSpan]:
    result: list[Frame | UnchangedSpan] = []
    for index, at in enumerate(sorted(draw(st.lists(moments, max_size=12)))):
        monitor = draw(st.integers(0, monitors - 1))
        if draw(st.booleans()):
            result.append(
                Frame(
                    f"cap-{index:04d}",
                    monitor,
                    at,
                    to_wire(at),
                    "0" * 64,
                    draw(st.one_of(st.none(), st.just("1" * 64))),
                    640,
                    400,
                    draw(st.sampled_from(protocol.CAPTURE_TRIGGERS)),
                    draw(st.one_of(st.none(), texts)),
                    draw(st.one_of(st.none(), texts)),
                    session_id=7,
                )
            )
        else:
            end = at + timedelta(seconds=draw(st.integers(0, 900)))
            result.append(UnchangedSpan(monitor, "cap-0000", at, end, draw(st.integers(1, 30))))
    return result


@st.composite
def timelines(draw) -> Timeline:
    enrolled = draw(moments)
    ended = draw(
        st.one_of(st.none(), st.integers(0, 3 * 3600).map(lambda s: enrolled + timedelta(seconds=s)))
    )
    facts = SessionFacts(
        7,
        1,
        "Linear Algebra",
        EXAM_START,
        EXAM_END,
        5,
        "s0001",
        "Student <01>",
        draw(st.one_of(st.none(), texts)),
        draw(st.integers(0, 60)),
        "agent-s0001",
        "0.1",
        "Linux",
        "10.0.0.11",
        enrolled,
        ended,
        "enrolled",
        draw(st.one_of(st.none(), st.just("ab" * 32))),
        draw(st.integers(0, 100)),
    )
    sites = [
        {
            "time": at,
            "source": source,
            "host": host,
            "url": draw(st.one_of(st.none(), texts)),
            "decision": decision,
            "reason": draw(st.one_of(st.none(), texts)),
            "received_at": to_wire(at),
        }
        for at, source, decision, host in draw(
            st.lists(
                st.tuples(
                    moments,
                    st.sampled_from(protocol.SITE_SOURCES),
                    st.sampled_from(protocol.SITE_DECISIONS),
                    texts,
                ),
                max_size=6,
            )
        )
    ]
    devices = [
        {"at": at, "kind": kind, "detail": detail, "received_at": to_wire(at)}
        for at, kind, detail in draw(
            st.lists(st.tuples(moments, st.sampled_from(protocol.DEVICE_EVENT_KINDS), details), max_size=6)
        )
    ]
    observations = [
        {
            "id": i + 1,
            "kind": kind,
            "at": at,
            "detail": detail,
            "acknowledged_at": draw(st.one_of(st.none(), st.just(to_wire(at)))),
        }
        for i, (at, kind, detail) in enumerate(
            draw(
                st.lists(st.tuples(moments, st.sampled_from(protocol.OBSERVATION_KINDS), details), max_size=8)
            )
        )
    ]
    gaps = [
        Gap(at, at + timedelta(seconds=s))
        for at, s in draw(st.lists(st.tuples(moments, st.integers(16, 3600)), max_size=3))
    ]
    monitors = draw(st.integers(1, protocol.MAX_MONITORS))
    return Timeline(
        facts,
        draw(screens(monitors)),
        sites,
        devices,
        observations,
        gaps,
        draw(finding_lists()),
        capture_records=draw(st.integers(0, 3000)),
    )


def _exam() -> ExamFacts:
    return ExamFacts(1, 1, "Hall A", "Linear Algebra", EXAM_START, EXAM_END, None, None, 5, 30, None, [])


def _report(timeline: Timeline, missing_images: bool) -> ReportData:
    uri = None if missing_images else PNG_URI
    items = [
        (moment, None, f"Finding by {f.current.author}: {f.status}", f.current.text)
        for f in timeline.findings
        for moment in [datetime.fromisoformat(f.current.span_start)]
    ] + [(o["at"], None, f"Observation: {o['kind']}", "") for o in timeline.observations]
    shots = [Shot("on screen", frame, uri) for frame in timeline.frames[:2]]
    moments_ = [Moment([item], shots) for item in items]
    filmstrip = [(frame, uri) for frame in timeline.frames]
    chain = SessionChain(7, "00" * 32, timeline.session.chain_head, timeline.session.chain_length, [])
    student = {"student_number": "s0001", "name": "Student <01>", "seat": "A01", "extra_time_min": 10}
    session = SessionReport(timeline, filmstrip, moments_, 0, chain)
    return ReportData(_exam(), student, [session], EXAM_END, "board.chair")


def _check(timeline: Timeline, html: str, svg: str) -> None:
    root = ET.fromstring(svg)  # well-formed: WeasyPrint and browsers draw it
    marks = [el for el in root.iter() if (el.get("class") or "").startswith("finding ")]
    assert len(marks) == len(timeline.findings)
    for finding in timeline.findings:
        assert str(escape(finding.status)) in html
        if finding.pending is not None:
            assert str(escape(finding.pending_status or "")) in html
    for observation in timeline.observations:
        assert observation["kind"].replace("_", " ") in html
    for event in timeline.device_events:
        assert event["kind"].replace("_", " ") in html


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timeline=timelines(), missing_images=st.booleans())
def test_any_mix_of_kinds_renders_in_the_plot_and_the_report_page(timeline, missing_images):
    svg = plot.timeline_svg(timeline)
    html = render.render_html(_report(timeline, missing_images))
    _check(timeline, html, svg)
    assert svg in html


def _every_kind() -> Timeline:
    """One session with each finding kind (each proposal kind pending on a confirmed suspicion), each
    observation kind, each device event kind and each site source and decision."""

    def entry(
        entry_id: int, kind: str, author: tuple[int, str], minute: int, text: str = "", end: int | None = None
    ) -> Entry:
        start = EXAM_START + timedelta(minutes=minute)
        span_end = to_wire(start + timedelta(minutes=end)) if end else None
        return Entry(
            entry_id,
            1,
            7,
            author[0],
            author[1],
            to_wire(start),
            to_wire(start),
            span_end,
            kind,
            text,
            None,
            None,
            None,
        )

    rita, bea = (1, "rita"), (3, "bea")
    found = [
        Finding(entry(1, "note", rita, 5, "Student asked for water; a note, not a verdict")),
        Finding(entry(2, "no_irregularity", rita, 15, "calculator allowed", end=5)),
        Finding(entry(3, "suspected_irregularity", rita, 25, "chat window, not yet confirmed")),
        *[
            Finding(
                entry(10 + i, "suspected_irregularity", rita, 35 + 10 * i, "second screen", end=3),
                confirmations=[entry(20 + i, "confirmation", bea, 36 + 10 * i)],
                pending=entry(30 + i, kind, bea, 37 + 10 * i, f"proposal to {kind}"),
            )
            for i, kind in enumerate(PROPOSAL_KINDS)
        ],
    ]
    facts = SessionFacts(
        7,
        1,
        "Linear Algebra",
        EXAM_START,
        EXAM_END,
        5,
        "s0001",
        "Student 01",
        "A01",
        10,
        "agent-s0001",
        "0.1",
        "Linux",
        "10.0.0.11",
        EXAM_START,
        EXAM_END,
        "ended",
        "ab" * 32,
        40,
    )
    at = [EXAM_START + timedelta(minutes=m) for m in range(0, 120, 2)]
    screens_: list[Frame | UnchangedSpan] = []
    for i, moment in enumerate(at[:20]):
        screens_.append(
            Frame(
                f"cap-{i:04d}",
                i % 2,
                moment,
                to_wire(moment),
                "0" * 64,
                None,
                640,
                400,
                "interval",
                "firefox",
                f"Exam question {i}",
                session_id=7,
            )
        )
        screens_.append(
            UnchangedSpan(
                i % 2, f"cap-{i:04d}", moment + timedelta(seconds=30), moment + timedelta(seconds=90), 3
            )
        )
    sites = [
        {
            "time": at[i],
            "source": source,
            "host": f"{source}-{decision}.example.com",
            "url": None,
            "decision": decision,
            "reason": "",
            "received_at": to_wire(at[i]),
        }
        for i, (source, decision) in enumerate(
            (s, d) for s in protocol.SITE_SOURCES for d in protocol.SITE_DECISIONS
        )
    ]
    devices = [
        {"at": at[i], "kind": k, "detail": {"count": 2}, "received_at": to_wire(at[i])}
        for i, k in enumerate(protocol.DEVICE_EVENT_KINDS)
    ]
    observations = [
        {
            "id": i + 1,
            "kind": k,
            "at": at[i + 20],
            "detail": {"host": "chat.example.com"},
            "acknowledged_at": None,
        }
        for i, k in enumerate(protocol.OBSERVATION_KINDS)
    ]
    return Timeline(
        facts, screens_, sites, devices, observations, [Gap(at[30], at[33])], found, capture_records=60
    )


def test_every_kind_at_once_renders_in_the_plot_the_page_and_the_pdf(tmp_path: Path):
    timeline = _every_kind()
    svg = plot.timeline_svg(timeline)
    report = _report(timeline, missing_images=False)
    html = render.render_html(report)
    _check(timeline, html, svg)
    assert {
        el.get("class") for el in ET.fromstring(svg).iter() if (el.get("class") or "").startswith("finding ")
    } == {
        "finding note",
        "finding no_irregularity",
        "finding suspected_irregularity awaiting",
        "finding suspected_irregularity confirmed",
    }
    body = pdf.html_to_pdf(render.render_html(report, embed_chain=False))
    assert body[:5] == b"%PDF-"
    assert shutil.which("pdftotext"), "pdftotext is missing: apt-get install poppler-utils"
    out = tmp_path / "every-kind.pdf"
    out.write_bytes(body)
    text = " ".join(
        subprocess.run(
            ["pdftotext", str(out), "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    for expected in (
        "note (not a verdict)",
        "Student asked for water",
        "awaiting a second person's confirmation",
        *(kind.replace("_", " ") for kind in protocol.OBSERVATION_KINDS),
        *(kind.replace("_", " ") for kind in protocol.DEVICE_EVENT_KINDS),
    ):
        assert expected in text, expected
