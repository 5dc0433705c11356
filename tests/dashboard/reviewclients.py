"""Logged-in staff on the Flask test client over a private copy of the seeded review exam: several people
at once (each client keeps its own session cookie), for the reviewer API tests that need two of them."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from reviewexam import PASSWORD, ReviewSetup

from hall_server.app import create_app
from hall_server.store import db


class Staff:
    """One logged-in staff member: JSON posts carry the CSRF token of their session."""

    def __init__(self, client: FlaskClient, username: str) -> None:
        self.client, self.username = client, username
        form = client.get("/dashboard/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        answer = client.post(
            "/dashboard/login", data={"csrf_token": token, "username": username, "password": PASSWORD}
        )
        assert answer.status_code == 302, answer.get_data(as_text=True)
        page = client.get("/dashboard/", follow_redirects=True).get_data(as_text=True)
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers={"X-CSRFToken": self.csrf})


@dataclasses.dataclass
class ReviewApp:
    setup: ReviewSetup
    app: Any

    def staff(self, username: str) -> Staff:
        return Staff(self.app.test_client(), username)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        store = db.connect(self.setup.data_dir)
        try:
            return [tuple(row) for row in store.execute(sql, params or [])]
        finally:
            store.close()

    def session_of(self, student_number: str) -> int:
        [(session_id,)] = self.query(
            "SELECT s.id FROM agent_session s JOIN roster r ON r.id = s.roster_id WHERE r.student_number = ?",
            [student_number],
        )
        return int(session_id)


@pytest.fixture(scope="module")
def review_app(review_template: ReviewSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewApp]:
    """The Flask app over a fresh copy of the seeded exam (no server process: the test client)."""
    data_dir = tmp_path_factory.mktemp("review-app") / "data"
    shutil.copytree(review_template.data_dir, data_dir)
    setup = dataclasses.replace(review_template, data_dir=data_dir)
    yield ReviewApp(setup, create_app({"data_dir": str(data_dir)}))
