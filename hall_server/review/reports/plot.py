"""The timeline plot of a report as inline SVG, drawn in Python: no JavaScript, no CDN, the same picture in
the HTML page and the PDF. Pure: takes a :class:`~hall_server.review.reports.timeline.Timeline`, returns
markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from hall_server.review.findings import Finding
from hall_server.review.reports.timeline import Frame, Timeline, UnchangedSpan

WIDTH = 1000
LABEL_W = 150
LANE_H = 30
TOP = 10
LANES = ("Screen changes", "Unchanged", "Sites", "Device", "Observations", "Findings", "Gaps")

COLOURS = {
    "frame": "#1f4e79",
    "unchanged": "#b8c7d9",
    "site_allowed": "#7f8c8d",
    "site_blocked": "#c0392b",
    "site_bypass": "#8e44ad",
    "device": "#2c3e50",
    "observation": "#d35400",
    "no_irregularity": "#27ae60",
    "suspected_irregularity": "#c0392b",
    "note": "#95a5a6",
    "gap": "#e67e22",
}


@dataclass(frozen=True)
class Mark:
    """How one kind of thing is drawn: its fill, an outline (a suspicion not yet confirmed is hollow), and
    the legend's words."""

    label: str
    fill: str
    stroke: str | None = None

    @property
    def css(self) -> str:
        border = f";border:1px solid {self.stroke}" if self.stroke else ""
        return f"background:{self.fill}{border}"

    @property
    def svg(self) -> str:
        outline = f' stroke="{self.stroke}" stroke-width="1.5"' if self.stroke else ""
        return f'fill="{self.fill}"{outline}'


#: Findings by what they say now; any other kind is drawn as UNKNOWN_FINDING rather than refused.
FINDING_MARKS = {
    "no_irregularity": Mark("no irregularity", COLOURS["no_irregularity"]),
    "suspected_irregularity confirmed": Mark(
        "suspected irregularity (confirmed)", COLOURS["suspected_irregularity"]
    ),
    "suspected_irregularity awaiting": Mark(
        "suspected irregularity (awaiting confirmation)", "#ffffff", COLOURS["suspected_irregularity"]
    ),
    "note": Mark("note (not a verdict)", COLOURS["note"]),
}
UNKNOWN_FINDING = Mark("other finding", "#ffffff", COLOURS["note"])

#: The legend under the plot, in the order of the lanes.
LEGEND = (
    Mark("screen change", COLOURS["frame"]),
    Mark("screen unchanged", COLOURS["unchanged"]),
    Mark("site allowed", COLOURS["site_allowed"]),
    Mark("site blocked", COLOURS["site_blocked"]),
    Mark("site around the proxy", COLOURS["site_bypass"]),
    Mark("device event", COLOURS["device"]),
    Mark("observation", COLOURS["observation"]),
    *FINDING_MARKS.values(),
    Mark("gap in captures", COLOURS["gap"]),
)


def finding_mark(finding: Finding) -> tuple[str, Mark]:
    """(its class in the plot, how it is drawn) for a finding of any kind (pure)."""
    kind = finding.current.kind
    if kind == "suspected_irregularity":
        kind += " confirmed" if finding.counts else " awaiting"
    return kind, FINDING_MARKS.get(kind, UNKNOWN_FINDING)


def _tick_step(span: timedelta) -> timedelta:
    minutes = span.total_seconds() / 60
    for step in (1, 5, 10, 15, 30, 60, 120):
        if minutes / step <= 12:
            return timedelta(minutes=step)
    return timedelta(hours=4)


def timeline_svg(timeline: Timeline) -> str:
    start, end = timeline.start, timeline.end
    total = max((end - start).total_seconds(), 1.0)
    plot_w = WIDTH - LABEL_W - 24  # room for the last time label
    height = TOP + LANE_H * len(LANES) + 40

    def x(moment: datetime) -> float:
        return LABEL_W + plot_w * min(max((moment - start).total_seconds() / total, 0.0), 1.0)

    def lane_y(name: str) -> float:
        return TOP + LANE_H * LANES.index(name)

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'class="timeline-plot" role="img" aria-label="Timeline of the session">',
        '<style>text{font-family:"DejaVu Sans",sans-serif;font-size:15px;fill:#222}'
        ".axis{font-size:13px;fill:#555}</style>",
    ]
    for index, name in enumerate(LANES):
        y = lane_y(name)
        if index % 2 == 0:
            parts.append(f'<rect x="{LABEL_W}" y="{y}" width="{plot_w}" height="{LANE_H}" fill="#f4f6f8"/>')
        parts.append(f'<text x="4" y="{y + LANE_H * 0.65:.1f}">{escape(name)}</text>')

    def shape(element: str, geometry: str, paint: str, title: str | None, cls: str | None) -> None:
        attributes = f"{geometry} {paint}" + (f' class="{escape(cls)}"' if cls else "")
        if title is None:
            parts.append(f"<{element} {attributes}/>")
        else:  # a tooltip where the SVG is shown in a browser
            parts.append(f"<{element} {attributes}><title>{escape(title)}</title></{element}>")

    def bar(
        lane: str,
        left: datetime,
        right: datetime,
        colour: str,
        pad: float = 6.0,
        *,
        paint: str | None = None,
        title: str | None = None,
        cls: str | None = None,
    ) -> None:
        x0, x1 = x(left), x(right)
        y = lane_y(lane) + pad
        geometry = f'x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1.0):.1f}" height="{LANE_H - 2 * pad:.1f}"'
        shape("rect", geometry, paint or f'fill="{colour}"', title, cls)

    def tick(lane: str, moment: datetime, colour: str, pad: float = 4.0, width: float = 1.2) -> None:
        y = lane_y(lane)
        parts.append(
            f'<line x1="{x(moment):.1f}" y1="{y + pad:.1f}" x2="{x(moment):.1f}" y2="{y + LANE_H - pad:.1f}" '
            f'stroke="{colour}" stroke-width="{width}"/>'
        )

    def diamond(
        lane: str,
        moment: datetime,
        colour: str,
        *,
        paint: str | None = None,
        title: str | None = None,
        cls: str | None = None,
    ) -> None:
        cx, cy, r = x(moment), lane_y(lane) + LANE_H / 2, 5
        geometry = f'points="{cx:.1f},{cy - r} {cx + r:.1f},{cy} {cx:.1f},{cy + r} {cx - r:.1f},{cy}"'
        shape("polygon", geometry, paint or f'fill="{colour}"', title, cls)

    for entry in timeline.entries:
        if isinstance(entry, Frame):
            tick("Screen changes", entry.at, COLOURS["frame"], width=0.8)
        elif isinstance(entry, UnchangedSpan):
            bar("Unchanged", entry.start, entry.end, COLOURS["unchanged"])
    for site in timeline.sites:
        if site["source"] == "sentinel":
            colour, width = COLOURS["site_bypass"], 2.0
        elif site["decision"] == "blocked":
            colour, width = COLOURS["site_blocked"], 2.0
        else:
            colour, width = COLOURS["site_allowed"], 0.8
        tick("Sites", site["time"], colour, width=width)
    for event in timeline.device_events:
        diamond("Device", event["at"], COLOURS["device"])
    for observation in timeline.observations:
        diamond("Observations", observation["at"], COLOURS["observation"])
    for finding in timeline.findings:
        current = finding.current
        kind, mark = finding_mark(finding)
        left = datetime.fromisoformat(current.span_start)
        title, cls = f"{mark.label}, by {current.author}", f"finding {kind}"
        if current.span_end:
            right = datetime.fromisoformat(current.span_end)
            bar("Findings", left, right, "", pad=5, paint=mark.svg, title=title, cls=cls)
        else:
            diamond("Findings", left, "", paint=mark.svg, title=title, cls=cls)
    for gap in timeline.gaps:
        bar("Gaps", gap.start, gap.end, COLOURS["gap"], pad=8)

    axis_y = TOP + LANE_H * len(LANES)
    parts.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + plot_w}" y2="{axis_y}" stroke="#555"/>')
    step = _tick_step(end - start)
    first = start.replace(second=0, microsecond=0)
    minute = int(step.total_seconds() // 60)
    first -= timedelta(minutes=first.minute % minute if minute < 60 else first.minute)
    moment = first
    while moment <= end:
        if moment >= start:
            parts.append(
                f'<line x1="{x(moment):.1f}" y1="{TOP}" x2="{x(moment):.1f}" y2="{axis_y + 4}" '
                'stroke="#ccc" stroke-width="0.5"/>'
                f'<text class="axis" x="{x(moment):.1f}" y="{axis_y + 18}" text-anchor="middle">'
                f"{moment:%H:%M}</text>"
            )
        moment += step
    parts.append(
        f'<text class="axis" x="{LABEL_W + plot_w}" y="{axis_y + 34}" text-anchor="end">time (UTC)</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
