"""Site events from the proxy to the hall server: a bounded queue and a sender thread (stdlib only).

Every decision of the proxy is queued (``SiteEventSender.add``); a daemon thread batches them to
``POST /api/v1/site-events``. While the server is away the events wait in memory, bounded: when the queue is
full the oldest are dropped and counted, and the count is logged. A batch the server refuses (4xx: it will
never accept it) is dropped and logged rather than retried forever; network errors and 5xx answers are
retried with exponential backoff. ``make_site_event`` and ``batches`` are pure.

The hall server accepts site events only with its service token (``<data_dir>/service.token``), from
loopback as from anywhere else: the sender needs it, and the proxy and sentinel refuse to start without it
when they are given a server URL.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from invigil import protocol as p
from invigil.hosts import normalize_host
from invigil.payloads import SiteEvent
from invigil.timeutil import utc_now

log = logging.getLogger(__name__)

SITE_EVENTS_PATH = p.API_PREFIX + "/site-events"
#: Stay well under the server's ``json_max_bytes`` (256 KiB by default).
MAX_BATCH_BYTES = 128 * 1024
MAX_HOST_CHARS = 253
MAX_REASON_CHARS = 200
MAX_URL_CHARS = 2048
#: Stands for a host that is no host name or IP address (RFC 6761 reserves the name); the hall server
#: accepts nothing else in ``host``, and the text that was seen goes into the reason.
INVALID_HOST = "invalid"


def _clean(text: str, limit: int) -> str:
    """Text the server accepts: no NUL, no lone surrogates, at most ``limit`` characters."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def _client_ip(address: str) -> str:
    """The client's address as the server stores session addresses (IPv4-mapped IPv6 as plain IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def make_site_event(
    client_ip: str,
    host: str,
    allowed: bool,
    reason: str,
    url: str | None = None,
    *,
    source: str = "proxy",
    at: datetime | None = None,
) -> SiteEvent:
    """Build one wire-valid site event (fresh uuid4 id, fields trimmed to the contract's limits).

    ``host`` is sent in canonical form; one that is no host name or IP address (an odd TLS server name or
    DNS query) is sent as ``invalid``, with the text seen added to the reason, so the batch is not refused.
    Raises ``ValueError`` if ``client_ip`` is no IP address."""
    try:
        canonical = normalize_host(host)
    except ValueError:
        canonical = INVALID_HOST
        seen = _clean(host, 60)
        reason = f"{reason} (host as seen: {seen!r})" if reason else f"host as seen: {seen!r}"
    return SiteEvent(
        id=uuid.uuid4().hex,
        time=at or utc_now(),
        client_ip=_client_ip(client_ip),
        host=canonical,
        decision="allowed" if allowed else "blocked",
        source=source,
        reason=_clean(reason, MAX_REASON_CHARS),
        url=_clean(url, MAX_URL_CHARS) if url is not None else None,
    )


def batches(events: Iterable[dict[str, Any]], max_events: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split wire events into batches of at most ``max_events`` and about ``max_bytes`` of JSON each."""
    result: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event)) + 2
        if current and (len(current) >= max_events or size + event_size > max_bytes):
            result.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        result.append(current)
    return result


class Refused(Exception):
    """The server answered 4xx: this batch will never be accepted."""


Post = Callable[[list[dict[str, Any]]], None]


class SiteEventSender:
    """Bounded queue of site events plus the thread that posts them. ``start()`` once, ``close()`` at exit.

    ``post`` may be injected (tests of the queueing logic); by default it is an HTTP POST to
    ``server_url`` with the service ``token``, which is then required. Created by the addon's ``configure``
    and the sentinel's command line; closed by the addon's ``done`` hook.
    """

    def __init__(
        self,
        server_url: str,
        *,
        token: str = "",
        ca_file: str = "",
        max_queue: int = 10_000,
        batch_events: int = p.MAX_EVENTS_PER_BATCH,
        flush_interval_s: float = 0.5,
        retry_max_s: float = 10.0,
        timeout_s: float = 5.0,
        post: Post | None = None,
    ) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise ValueError(f"the hall server URL must start with http:// or https://: {server_url!r}")
        if post is None and not token:
            raise ValueError(
                "the hall server accepts site events only with its service token: "
                "pass the file <data_dir>/service.token"
            )
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.batch_events = min(batch_events, p.MAX_EVENTS_PER_BATCH)
        self.flush_interval_s = flush_interval_s
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.post = post or self._http_post
        # Built once: loading the CA bundle takes tens of milliseconds holding the GIL, which stalls
        # mitmproxy's event loop (and so every connection) when done per POST.
        self._tls: ssl.SSLContext | None = None
        if self.server_url.startswith("https://"):
            self._tls = ssl.create_default_context(cafile=ca_file or None)
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_queue)
        self.dropped = 0
        self.sent = 0
        self._dropped_logged = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invigil-site-events", daemon=True)

    def start(self) -> SiteEventSender:
        self._thread.start()
        return self

    def add(self, event: SiteEvent) -> None:
        """Queue one event; never blocks, since it runs in mitmproxy's event loop for every decision."""
        with self._lock:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1  # deque(maxlen) drops the oldest on append
            self.queue.append(event.as_wire())
        if len(self.queue) >= self.batch_events:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self.queue)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after one last attempt to deliver what is queued (bounded by ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            head = list(self.queue)[: self.batch_events]
        return batches(head, self.batch_events, MAX_BATCH_BYTES)[0] if head else []

    def _remove(self, batch: list[dict[str, Any]]) -> None:
        """Remove a delivered batch; events dropped meanwhile by overflow may have shifted the queue."""
        ids = {event["id"] for event in batch}
        with self._lock:
            while self.queue and self.queue[0]["id"] in ids:
                self.queue.popleft()

    def _log_drops(self) -> None:
        if self.dropped != self._dropped_logged:
            log.warning(
                "site-event queue full: dropped %d oldest event(s) so far while the hall server was away",
                self.dropped,
            )
            self._dropped_logged = self.dropped

    def _run(self) -> None:
        backoff = self.flush_interval_s
        while True:
            stopping = self._stop.is_set()
            self._log_drops()
            batch = self._take()
            if not batch:
                if stopping:
                    return
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                continue
            try:
                self.post(batch)
            except Refused as exc:
                log.error("hall server refused %d site event(s), dropping them: %s", len(batch), exc)
                self._remove(batch)
            except OSError as exc:  # URLError, connection refused, timeouts, 5xx (see _http_post)
                if stopping:
                    log.error(
                        "hall server unreachable at exit: %d site event(s) lost: %s", self.pending(), exc
                    )
                    return
                log.warning("hall server unreachable (%s); retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            else:
                self.sent += len(batch)
                self._remove(batch)
            backoff = self.flush_interval_s
            if not stopping and self.pending() < self.batch_events:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()

    def _http_post(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"events": batch}).encode()
        headers = {
            "Content-Type": "application/json",
            p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION),
            "Authorization": f"Bearer {self.token}",
        }
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.server_url + SITE_EVENTS_PATH, body, headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls) as answer:  # noqa: S310
                answer.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace")
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise Refused(f"HTTP {exc.code}: {detail}") from None
            raise OSError(f"HTTP {exc.code}: {detail}") from None


#: What a command that sends site events says when it was given a server but no token.
SERVER_URL_NEEDS_CREDENTIAL = (
    "--service-token-file is required with --server-url: the hall server accepts site events only with "
    "its service token (<data_dir>/service.token)"
)


def read_token(path: str) -> str:
    """The service token from its file. Raises ``OSError``/``ValueError`` (also when no file is named)."""
    if not path:
        raise ValueError("no service token file given (the hall server's <data_dir>/service.token)")
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"service token file {path} is empty")
    return token
