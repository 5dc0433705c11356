"""The agent's HTTPS client for the hall server's API v1 (stdlib only: it runs on students' laptops).

One kept-alive connection; every call either returns the server's JSON, raises :class:`Refused` (a 4xx:
the server read the request and said no — resending the same bytes will not help), or raises
:class:`Unreachable` (network trouble or a 5xx: keep the data and try again later).
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

from invigil import protocol as p
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat, Unchanged


class Refused(Exception):
    """The hall server refused the request (HTTP 4xx); ``code`` and ``message`` come from its JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(Exception):
    """The hall server could not be reached or failed (HTTP 5xx); the caller keeps the data and retries.
    ``retry_after_s`` is the server's ``Retry-After`` (a busy server's 503), else None."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


#: The longest Retry-After the agent honours (a wrong header must not park it for hours).
MAX_RETRY_AFTER_S = 120.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form (pure); None when absent or bad."""
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_AFTER_S) if seconds >= 0 else None


def tls_context(ca_file: str | None, insecure_dev: bool = False) -> ssl.SSLContext:
    """Trust only the hall CA from the agent bundle; ``insecure_dev`` is for a developer's laptop only."""
    if insecure_dev:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if not ca_file:
        raise ValueError("no hall CA: start the agent with the bundle from the hall (--bundle FILE)")
    return ssl.create_default_context(cafile=ca_file)


class HallClient:
    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        insecure_dev: bool = False,
        timeout_s: float = 30.0,
        source_address: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a hall server URL: {base_url!r}")
        self.base_url = base_url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.timeout_s = timeout_s
        # Several agents on one machine (labs, the demo) each send from their own loopback address, so the
        # network policy can tell them apart by client address as it does laptops in a hall.
        self.source_address = (source_address, 0) if source_address else None
        self.context = tls_context(ca_file, insecure_dev) if self.https else None
        self.token: str | None = None
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host,
                    self.port,
                    timeout=self.timeout_s,
                    context=self.context,
                    source_address=self.source_address,
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout_s, source_address=self.source_address
                )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; returns (status, JSON) for 2xx, raises Refused / Unreachable otherwise."""
        all_headers = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION), **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn = self._connection()
            conn.request(method, p.API_PREFIX + path, body=body, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(f"cannot reach the hall server at {self.base_url}: {exc}") from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        if 200 <= response.status < 300:
            return response.status, answer
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        if 400 <= response.status < 500:
            raise Refused(response.status, str(error.get("code", "refused")), str(error.get("message", "")))
        raise Unreachable(
            f"the hall server answered {response.status}: {error.get('message', '')}",
            retry_after(response.getheader("Retry-After")) if response.status == 503 else None,
        )

    def _json(self, method: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request(method, path, json.dumps(payload).encode(), {"Content-Type": "application/json"})[
            1
        ]

    def enrol(self, enrolment: Enrolment) -> dict[str, Any]:
        answer = self._json("POST", "/enrol", enrolment.as_wire())
        self.token = answer["session_token"]
        return answer

    def heartbeat(self, beat: Heartbeat) -> dict[str, Any]:
        return self._json("POST", "/heartbeat", beat.as_wire())

    def put_capture(self, capture_id: str, meta: CaptureMeta, body: bytes, media_type: str) -> bool:
        """Upload one changed image; True if the server stored it now, False if it already had it."""
        status, _ = self.request(
            "PUT",
            f"/captures/{quote(capture_id, safe='')}",
            body,
            {"Content-Type": media_type, p.META_HEADER: meta.as_header()},
        )
        return status == 201

    def put_thumbnail(self, capture_id: str, body: bytes, media_type: str) -> bool:
        status, _ = self.request(
            "PUT", f"/captures/{quote(capture_id, safe='')}/thumbnail", body, {"Content-Type": media_type}
        )
        return status == 201

    def put_unchanged(self, record_id: str, record: Unchanged) -> bool:
        status, _ = self.request(
            "PUT",
            f"/unchanged/{quote(record_id, safe='')}",
            json.dumps(record.as_wire()).encode(),
            {"Content-Type": "application/json"},
        )
        return status == 201

    def post_device_events(self, events: list[DeviceEvent]) -> dict[str, Any]:
        return self._json("POST", "/device-events", {"events": [event.as_wire() for event in events]})
