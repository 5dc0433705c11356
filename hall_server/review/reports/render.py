"""Rendering a report: one Jinja2 template (``templates/report.html``) gives the self-contained HTML page
(images as data: URIs, the plot as inline SVG, the chained records as embedded JSON) and, through
``hall_server.review.reports.pdf``, the PDF for the exam board.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from hall_server.review.reports.data import ReportData, generated_stamp
from hall_server.review.reports.plot import LEGEND, finding_mark, timeline_svg
from hall_server.review.reports.shown import hms, row_links
from hall_server.settings import GAP_INTERVALS
from invigil.timeutil import from_wire

CHAIN_SCRIPT_ID = "invigil-chain"


def _moment(value: datetime | str) -> datetime:
    return from_wire(value) if isinstance(value, str) else value


def _css_string(value: Any) -> Markup:
    # For content: "..." in the @page rules: nothing that ends the string, the rule or the style element.
    return Markup(re.sub(r'["\\<>\n\r{}]', "", str(value)))  # noqa: S704 (stripped above)


_env = Environment(
    loader=PackageLoader("hall_server.review.reports", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["dt"] = lambda value: f"{_moment(value):%Y-%m-%d %H:%M:%S} UTC"
_env.filters["hms"] = hms  # the rows verify reads back print their times with it
_env.filters["hm"] = lambda value: f"{_moment(value):%H:%M}"
_env.filters["css"] = _css_string
# The plot's legend and how each finding is drawn: the findings table uses the same words and classes.
_env.globals["legend"] = LEGEND
_env.globals["finding_mark"] = finding_mark


def chain_json(report: ReportData) -> str:
    """The chained records of every session, as ``invigil-server verify`` reads them back."""
    payload = {
        "exam_id": report.exam.id,
        "student_number": report.student["student_number"],
        "sessions": [session.chain.as_json() for session in report.sessions],
    }
    return json.dumps(payload, separators=(",", ":"))


def render_html(report: ReportData, *, embed_chain: bool = True) -> str:
    """The report page. ``embed_chain`` carries the chained records for ``invigil-server verify``; the PDF
    leaves them out (WeasyPrint would parse ~1 MB of JSON it never shows: 3 s of a 7 s PDF, measured)."""
    template = _env.get_template("report.html")
    for session in report.sessions:
        session.svg = timeline_svg(session.timeline)
    # "</" cannot end the script element early once escaped; JSON reads "<\/" back as "</".
    embedded = chain_json(report).replace("</", "<\\/") if embed_chain else "{}"
    return template.render(
        report=report,
        exam=report.exam,
        student=report.student,
        generated=generated_stamp(report),
        chain_json=embedded,
        embedded=embed_chain,
        gap_intervals=GAP_INTERVALS,
        links={
            session.timeline.session.id: row_links(
                session.chain, session.timeline.sites, session.timeline.device_events
            )
            for session in report.sessions
        },
    )


_CHAIN_RE = re.compile(
    r'<script type="application/json" id="' + CHAIN_SCRIPT_ID + r'">(.*?)</script>', re.DOTALL
)


def chain_from_html(html: str) -> dict[str, Any]:
    """The chained records a rendered report carries (for ``invigil-server verify REPORT.html``)."""
    match = _CHAIN_RE.search(html)
    if match is None:
        raise ValueError("this HTML is not an Invigil report (no embedded hash chain)")
    value = json.loads(match.group(1))
    if not isinstance(value, dict):
        raise ValueError("the embedded hash chain is not a JSON object")
    return value
