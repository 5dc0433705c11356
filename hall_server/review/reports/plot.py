"""The timeline plot of a report as inline SVG, drawn in Python: no JavaScript, no CDN, the same picture in
the HTML page and the PDF. Pure: takes a :class:`~hall_server.review.reports.timeline.Timeline`, returns
markup.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

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
    "gap": "#e67e22",
}


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

    def bar(lane: str, left: datetime, right: datetime, colour: str, pad: float = 6.0) -> None:
        x0, x1 = x(left), x(right)
        y = lane_y(lane) + pad
        parts.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1.0):.1f}" '
            f'height="{LANE_H - 2 * pad:.1f}" fill="{colour}"/>'
        )

    def tick(lane: str, moment: datetime, colour: str, pad: float = 4.0, width: float = 1.2) -> None:
        y = lane_y(lane)
        parts.append(
            f'<line x1="{x(moment):.1f}" y1="{y + pad:.1f}" x2="{x(moment):.1f}" y2="{y + LANE_H - pad:.1f}" '
            f'stroke="{colour}" stroke-width="{width}"/>'
        )

    def diamond(lane: str, moment: datetime, colour: str) -> None:
        cx, cy, r = x(moment), lane_y(lane) + LANE_H / 2, 5
        parts.append(
            f'<polygon points="{cx:.1f},{cy - r} {cx + r:.1f},{cy} {cx:.1f},{cy + r} {cx - r:.1f},{cy}" '
            f'fill="{colour}"/>'
        )

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
        colour = COLOURS[current.kind]
        left = datetime.fromisoformat(current.span_start)
        if current.span_end:
            bar("Findings", left, datetime.fromisoformat(current.span_end), colour, pad=5)
        else:
            diamond("Findings", left, colour)
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
