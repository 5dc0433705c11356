"""``GET /metrics``: the hall server in Prometheus text format (``prometheus_client``), for the appliance's
monitoring (docs/appliance.md, "Monitoring").

Two kinds of figures:

- counted by this process as requests pass (``before_request``/``after_request`` of the app): records
  received by kind, the acknowledgement latency of each kind, requests refused by HTTP status;
- read when scraped: agents enrolled, live and stale per exam and the spool backlog they report (the
  store's sessions), site events by source and decision (the proxy's and sentinel's outcomes), retention's
  deletions and its last run (``invigil-server retention`` notes it), , blob bytes on
  disk, the health value agents get, requests in flight and writers waiting for the store's write lock.

Who may scrape: a client on loopback, or one that sends ``Authorization: Bearer <token>`` with the token in
``metrics_token_file`` (empty: loopback only). Each app has its own registry, so tests can build many.
"""

from __future__ import annotations

import hmac
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hall_server.ingest import health
from hall_server.review import retention
from hall_server.store import writegate
from hall_server.store.db import connect, db_path
from invigil.protocol import API_PREFIX

LOOPBACK = ("127.0.0.1", "::1")
#: The agent API's endpoints that store something, and the kind of record each stores.
RECORD_KINDS = {
    "api_v1.enrol": "enrolment",
    "api_v1.heartbeat": "heartbeat",
    "api_v1.put_capture": "capture",
    "api_v1.put_thumbnail": "thumbnail",
    "api_v1.put_unchanged": "unchanged",
    "api_v1.post_device_events": "device_event",
    "api_v1.post_site_events": "site_event",
}
BLOB_BYTES_CACHE_S = 60.0


class StoreCollector(Collector):
    """Figures read from the store and the data directory at each scrape."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._blob_bytes: tuple[float, int] = (0.0, 0)

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # nothing to describe up front: registering must not read the store (nor fill the cache)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        hall = self.app.extensions["invigil"]
        settings = hall.settings
        yield from self._sessions(hall.data_dir, settings)
        yield from self._site_events_and_retention(hall.data_dir)
        gate, _ = writegate.for_store(db_path(hall.data_dir))
        latency = hall.ack_latency.recent_ms() if hall.ack_latency is not None else 0.0
        limits = health.Limits.from_settings(settings)
        value = health.health(gate.waiting, latency, shutil.disk_usage(hall.data_dir).free, limits)
        yield GaugeMetricFamily(
            "invigil_health", "Health value (0-10) the agents get with each answer.", value
        )
        yield GaugeMetricFamily(
            "invigil_requests_in_flight", "Agent-API requests being served.", hall.inflight
        )
        yield GaugeMetricFamily(
            "invigil_ack_latency_ms", "Mean agent-API acknowledgement time over the last 2 s.", latency
        )
        yield GaugeMetricFamily(
            "invigil_write_queue_depth", "Writers waiting for the store's write lock.", gate.waiting
        )
        yield GaugeMetricFamily(
            "invigil_blob_bytes", "Bytes of encrypted screens on disk.", self._blobs(hall.data_dir)
        )

    def _sessions(self, data_dir: Path, settings: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        enrolled = GaugeMetricFamily(
            "invigil_agents_enrolled", "Sessions not ended, per exam.", labels=["exam"]
        )
        live = GaugeMetricFamily(
            "invigil_agents_live", "Sessions heard from lately, per exam.", labels=["exam"]
        )
        stale = GaugeMetricFamily(
            "invigil_agents_stale", "Sessions silent for two capture intervals or more.", labels=["exam"]
        )
        backlog = GaugeMetricFamily(
            "invigil_agent_spool_backlog",
            "Records the agents report waiting in their spools.",
            labels=["exam"],
        )
        db = connect(data_dir)
        try:
            rows = db.execute(
                "SELECT s.exam_id, s.last_seen_at, s.backlog, e.capture_interval_s FROM agent_session s "
                "JOIN exam e ON e.id = s.exam_id WHERE s.ended_at IS NULL"
            ).fetchall()
        finally:
            db.close()
        per_exam: dict[str, list[int]] = {}
        for exam_id, last_seen, spooled, interval in rows:
            counts = per_exam.setdefault(str(exam_id), [0, 0, 0, 0])
            silent = now - datetime.fromisoformat(last_seen.replace("Z", "+00:00"))
            fresh = silent < timedelta(seconds=settings["seat_stale_intervals"] * interval)
            counts[0] += 1
            counts[1 if fresh else 2] += 1
            counts[3] += spooled
        for exam, (n_enrolled, n_live, n_stale, n_backlog) in sorted(per_exam.items()):
            enrolled.add_metric([exam], n_enrolled)
            live.add_metric([exam], n_live)
            stale.add_metric([exam], n_stale)
            backlog.add_metric([exam], n_backlog)
        yield from (enrolled, live, stale, backlog)

    def _site_events_and_retention(self, data_dir: Path) -> Iterator[GaugeMetricFamily]:
        decisions = GaugeMetricFamily(
            "invigil_site_events",
            "Site events stored, by source (proxy, sentinel, dns) and decision (allow, block, ...).",
            labels=["source", "decision"],
        )
        deletions = GaugeMetricFamily(
            "invigil_retention_deletions",
            "Exams retention deleted, complete or with held cases.",
            labels=["result"],
        )
        db = connect(data_dir)
        try:
            for source, decision, count in db.execute(
                "SELECT source, decision, COUNT(*) FROM site_event GROUP BY source, decision ORDER BY 1, 2"
            ):
                decisions.add_metric([source, decision], count)
            for complete, count in db.execute(
                "SELECT complete, COUNT(*) FROM deletion_log GROUP BY complete"
            ):
                deletions.add_metric(["complete" if complete else "held"], count)
        finally:
            db.close()
        yield decisions
        yield deletions
        status = retention.last_run(data_dir)
        if status:
            yield GaugeMetricFamily(
                "invigil_retention_last_run_timestamp_seconds", "When retention last ran.", status["at"]
            )
            yield GaugeMetricFamily(
                "invigil_retention_last_run_ok", "1 when the last retention run succeeded.", int(status["ok"])
            )
            yield GaugeMetricFamily(
                "invigil_retention_last_run_deleted_exams", "Exams the last run deleted.", status["exams"]
            )

    def _blobs(self, data_dir: Path) -> int:
        at, total = self._blob_bytes
        if time.monotonic() - at < BLOB_BYTES_CACHE_S and at:
            return total
        total = 0
        for folder, _dirs, files in os.walk(data_dir / "blobs"):
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:  # deleted by retention meanwhile
                    continue
        self._blob_bytes = (time.monotonic(), total)
        return total


def _scrape_token(settings: dict[str, Any]) -> str:
    if not settings["metrics_token_file"]:
        return ""
    try:
        return Path(settings["metrics_token_file"]).read_text().strip()
    except OSError:
        return ""


def init_app(app: Flask) -> None:
    """Count the agent API's requests and serve ``/metrics``."""
    registry = CollectorRegistry(auto_describe=True)
    received = Counter(
        "invigil_records_received", "Records the agent API stored, by kind.", ["kind"], registry=registry
    )
    latency = Histogram(
        "invigil_ack_latency_seconds",
        "Time from a request's arrival to its acknowledgement, by record kind.",
        ["kind"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=registry,
    )
    rejected = Counter(
        "invigil_rejected_requests",
        "Agent-API requests refused, by HTTP status.",
        ["code"],
        registry=registry,
    )
    registry.register(StoreCollector(app))
    app.extensions["invigil_metrics"] = registry

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _counted(response: Response) -> Response:
        if not request.path.startswith(API_PREFIX):
            return response
        if response.status_code >= 400:
            rejected.labels(str(response.status_code)).inc()
            return response
        kind = RECORD_KINDS.get(request.endpoint or "")
        if kind is not None:
            received.labels(kind).inc()
            latency.labels(kind).observe(time.perf_counter() - g.get("metrics_started", time.perf_counter()))
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        token = _scrape_token(app.extensions["invigil"].settings)
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        allowed = request.remote_addr in LOOPBACK or (token and hmac.compare_digest(sent, token))
        if not allowed:
            abort(
                403,
                "metrics are served on loopback, or with 'Authorization: Bearer <token>' "
                "(the metrics_token_file setting)",
            )
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
