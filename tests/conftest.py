"""Fixtures on top of tests/support.py: a fresh data directory with a provisioned exam, the Flask app on it,
and the real hall server under gunicorn."""

from __future__ import annotations

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
