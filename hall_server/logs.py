"""Log lines for the journal: one JSON object per line, or the classic text line (``log_format``).

Every record becomes ``{"time", "level", "logger", "event", ...}``; inside a request it also carries
``request_id`` (the client's ``X-Request-Id`` or one made here, echoed in the response header), and
``exam`` and ``seat`` when the URL names them (``exam_id``, ``session_id``) or the code logging the line
passed them with ``extra={"exam": ..., "seat": ...}``. gunicorn's own lines (workers, access log) take the
same form through ``gunicorn_logconfig``, so journald keeps one event per line that ``jq`` can read.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
_CONTEXT_KEYS = ("exam", "seat", "request_id")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _request_context() -> dict[str, Any]:
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover - the server always has Flask
        return {}
    if not has_request_context():
        return {}
    found: dict[str, Any] = {"request_id": g.get("request_id")}
    args = request.view_args or {}
    if "exam_id" in args:
        found["exam"] = args["exam_id"]
    if "session_id" in args:
        found["seat"] = args["session_id"]
    return {key: value for key, value in found.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        event.update(_request_context())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, ensure_ascii=False)


TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"INVIGIL_LOG_FORMAT must be json or text, not {log_format!r}")


def gunicorn_logconfig(log_format: str, access_log: bool) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error and access logs and ours, all to stderr in one format."""
    formatter(log_format)  # refuses an unknown format before gunicorn starts
    chosen = {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"invigil": chosen},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "invigil", "stream": "ext://sys.stderr"}
        },
        "root": {"level": "WARNING", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO" if access_log else "WARNING",
                "handlers": ["stderr"],
                "propagate": False,
            },
            "invigil": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }


def new_request_id(sent: str | None) -> str:
    """The client's request id when it is a short printable token, else a new one."""
    if sent and len(sent) <= 64 and sent.isascii() and sent.isprintable() and " " not in sent:
        return sent
    return secrets.token_hex(8)
