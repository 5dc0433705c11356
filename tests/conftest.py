"""Fixtures on top of tests/support.py: a fresh data directory with a provisioned exam, the Flask app on it,
and the real hall server under gunicorn."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hall_server.app import create_app

from support import ExamSetup, LiveServer, provision_exam


@pytest.fixture
def exam(tmp_path: Path) -> ExamSetup:
    return provision_exam(tmp_path / "data")


@pytest.fixture
def app(exam: ExamSetup):
    return create_app({"data_dir": str(exam.data_dir)})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(exam: ExamSetup) -> Iterator[LiveServer]:
    server = LiveServer(exam.data_dir).start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Under ``make test`` (INVIGIL_NO_SKIPS=1) a skip is a failure: setup installed every tool a test
    needs, so a skip there would hide a missing install step or a broken environment."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("INVIGIL_NO_SKIPS") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under INVIGIL_NO_SKIPS (make test installs every tool): {report.longrepr}"
