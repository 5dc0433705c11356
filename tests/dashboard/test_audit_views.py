"""Every view of personal data is audited, grouped (one row per view, naming the captures and students it
showed), and the exam board reads the log newest first, page by page."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from halls import PASSWORD

from hall_server.app import create_app
from hall_server.store import audit, db, users
from hall_server.store.db import db_path, write_transaction
from invigil.timeutil import utc_now


@pytest.fixture
def app(halls):
    store = db.connect(halls[0].data_dir)
    users.create_user(store, "bora", PASSWORD, ["exam_board"])
    users.assign(store, "bora", "exam_board", exam_id=halls[0].exam_id)
    store.close()
    return create_app({"data_dir": str(halls[0].data_dir)})


def _login(client, username: str) -> None:
    page = client.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(
        "/dashboard/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
    )
    assert answer.status_code == 302


def _rows(halls, action: str) -> list[dict]:
    with sqlite3.connect(db_path(halls[0].data_dir)) as store:
        return [
            json.loads(r[0]) for r in store.execute("SELECT detail FROM audit_log WHERE action = ?", [action])
        ]


def test_the_hall_the_overview_the_search_and_the_queue_are_audited_once_per_view(app, halls):
    exam_id = halls[0].exam_id
    invigilator, board = app.test_client(), app.test_client()
    _login(invigilator, "anna")
    _login(board, "bora")
    assert invigilator.get(f"/dashboard/exams/{exam_id}/hall.json").status_code == 200
    assert _rows(halls, "view_hall") == [{"seats": 30}]
    assert board.get(f"/dashboard/review/exams/{exam_id}").status_code == 200
    assert board.get(f"/dashboard/review/exams/{exam_id}?q=Alice%20Jansen").status_code == 200
    assert board.get(f"/dashboard/review/exams/{exam_id}/search.json?q=chatgpt").status_code == 200
    assert board.get(f"/dashboard/review/exams/{exam_id}/queue.json").status_code == 200
    overview = _rows(halls, "review_overview")
    assert overview[0] == {"students": 30} and overview[1]["search"] is True
    searches = _rows(halls, "review_search")
    assert searches == [{"search": True, "hits": 0, "students": []}]
    assert _rows(halls, "queue_view") == [{"moments": 0}]
    with sqlite3.connect(db_path(halls[0].data_dir)) as store:
        details = " ".join(r[0] for r in store.execute("SELECT detail FROM audit_log"))
    assert "Jansen" not in details and "chatgpt" not in details  # what was searched for is never kept


def test_the_board_reads_the_log_newest_first_page_by_page(app, halls):
    exam_id = halls[0].exam_id
    store = db.connect(halls[0].data_dir)
    with write_transaction(store):
        for n in range(1_203):
            audit.insert(store, None, "report_view", exam_id, None, {"n": n}, utc_now())
    store.close()
    board = app.test_client()
    _login(board, "bora")
    page = board.get(f"/dashboard/review/exams/{exam_id}/audit").get_data(as_text=True)
    numbers = [int(n) for n in re.findall(r"<span>n=(\d+)</span>", page)]
    assert numbers[:3] == [1202, 1201, 1200] and len(numbers) == 500
    assert "1203 rows for this exam" in page
    older = re.search(r'class="older" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    second = board.get(older).get_data(as_text=True)
    numbers = [int(n) for n in re.findall(r"<span>n=(\d+)</span>", second)]
    assert numbers[0] == 702 and len(numbers) == 500 and "← Newest" in second
    last = board.get(re.search(r'class="older" href="([^"]+)"', second).group(1).replace("&amp;", "&"))
    numbers = [int(n) for n in re.findall(r"<span>n=(\d+)</span>", last.get_data(as_text=True))]
    assert numbers[0] == 202 and numbers[-1] == 0 and 'class="older"' not in last.get_data(as_text=True)


def test_a_student_filter_finds_the_grouped_rows_that_name_the_student(app, halls):
    exam_id = halls[0].exam_id
    store = db.connect(halls[0].data_dir)
    audit.record(store, None, "view_thumbnails", exam_id, None, {"captures": ["1.c"], "students": ["s0007"]})
    audit.record(store, None, "view_thumbnails", exam_id, None, {"captures": ["2.c"], "students": ["s0008"]})
    found = audit.read_log(store, exam_id=exam_id, student_number="s0007")
    store.close()
    assert [e.detail["students"] for e in found] == [["s0007"]]
