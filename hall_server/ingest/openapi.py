"""The OpenAPI 3 document of the agent API, served at /api/v1/openapi.json.

Built from the constants of ``invigil.protocol`` so the document and the checks cannot drift apart; the
schemathesis suite (tests/hall_server/test_api_schemathesis.py) holds the server to it.
"""

from __future__ import annotations

from typing import Any

from invigil import protocol as p

_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
_ID = {"type": "string", "pattern": p.ID_PATTERN}
_ERROR = {
    "description": "problem",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json_body(schema_ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _ok(schema: dict[str, Any], status: str = "200", description: str = "done") -> dict[str, Any]:
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


_ERRORS = {code: _ERROR for code in ("400", "401", "403", "404", "409", "413", "415", "422", "426")}


def _error(description: str) -> dict[str, Any]:
    """An error answer whose codes the description names."""
    return {**_ERROR, "description": description}


_PROTOCOL_PARAM = {
    "name": p.PROTOCOL_HEADER,
    "in": "header",
    "required": True,
    "schema": {"type": "string", "enum": [str(p.PROTOCOL_VERSION)]},
}
_STORED = {"type": "object", "properties": {"stored": {"type": "boolean"}, "duplicate": {"type": "boolean"}}}
_COUNTS = {"type": "object", "properties": {"stored": {"type": "integer"}, "duplicates": {"type": "integer"}}}
_IMAGE_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}} for media in p.IMAGE_MEDIA_TYPES.values()
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Invigil agent API",
            "version": f"{p.PROTOCOL_VERSION}",
            "description": "What a student agent and the network policy send to the hall server. "
            "Every write is idempotent on the sender's id; a 2xx answer means durable.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer"},
                "service": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "Enrolment": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["student_number", "join_code", "agent_id", "agent_time"],
                    "properties": {
                        "student_number": {"type": "string", "maxLength": 32},
                        "join_code": {"type": "string", "maxLength": 32},
                        "agent_id": _ID,
                        "agent_time": _TIME,
                        "agent_version": {"type": "string", "maxLength": 32},
                        "os": {"type": "string", "maxLength": 64},
                    },
                },
                "Heartbeat": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["agent_time"],
                    "properties": {
                        "agent_time": _TIME,
                        "backlog": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                        "state": {"type": "string", "enum": ["capturing", "paused", "degraded", "leaving"]},
                    },
                },
                "Unchanged": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["monitor", "agent_time", "since_capture_id"],
                    "properties": {
                        "monitor": {"type": "integer", "minimum": 0, "maximum": p.MAX_MONITORS - 1},
                        "agent_time": _TIME,
                        "since_capture_id": _ID,
                    },
                },
                "DeviceEvents": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["events"],
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": p.MAX_EVENTS_PER_BATCH,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["id", "kind", "agent_time"],
                                "properties": {
                                    "id": _ID,
                                    "kind": {"type": "string", "enum": list(p.DEVICE_EVENT_KINDS)},
                                    "agent_time": _TIME,
                                    "detail": {"type": "object"},
                                },
                            },
                        }
                    },
                },
                "SiteEvents": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["events"],
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": p.MAX_EVENTS_PER_BATCH,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["id", "time", "client_ip", "host", "decision", "source"],
                                "properties": {
                                    "id": _ID,
                                    "time": _TIME,
                                    "client_ip": {"type": "string", "maxLength": 64},
                                    "host": {"type": "string", "maxLength": 253},
                                    "url": {"type": "string", "maxLength": 2048},
                                    "decision": {"type": "string", "enum": list(p.SITE_DECISIONS)},
                                    "source": {"type": "string", "enum": list(p.SITE_SOURCES)},
                                    "reason": {"type": "string", "maxLength": 200},
                                },
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            f"{p.API_PREFIX}/health": {
                "get": {
                    "summary": "Liveness and the server-health value (0-10)",
                    "operationId": "health",
                    "responses": _ok({"type": "object", "required": ["status", "health"]}),
                }
            },
            f"{p.API_PREFIX}/enrol": {
                "post": {
                    "summary": "Student number + join code -> a session token for this one session",
                    "operationId": "enrol",
                    "parameters": [_PROTOCOL_PARAM],
                    "requestBody": _json_body("#/components/schemas/Enrolment"),
                    "responses": {
                        **_ok(
                            {
                                "type": "object",
                                "required": ["session_token", "exam", "spool_key"],
                                "properties": {
                                    "spool_key": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9_-]{43}$",
                                        "description": "32-byte AES-256-GCM key for the agent's spool, "
                                        "unpadded URL-safe base64; the same for every session of this "
                                        "student in this exam",
                                    }
                                },
                            },
                            "201",
                            "enrolled",
                        ),
                        **_ERRORS,
                    },
                }
            },
            f"{p.API_PREFIX}/heartbeat": {
                "post": {
                    "summary": "I am alive; answers server health and pending instructions",
                    "operationId": "heartbeat",
                    "security": [{"session": []}],
                    "parameters": [_PROTOCOL_PARAM],
                    "requestBody": _json_body("#/components/schemas/Heartbeat"),
                    "responses": {
                        **_ok({"type": "object", "required": ["health", "instructions"]}),
                        **_ERRORS,
                    },
                }
            },
            f"{p.API_PREFIX}/captures/{{capture_id}}": {
                "put": {
                    "summary": "Upload one changed screen image (raw body); idempotent on capture_id",
                    "operationId": "putCapture",
                    "security": [{"session": []}],
                    "parameters": [
                        {"name": "capture_id", "in": "path", "required": True, "schema": _ID},
                        _PROTOCOL_PARAM,
                        {
                            "name": p.META_HEADER,
                            "in": "header",
                            "required": True,
                            "description": "JSON: monitor, agent_time, sha256, width, height, trigger, "
                            "focused_app, window_title; a tile update adds base, tile, tiles (docs/api.md)",
                            "schema": {"type": "string", "maxLength": 4096},
                        },
                    ],
                    "requestBody": _IMAGE_BODY,
                    "responses": {
                        **_ok(_STORED, "201", "stored"),
                        **_ok(_STORED, "200", "already stored"),
                        **_ERRORS,
                        "409": _error(
                            "id_reused (same id, other content); unknown_base (send the whole screen)"
                        ),
                        "422": _error(
                            "sha256_mismatch, dimension_mismatch, bad_image (also: more pixels than "
                            "capture_max_pixels), bad_tiles, chain_too_long; unknown_screen_size (a whole "
                            "screen of no size the agent's monitors event reported); update_not_gray, "
                            "base_not_gray (an update, and the screen its chain starts from, are gray PNGs "
                            "of at most 8 bits)"
                        ),
                    },
                }
            },
            f"{p.API_PREFIX}/captures/{{capture_id}}/thumbnail": {
                "put": {
                    "summary": "Attach the dashboard preview of a stored capture (written once)",
                    "operationId": "putThumbnail",
                    "security": [{"session": []}],
                    "parameters": [
                        {"name": "capture_id", "in": "path", "required": True, "schema": _ID},
                        _PROTOCOL_PARAM,
                    ],
                    "requestBody": _IMAGE_BODY,
                    "responses": {
                        **_ok(_STORED, "201", "stored"),
                        **_ok(_STORED, "200", "the same thumbnail again"),
                        **_ERRORS,
                        "409": _error("thumbnail_exists: a thumbnail is written once; the first one stays"),
                    },
                }
            },
            f"{p.API_PREFIX}/unchanged/{{record_id}}": {
                "put": {
                    "summary": "The screen still shows capture since_capture_id (no image bytes)",
                    "operationId": "putUnchanged",
                    "security": [{"session": []}],
                    "parameters": [
                        {"name": "record_id", "in": "path", "required": True, "schema": _ID},
                        _PROTOCOL_PARAM,
                    ],
                    "requestBody": _json_body("#/components/schemas/Unchanged"),
                    "responses": {
                        **_ok(_STORED, "201", "stored"),
                        **_ok(_STORED, "200", "already stored"),
                        **_ERRORS,
                    },
                }
            },
            f"{p.API_PREFIX}/device-events": {
                "post": {
                    "summary": "A batch of device events (monitors, interfaces, process categories, help)",
                    "operationId": "postDeviceEvents",
                    "security": [{"session": []}],
                    "parameters": [_PROTOCOL_PARAM],
                    "requestBody": _json_body("#/components/schemas/DeviceEvents"),
                    "responses": {**_ok(_COUNTS), **_ERRORS},
                }
            },
            f"{p.API_PREFIX}/site-events": {
                "post": {
                    "summary": "Site decisions from the proxy and sentinel (service token)",
                    "operationId": "postSiteEvents",
                    "security": [{"service": []}],
                    "parameters": [_PROTOCOL_PARAM],
                    "requestBody": _json_body("#/components/schemas/SiteEvents"),
                    "responses": {**_ok(_COUNTS), **_ERRORS},
                }
            },
        },
    }
