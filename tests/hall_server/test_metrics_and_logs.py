"""``/metrics`` (Prometheus text through prometheus_client) and JSON-line logs, on the real server.

The real agent transport enrols, uploads and beats; the scrape then shows what happened, parsed with
prometheus_client's own text parser. A scraper from another address needs the token. The server's stderr
(what journald keeps) is one JSON object per line with the request id and exam where known.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from agent.transport import HallClient, Refused
from hall_server.app import create_app
from invigil.payloads import CaptureMeta, Enrolment, Heartbeat
from invigil.timeutil import utc_now

from support import LiveServer, png_bytes, sha256

BIN = Path(sys.executable).parent


def scrape(url: str, **kwargs: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{url}/metrics", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST  # the text format prometheus_client writes
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_show_agents_records_latency_refusals_and_health(exam, tmp_path: Path) -> None:
    server = LiveServer(exam.data_dir).start()
    try:
        client = HallClient(server.url)
        client.enrol(Enrolment("s0001", exam.join_code, "agent-0001", utc_now(), "0.1", "Linux"))
        body = png_bytes(320, 200, seed=3)
        client.put_capture(
            "cap-0000001", CaptureMeta(0, utc_now(), sha256(body), 320, 200), body, "image/png"
        )
        client.heartbeat(Heartbeat(utc_now(), backlog=7))
        try:
            HallClient(server.url).enrol(Enrolment("x9999", exam.join_code, "agent-0002", utc_now()))
        except Refused:
            pass
        else:
            raise AssertionError("an unknown student was enrolled")
        samples = scrape(server.url)
        exam_label = (("exam", str(exam.exam_id)),)
        assert samples[("invigil_agents_enrolled", exam_label)] == 1
        assert samples[("invigil_agents_live", exam_label)] == 1
        assert samples[("invigil_agents_stale", exam_label)] == 0
        assert samples[("invigil_agent_spool_backlog", exam_label)] == 7
        for kind in ("enrolment", "capture", "heartbeat"):
            assert samples[("invigil_records_received_total", (("kind", kind),))] == 1, kind
            assert samples[("invigil_ack_latency_seconds_count", (("kind", kind),))] == 1, kind
            assert samples[("invigil_ack_latency_seconds_sum", (("kind", kind),))] > 0
        refused = {
            labels: value
            for (name, labels), value in samples.items()
            if name == "invigil_rejected_requests_total"
        }
        assert sum(refused.values()) == 1 and list(refused)[0][0][1].startswith("4")
        assert 0 <= samples[("invigil_health", ())] <= 10
        assert samples[("invigil_blob_bytes", ())] > len(body) / 2  # encrypted screen and thumbnail on disk
        assert samples[("invigil_write_queue_depth", ())] == 0
        assert ("invigil_retention_last_run_ok", ()) not in samples  # retention never ran here
    finally:
        server.stop()


def test_retention_runs_show_in_the_metrics(exam) -> None:
    done = subprocess.run(
        [str(BIN / "invigil-server"), "retention", "--data-dir", str(exam.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    server = LiveServer(exam.data_dir).start()
    try:
        samples = scrape(server.url)
        assert samples[("invigil_retention_last_run_ok", ())] == 1
        assert samples[("invigil_retention_last_run_deleted_exams", ())] == 0
        assert abs(samples[("invigil_retention_last_run_timestamp_seconds", ())] - time.time()) < 120
    finally:
        server.stop()


def test_metrics_from_another_address_need_the_scrape_token(exam, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text("scrape-me-0123456789\n")
    app = create_app({"data_dir": str(exam.data_dir), "metrics_token_file": str(token_file)})
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert remote.get("/metrics").status_code == 403
    assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    answer = remote.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
    assert answer.status_code == 200 and b"invigil_health" in answer.data
    no_token = create_app({"data_dir": str(exam.data_dir)}).test_client()
    no_token.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert no_token.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403


def test_the_server_logs_json_lines_with_the_request_id(exam, monkeypatch) -> None:
    monkeypatch.setenv("INVIGIL_LOG_FORMAT", "json")
    server = LiveServer(exam.data_dir).start()
    try:
        refused = requests.post(
            f"{server.url}/api/v1/heartbeat", json={}, headers={"X-Request-Id": "req-test-42"}, timeout=10
        )
        assert refused.status_code >= 400 and refused.headers["X-Request-Id"] == "req-test-42"
        assert requests.get(f"{server.url}/api/v1/health", timeout=10).headers["X-Request-Id"]
    finally:
        server.stop()
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "event"} <= set(event) for event in events)
    mine = [event for event in events if event.get("request_id") == "req-test-42"]
    assert mine and mine[0]["status"] == refused.status_code and mine[0]["path"] == "/api/v1/heartbeat"
    assert any(event["logger"].startswith("gunicorn") for event in events)
