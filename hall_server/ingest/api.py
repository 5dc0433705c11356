"""Agent API v1 (Flask blueprint): parse the request, call the store, answer JSON.

The shapes are those of ``invigil.payloads``; the OpenAPI document in ``hall_server.ingest.openapi`` describes
them for clients and for the schemathesis suite.
"""

from __future__ import annotations

import base64
import hmac
import shutil
import time
from typing import Any

import werkzeug.exceptions
from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue

from hall_server import errors
from hall_server.ingest import health, records, sessions
from hall_server.ingest.openapi import openapi_document
from hall_server.store import writegate
from hall_server.store.db import db_path
from hall_server.web import get_db, state
from invigil import payloads, tiles
from invigil import protocol as p
from invigil.timeutil import to_wire, utc_now

bp = Blueprint("api_v1", __name__, url_prefix=p.API_PREFIX)


@bp.before_request
def _count_in() -> None:
    hall = state()
    with hall.lock:
        hall.inflight += 1
        if hall.ack_latency is None:
            hall.ack_latency = health.AckLatency()
    g.invigil_started = time.monotonic()
    if request.method != "GET":  # GET /health stays open: it is how an agent learns the server is back
        limits = health.Limits.from_settings(hall.settings)
        queue, latency = _load()
        if health.overloaded(queue, latency, limits):
            g.invigil_refused = True
            raise errors.ServiceUnavailable(
                f"the hall server is busy: try again in {limits.retry_after_s} s (nothing of this request "
                "was read or stored; keep it and send it again)",
                "busy",
            )


@bp.teardown_request
def _count_out(_exc: BaseException | None) -> None:
    hall = state()
    with hall.lock:
        hall.inflight -= 1
    started = g.get("invigil_started")
    if started is not None and not g.get("invigil_refused") and hall.ack_latency is not None:
        hall.ack_latency.observe((time.monotonic() - started) * 1000)


@bp.after_request
def _retry_after(response: Response) -> Response:
    if response.status_code == 503:
        response.headers["Retry-After"] = str(health.Limits.from_settings(state().settings).retry_after_s)
        response.headers["Connection"] = "close"  # the body was never read: never reuse this connection
    return response


def _load() -> tuple[int, float]:
    """Writers of this process queued for the store's write lock, and the recent acknowledgement time."""
    hall = state()
    gate, _ = writegate.for_store(db_path(hall.data_dir))
    return gate.waiting, hall.ack_latency.recent_ms() if hall.ack_latency is not None else 0.0


def _check_protocol() -> None:
    sent = request.headers.get(p.PROTOCOL_HEADER)
    if sent is None:
        raise errors.BadRequest(
            f"header {p.PROTOCOL_HEADER} is required (this server speaks protocol {p.PROTOCOL_VERSION})",
            "missing_protocol",
        )
    if sent.strip() != str(p.PROTOCOL_VERSION):
        raise errors.UpgradeRequired(
            f"this client speaks protocol {sent[:16]!r} but the hall server speaks "
            f"{p.PROTOCOL_VERSION}: install the agent from this hall's bundle"
        )


def _json_body() -> Any:
    _check_protocol()
    request.max_content_length = state().settings["json_max_bytes"]
    if request.mimetype != "application/json":
        raise errors.UnsupportedMediaType("send the body as Content-Type: application/json", "not_json")
    try:
        return request.get_json()  # a literal null comes back as None; the parser names that problem
    except (werkzeug.exceptions.BadRequest, RecursionError):  # RecursionError: nested deeper than we decode
        raise errors.BadRequest("the body is not valid JSON", "bad_json") from None


def _session() -> sessions.Session:
    _check_protocol()
    return sessions.authenticate(get_db(), request.headers.get("Authorization"), utc_now())


def _current_health() -> int:
    hall = state()
    queue, latency = _load()
    limits = health.Limits.from_settings(hall.settings)
    return health.health(queue, latency, shutil.disk_usage(hall.data_dir).free, limits)


@bp.get("/health")
def get_health() -> ResponseReturnValue:
    return jsonify(
        status="ok", protocol=p.PROTOCOL_VERSION, health=_current_health(), server_time=to_wire(utc_now())
    )


@bp.get("/openapi.json")
def get_openapi() -> ResponseReturnValue:
    return jsonify(openapi_document())


@bp.post("/enrol")
def enrol() -> ResponseReturnValue:
    enrolment = payloads.parse_enrolment(_json_body())
    now = utc_now()
    hall = state()
    token, session = sessions.enrol(get_db(), enrolment, request.remote_addr or "", now, hall.settings)
    spool_key = sessions.spool_key(get_db(), hall.master_key, session)
    return jsonify(
        session_token=token,
        session_id=session.id,
        # The agent keeps this in memory only: its spool on the laptop is sealed with it (docs/api.md).
        spool_key=base64.urlsafe_b64encode(spool_key).decode().rstrip("="),
        protocol=p.PROTOCOL_VERSION,
        server_time=to_wire(now),
        exam={
            "id": session.exam_id,
            "title": session.exam_title,
            "starts_at": to_wire(session.starts_at),
            "ends_at": to_wire(session.student_ends_at),
            "capture_interval_s": session.capture_interval_s,
        },
        # This server puts tile updates back together (docs/api.md); an agent sends them only when told so.
        tile_updates={"tiles": list(tiles.TILE_SIDES), "max_chain": tiles.MAX_CHAIN},
    ), 201


@bp.post("/heartbeat")
def heartbeat() -> ResponseReturnValue:
    session = _session()
    beat = payloads.parse_heartbeat(_json_body())
    now = utc_now()
    instructions = sessions.heartbeat(
        get_db(), session, beat, request.remote_addr or "", now, state().settings
    )
    return jsonify(
        server_time=to_wire(now),
        health=_current_health(),
        instructions=instructions,
        capture_interval_s=session.capture_interval_s,
        ends_at=to_wire(session.student_ends_at),
    )


def _image_body(limit: int) -> bytes:
    request.max_content_length = limit
    if request.content_length is None:
        raise errors.BadRequest("Content-Length is required for an image upload", "length_required")
    if request.content_length > limit:
        raise errors.PayloadTooLarge(f"the body is {request.content_length} bytes; the limit is {limit}")
    body = request.get_data(cache=False)
    if len(body) != request.content_length:
        raise errors.BadRequest("the body is shorter than its Content-Length: send it again", "truncated")
    return body


@bp.put("/captures/<capture_id>")
def put_capture(capture_id: str) -> ResponseReturnValue:
    session = _session()
    payloads.check_id(capture_id, "capture id")
    meta = payloads.parse_capture_meta(request.headers.get(p.META_HEADER))
    hall = state()
    body = _image_body(hall.settings["capture_max_bytes"])
    stored = records.store_capture(
        get_db(),
        hall.blobs,
        hall.master_key,
        session,
        capture_id,
        meta,
        body,
        request.mimetype,
        utc_now(),
        hall.settings,
    )
    return jsonify(capture_id=capture_id, stored=stored, duplicate=not stored), 201 if stored else 200


@bp.put("/captures/<capture_id>/thumbnail")
def put_thumbnail(capture_id: str) -> ResponseReturnValue:
    session = _session()
    payloads.check_id(capture_id, "capture id")
    hall = state()
    body = _image_body(hall.settings["thumbnail_max_bytes"])
    stored = records.store_thumbnail(
        get_db(), hall.blobs, hall.master_key, session, capture_id, body, request.mimetype, hall.settings
    )
    return jsonify(capture_id=capture_id, stored=stored, duplicate=not stored), 201 if stored else 200


@bp.put("/unchanged/<record_id>")
def put_unchanged(record_id: str) -> ResponseReturnValue:
    session = _session()
    payloads.check_id(record_id, "record id")
    record = payloads.parse_unchanged(_json_body())
    stored = records.store_unchanged(get_db(), session, record_id, record, utc_now(), state().settings)
    return jsonify(record_id=record_id, stored=stored, duplicate=not stored), 201 if stored else 200


@bp.post("/device-events")
def post_device_events() -> ResponseReturnValue:
    session = _session()
    events = payloads.parse_device_events(_json_body())
    stored, duplicates = records.store_device_events(get_db(), session, events, utc_now(), state().settings)
    return jsonify(stored=stored, duplicates=duplicates)


def _check_service_caller() -> None:
    """Site events come from the proxy and sentinel, which carry the service token. A loopback address
    proves nothing: the proxy on this appliance makes connections for the laptops."""
    authorization = request.headers.get("Authorization", "")
    token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), state().service_token.encode()):
        raise errors.Forbidden(
            "site events are accepted only with the hall's service token: send 'Authorization: Bearer "
            "<token>' with the token in <data_dir>/service.token (invigil-proxy and invigil-sentinel: "
            "--service-token-file)",
            "not_a_service",
        )


@bp.post("/site-events")
def post_site_events() -> ResponseReturnValue:
    _check_service_caller()
    events = payloads.parse_site_events(_json_body())
    capture_min_s = float(state().settings["site_capture_min_s"])
    stored, duplicates = records.store_site_events(get_db(), events, utc_now(), capture_min_s)
    return jsonify(stored=stored, duplicates=duplicates)
