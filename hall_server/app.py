"""The Flask app factory: ``create_app(test_config=None)``.

Settings come from defaults, then ``INVIGIL_*`` environment, then ``test_config``; nothing is global, so
tests build a fresh app on a temporary data directory.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from hall_server import errors, logs, metrics, pac
from hall_server.ingest.api import bp as api_bp
from hall_server.ingest.api import get_health
from hall_server.live import bus
from hall_server.settings import load_settings
from hall_server.store import crypto, db, private_files
from hall_server.store.blobs import BlobStore
from hall_server.store.screens import ScreensBusy
from hall_server.web import HallState, init_app
from invigil.protocol import API_PREFIX, ProtocolError

log = logging.getLogger("invigil.server")


def load_service_token(settings: dict[str, Any], data_dir: Path) -> str:
    """The token the proxy and sentinel present; created (0600) on first start when no file is configured."""
    path = (
        Path(settings["service_token_file"]) if settings["service_token_file"] else data_dir / "service.token"
    )
    # Whole and 0600 from the start; processes starting at once (ingest and live) agree on one token.
    private_files.create_once(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path.read_text().strip()


def load_secret_key(settings: dict[str, Any], data_dir: Path) -> bytes:
    """The key that signs staff session cookies; created (0600) on first start when no file is configured.

    Created with O_EXCL so processes starting at once (ingest and live) agree on one key."""
    path = Path(settings["secret_key_file"]) if settings["secret_key_file"] else data_dir / "secret.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) < 32:  # an empty file from an interrupted first start, or a hand-made weak key
        raise ValueError(f"{path} holds no usable secret key: delete it to have a new one made")
    return key.encode()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    settings = load_settings(overrides=test_config)
    data_dir = Path(settings["data_dir"]).resolve()
    db.migrate(data_dir)
    app = Flask(__name__)
    # "/api/v1/unchanged//x" must be a JSON 404, not an HTML redirect to a merged path: no API path has "//".
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings["capture_max_bytes"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        SECRET_KEY=load_secret_key(settings, data_dir),
        SESSION_COOKIE_NAME="invigil_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings["cookie_secure"]),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings["staff_session_hours"]),
    )
    if settings["trust_proxy_headers"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    init_app(
        app,
        HallState(
            settings=settings,
            data_dir=data_dir,
            master_key=crypto.load_or_create_master_key(data_dir),
            blobs=BlobStore(data_dir),
            service_token=load_service_token(settings, data_dir),
        ),
    )
    bus.init_app(app, data_dir, settings)
    if settings["process_role"] != "live":
        app.register_blueprint(api_bp)
    else:  # the staff-only process still answers liveness checks
        app.add_url_rule(f"{API_PREFIX}/health", "health", get_health)
    if settings["process_role"] != "ingest":
        from dashboard import init_app as init_dashboard

        init_dashboard(app)
    _register_error_handlers(app)
    _register_request_ids(app)
    metrics.init_app(app)
    pac.init_app(app)
    return app


def _register_request_ids(app: Flask) -> None:
    """Every request has an id: the client's ``X-Request-Id`` or a new one, in its log lines and answer."""

    @app.before_request
    def _request_id() -> None:
        g.request_id = logs.new_request_id(request.headers.get(logs.REQUEST_ID_HEADER))

    @app.after_request
    def _echo_request_id(response: Any) -> Any:
        if "request_id" in g:
            response.headers[logs.REQUEST_ID_HEADER] = g.request_id
        if response.status_code >= 400 and request.path.startswith(API_PREFIX):
            log.info("request refused", extra={"status": response.status_code, "path": request.path})
        return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ApiError)
    def _api_error(exc: errors.ApiError) -> Any:
        return jsonify(exc.as_json()), exc.status

    @app.errorhandler(ProtocolError)
    def _protocol_error(exc: ProtocolError) -> Any:
        return jsonify(errors.Unprocessable(exc.message, exc.code).as_json()), 422

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            message = "the body is larger than this endpoint accepts"
            code = "too_large"
        return jsonify({"error": {"code": code, "message": message}}), exc.code or 500

    @app.errorhandler(crypto.KeyUnavailable)
    def _key_gone(exc: crypto.KeyUnavailable) -> Any:
        return jsonify(
            errors.Conflict(f"{exc}; nothing more can be stored for this exam", "exam_deleted").as_json()
        ), 409

    @app.errorhandler(ScreensBusy)
    def _screens_busy(exc: ScreensBusy) -> Any:
        # Other screens are being put together (a bounded number at a time): the browser asks again.
        busy = jsonify(errors.ServiceUnavailable(str(exc)).as_json())
        busy.status_code = errors.ServiceUnavailable.status
        busy.headers["Retry-After"] = str(exc.retry_after_s)
        busy.headers["Cache-Control"] = "no-store"
        return busy

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(
            {
                "error": {
                    "code": "internal_error",
                    "message": "the hall server failed; the agent keeps the data and retries",
                }
            }
        ), 500
