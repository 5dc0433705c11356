"""The agent API against its own OpenAPI document (/api/v1/openapi.json), with schemathesis.

Positive and negative cases for every operation: no 5xx, only documented status codes and content types,
answers in the documented shape, and a 4xx never stores anything. Once in-process through WSGI (many
examples), once against the real server under gunicorn (few examples: the same contract over a socket).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from hall_server.ingest.openapi import openapi_document
from hall_server.store import db
from invigil import protocol as p

from support import ExamSetup, LiveServer, provision_exam

SCHEMA_PATH = f"{p.API_PREFIX}/openapi.json"
TABLES = ("agent_session", "capture", "device_event", "site_event", "observation", "instruction")
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck))


def store_state(data_dir: Path) -> dict[str, Any]:
    """Every agent-writable row, and every file under the data directory but the database itself."""
    store = db.connect(data_dir)
    try:
        state: dict[str, Any] = {
            table: store.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES
        }
    finally:
        store.close()
    state["files"] = sorted(
        str(path.relative_to(data_dir))
        for path in data_dir.rglob("*")
        if path.is_file() and not path.name.startswith("invigil.db")
    )
    return state


def enrol_token(call: Any, exam: ExamSetup) -> str:
    """A real session token, so authenticated operations get past the door and reach their checks."""
    enrolment = {
        "student_number": exam.students[0],
        "join_code": exam.join_code,
        "agent_id": "agent-schemathesis",
        "agent_time": "2026-11-23T09:00:00Z",
    }
    return str(call(enrolment)["session_token"])


def needs_session(operation: Any) -> bool:
    return any("session" in requirement for requirement in operation.definition.raw.get("security", []))


def run_operation(
    schema: Any,
    path: str,
    method: str,
    mode: GenerationMode,
    token: str,
    data_dir: Path,
    max_examples: int,
    **call: Any,
) -> None:
    """Generate cases for one operation of the served document and hold every answer to it."""
    operation = schema[path][method]
    session = {"Authorization": f"Bearer {token}"} if needs_session(operation) else {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(SETTINGS, max_examples=max_examples)
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), **session}
        before = store_state(data_dir)
        response = case.call_and_validate(checks=CHECKS, **call)
        if 400 <= response.status_code < 500:
            assert store_state(data_dir) == before, f"a {response.status_code} answer stored something"

    check()


# The operations come from the document the server serves; the table here only names them for test ids.
OPERATIONS = [
    pytest.param(
        path, method.upper(), mode, id=f"{method.upper()} {path.removeprefix(p.API_PREFIX)} {mode.value}"
    )
    for path, methods in openapi_document()["paths"].items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or "parameters" in spec
    or "requestBody" in spec  # else nothing to break
]


def test_the_served_document_is_the_one_the_code_builds(client):
    assert client.get(SCHEMA_PATH).get_json() == openapi_document()


# --- In-process: the served document, many examples --------------------------------------------------


@pytest.fixture
def wsgi_token(client, exam) -> str:
    def call(enrolment: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"{p.API_PREFIX}/enrol", json=enrolment, headers={p.PROTOCOL_HEADER: "1"})
        assert response.status_code == 201, response.get_data()
        return response.get_json()  # type: ignore[no-any-return]

    return enrol_token(call, exam)


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_api_conforms_to_its_document_in_process(app, exam, wsgi_token, path, method, mode):
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, app)
    run_operation(schema, path, method, mode, wsgi_token, exam.data_dir, max_examples=40)


# --- The real server under gunicorn: the same contract over a socket ----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExamSetup, LiveServer, str]]:
    setup = provision_exam(tmp_path_factory.mktemp("served") / "data")
    server = LiveServer(setup.data_dir).start()
    try:

        def call(enrolment: dict[str, Any]) -> dict[str, Any]:
            response = requests.post(
                f"{server.url}{p.API_PREFIX}/enrol",
                json=enrolment,
                headers={p.PROTOCOL_HEADER: "1"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            return response.json()  # type: ignore[no-any-return]

        yield setup, server, enrol_token(call, setup)
    finally:
        server.stop()


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_api_conforms_to_its_document_over_http(served, path, method, mode):
    setup, server, token = served
    schema = schemathesis.openapi.from_url(f"{server.url}{SCHEMA_PATH}")
    run_operation(
        schema, path, method, mode, token, setup.data_dir, max_examples=10, base_url=server.url, timeout=30
    )
