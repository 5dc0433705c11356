"""``invigil-server serve --role``: what each process role serves, and the layouts it refuses."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hall_server.app import create_app
from hall_server.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "ingest"], "--role ingest needs --message-queue"),
        (["--role", "live", "--workers", "2"], "exactly one worker"),
    ],
)
def test_serve_refuses_layouts_that_cannot_work(tmp_path, args, message):
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "data"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_each_role_serves_its_part_only(halls):
    data_dir = str(halls[0].data_dir)
    live = create_app({"data_dir": data_dir, "process_role": "live"}).test_client()
    assert live.get("/api/v1/health").status_code == 200
    assert live.post("/api/v1/enrol", json={}).status_code == 404
    assert live.get("/dashboard/login").status_code == 200
    ingest = create_app(
        {"data_dir": data_dir, "process_role": "ingest", "message_queue": "redis://127.0.0.1:1/0"}
    ).test_client()
    assert ingest.get("/dashboard/login").status_code == 404
    assert ingest.get("/api/v1/health").status_code == 200
    with pytest.raises(ValueError, match="needs message_queue"):
        create_app({"data_dir": data_dir, "process_role": "ingest"})
    with pytest.raises(ValueError, match="process_role"):
        create_app({"data_dir": data_dir, "process_role": "everything"})
