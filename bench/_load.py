"""Helpers of ``bench/ingest.py``: realistic screenshot bodies, a cheap asyncio HTTP/1.1 client, the paced
and saturation load phases, and a psutil sampler of the server's process tree.

The client is deliberately thin (one ``asyncio.Protocol`` per simulated agent, requests assembled from
pre-built bytes, no HTTP library) so that on a 2-core machine it takes as little CPU from the server as
possible; every phase reports the client's own CPU so that can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import resource
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

API = "/api/v1"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
REQUEST_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class Screen:
    """One encoded screen, split so each upload can get distinct bytes for the cost of a tiny chunk."""

    prefix: bytes  # the PNG up to (not including) IEND
    iend: bytes
    prefix_hash: Any  # hashlib object over ``prefix``; copied per upload
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.iend)

    def variant(self, counter: int) -> tuple[bytes, str, int]:
        """(tail, sha256, length) of this screen with a tEXt chunk holding ``counter`` before IEND.

        The body is ``prefix + tail``: a valid PNG whose bytes (and so whose content address on the
        server) differ per upload, hashed incrementally so a 150 KB body costs one small update."""
        data = b"invigil-bench\x00" + str(counter).encode()
        chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
        tail = chunk + self.iend
        digest = self.prefix_hash.copy()
        digest.update(tail)
        return tail, digest.hexdigest(), len(self.prefix) + len(tail)


def _render(width: int, height: int, seed: int) -> tuple[Any, list[tuple[int, int]]]:
    """A screen full of anti-aliased text lines (an exam page or editor) and the row band of each line."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    rnd = random.Random(seed)
    font = ImageFont.truetype(str(FONT), 15) if FONT.exists() else ImageFont.load_default(15)
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, width, 40), fill=(222, 225, 230))  # browser chrome
    letters = "abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJKLMNOP0123456789.,;:()=+-"
    bands = []
    for y in range(60, height - 30, 20):
        line = "".join(rnd.choice(letters) for _ in range(rnd.randint(20, int(width / 8.5))))
        shade = rnd.randint(0, 90)
        draw.text((20, y), line, font=font, fill=(shade, shade, shade))
        bands.append((y, y + 20))
    return np.asarray(page, dtype=np.uint8).copy(), bands


def make_screens(count: int, lo_kb: float = 32, hi_kb: float = 148, seed: int = 7) -> list[Screen]:
    """``count`` screens whose PNG sizes spread over lo_kb..hi_kb, encoded by the real agent encoder
    (``agent.encode.encode_screen``: 4-bit grayscale PNG). Each is a page of text with a share of its lines
    blanked; that share is found by bisection on the encoded size."""
    from agent.encode import encode_screen

    pages = {size: _render(*size, seed) for size in ((1920, 1080), (2560, 1440))}
    screens = []
    for index in range(count):
        target = (lo_kb + (hi_kb - lo_kb) * index / max(1, count - 1)) * 1024
        full, bands = pages[(1920, 1080) if target <= 100 * 1024 else (2560, 1440)]
        order = random.Random(seed + index).sample(range(len(bands)), len(bands))
        lo, hi = 0.0, 1.0
        best = None
        for _ in range(6):
            fill = (lo + hi) / 2
            page = full.copy()
            for band in order[round(fill * len(bands)) :]:
                page[bands[band][0] : bands[band][1]] = 255
            encoded = encode_screen(page)
            if best is None or abs(len(encoded.data) - target) < abs(len(best.data) - target):
                best = encoded
            if len(encoded.data) < target:
                lo = fill
            else:
                hi = fill
        assert best is not None and best.data.endswith(b"\x00\x00\x00\x00IEND\xaeB`\x82")
        prefix = best.data[:-12]
        screens.append(Screen(prefix, best.data[-12:], hashlib.sha256(prefix), best.width, best.height))
    return screens


# --------------------------------------------------------------------------------------------- client


class HttpConn(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection; one request at a time; responses need Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.header_end = -1
        self.length = 0
        self.status = 0
        self.will_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.fut is None or self.fut.done():
            return
        if self.header_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ", 2)[1])
            self.length, self.will_close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    self.will_close = True
                elif name == "transfer-encoding":
                    self.fut.set_exception(ConnectionError("chunked responses are not supported"))
                    return
            self.header_end = end + 4
        if len(self.buf) >= self.header_end + self.length:
            body = bytes(self.buf[self.header_end : self.header_end + self.length])
            del self.buf[: self.header_end + self.length]
            self.header_end = -1
            self.fut.set_result((self.status, body))
            if self.will_close and self.transport is not None:
                self.transport.close()
                self.closed = True

    def _expire(self) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(TimeoutError(f"no answer in {REQUEST_TIMEOUT_S} s"))
            if self.transport is not None:
                self.transport.abort()

    async def request(self, parts: list[bytes]) -> tuple[int, bytes]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.fut = loop.create_future()
        self.buf.clear()
        self.header_end = -1
        self.transport.writelines(parts)
        timer = loop.call_later(REQUEST_TIMEOUT_S, self._expire)
        try:
            return await self.fut
        finally:
            timer.cancel()
            self.fut = None


def _now_wire() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """A simulated agent: its roster number, session token and one kept-alive connection."""

    def __init__(self, index: int, host: str, port: int, student: str, join_code: str) -> None:
        self.index = index
        self.host, self.port = host, port
        self.student = student
        self.join_code = join_code
        self.token = ""
        self.conn: HttpConn | None = None
        self.seq = 0
        self.last_capture = f"none{index:08d}"

    async def connect(self) -> HttpConn:
        if self.conn is None or self.conn.closed:
            loop = asyncio.get_running_loop()
            _, self.conn = await loop.create_connection(HttpConn, self.host, self.port)
        return self.conn

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None

    def _head(self, method: str, path: str, length: int, extra: str) -> bytes:
        return (
            f"{method} {API}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-Invigil-Protocol: 1\r\n"
            f"{extra}Content-Length: {length}\r\n\r\n"
        ).encode("latin-1")

    async def send(self, parts: list[bytes]) -> tuple[int, bytes]:
        conn = await self.connect()
        return await conn.request(parts)

    async def enrol(self) -> None:
        body = json.dumps(
            {
                "student_number": self.student,
                "join_code": self.join_code,
                "agent_id": f"benchagent{self.index:06d}",
                "agent_time": _now_wire(),
                "agent_version": "bench",
                "os": "linux",
            }
        ).encode()
        head = self._head("POST", "/enrol", len(body), "Content-Type: application/json\r\n")
        status, answer = await self.send([head, body])
        if status != 201:
            raise RuntimeError(f"enrol of {self.student} answered {status}: {answer[:300]!r}")
        self.token = json.loads(answer)["session_token"]

    def capture_request(
        self, screen: Screen, counter: int, tag: str, trigger: str = "interval"
    ) -> list[bytes]:
        self.seq += 1
        capture_id = f"{tag}{self.index:05d}-{self.seq:08d}"
        self.last_capture = capture_id
        tail, sha, length = screen.variant(counter)
        meta = (
            f'{{"monitor":0,"agent_time":"{_now_wire()}","sha256":"{sha}","width":{screen.width},'
            f'"height":{screen.height},"trigger":"{trigger}"}}'
        )
        head = self._head(
            "PUT",
            f"/captures/{capture_id}",
            length,
            f"Authorization: Bearer {self.token}\r\nContent-Type: image/png\r\nX-Invigil-Meta: {meta}\r\n",
        )
        return [head, screen.prefix, tail]

    def unchanged_request(self, tag: str) -> list[bytes]:
        self.seq += 1
        record_id = f"{tag}{self.index:05d}-{self.seq:08d}"
        body = (
            f'{{"monitor":0,"agent_time":"{_now_wire()}","since_capture_id":"{self.last_capture}"}}'
        ).encode()
        head = self._head(
            "PUT",
            f"/unchanged/{record_id}",
            len(body),
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n",
        )
        return [head, body]


async def enrol_all(agents: list[Agent], concurrency: int = 64, budget_s: float = 120.0) -> float:
    """Enrol every agent (each gets its own session token); returns the seconds it took."""
    started = time.perf_counter()
    queue = list(reversed(agents))

    async def worker() -> None:
        while queue:
            await queue.pop().enrol()

    async with asyncio.timeout(budget_s):
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(agents)))))
    return time.perf_counter() - started


async def connect_all(agents: list[Agent], concurrency: int = 128) -> None:
    queue = list(agents)

    async def worker() -> None:
        while queue:
            await queue.pop().connect()

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(agents)))))


# --------------------------------------------------------------------------------------------- sampling


class TreeSampler:
    """Samples CPU time and RSS of a process and all its descendants (gunicorn master + workers)."""

    def __init__(self, pid: int | None) -> None:
        self.root = psutil.Process(pid) if pid else None
        self.procs: dict[int, psutil.Process] = {}
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.mark_cpu: dict[int, float] = {}
        self.mark_time = time.perf_counter()
        self.mark_client = self._client_cpu()
        self.task: asyncio.Task[None] | None = None

    @staticmethod
    def _client_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def sample(self) -> None:
        if self.root is None:
            return
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for proc in procs:
            cached = self.procs.setdefault(proc.pid, proc)
            try:
                times = cached.cpu_times()
                rss += cached.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            self.cpu[proc.pid] = times.user + times.system
        self.peak_rss = max(self.peak_rss, rss)

    async def _run(self, period_s: float) -> None:
        while True:
            self.sample()
            await asyncio.sleep(period_s)

    def start(self, period_s: float = 0.25) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(period_s))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def mark(self) -> None:
        """Start a measurement window: CPU deltas and the RSS peak are counted from here."""
        self.sample()
        self.mark_cpu = dict(self.cpu)
        self.mark_time = time.perf_counter()
        self.mark_client = self._client_cpu()
        rss_now = self.peak_rss
        self.peak_rss = 0
        self.sample()
        if not self.peak_rss:
            self.peak_rss = rss_now

    def read(self) -> dict[str, float]:
        """Since :meth:`mark`: server CPU and client CPU in % of one core, server tree peak RSS in MiB."""
        self.sample()
        wall = max(1e-9, time.perf_counter() - self.mark_time)
        server = sum(cpu - self.mark_cpu.get(pid, 0.0) for pid, cpu in self.cpu.items())
        return {
            "server_cpu_pct": 100 * server / wall,
            "client_cpu_pct": 100 * (self._client_cpu() - self.mark_client) / wall,
            "server_peak_rss_mib": self.peak_rss / 2**20,
        }


# --------------------------------------------------------------------------------------------- phases


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unsent: int = 0  # records due in the window but still queued on the agent when the phase ended

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        return {
            "ok": len(lat),
            "per_s": len(lat) / seconds if seconds > 0 else 0.0,
            "images_per_s": self.kinds["capture"] / seconds if seconds > 0 else 0.0,
            "p50_ms": 1000 * percentile(lat, 50),
            "p99_ms": 1000 * percentile(lat, 99),
            "max_ms": 1000 * (lat[-1] if lat else float("nan")),
            "send_lag_p99_ms": 1000 * percentile(lags, 99),
            "errors": sum(self.errors.values()),
            "unsent": self.unsent,
            "error_kinds": dict(self.errors.most_common(5)),
            "kinds": dict(self.kinds),
        }


def _error_name(status: int, body: bytes) -> str:
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


async def paced(
    agents: list[Agent],
    screens: list[Screen],
    *,
    interval_s: float,
    duration_s: float,
    unchanged_ratio: float,
    sampler: TreeSampler,
    seed: int = 1,
) -> dict[str, Any]:
    """Every agent sends one record per ``interval_s`` at its own phase: first a capture, then a capture or
    (with probability ``unchanged_ratio``) an unchanged record. Latency runs from the scheduled time, so a
    late client or a backlog counts against the server (no coordinated omission). Statistics cover ticks
    from ``interval_s`` (all agents running) to ``duration_s``."""
    loop = asyncio.get_running_loop()
    rnd = random.Random(seed)
    t0 = loop.time() + 0.2
    window_start, end = t0 + interval_s, t0 + duration_s
    tally = Tally()
    counter = iter(range(10**9))
    marked = asyncio.Event()

    async def agent_loop(agent: Agent, phase: float, choices: random.Random) -> None:
        tick = t0 + phase
        first = True
        while tick < end:
            delay = tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif loop.time() >= end:  # the phase is over with records still due: a backlog
                while tick < end:
                    if tick >= window_start:
                        tally.unsent += 1
                    tick += interval_s
                break
            if first:
                parts, kind = (
                    agent.capture_request(screens[agent.index % len(screens)], next(counter), "p", "start"),
                    "capture",
                )
            elif choices.random() < unchanged_ratio:
                parts, kind = agent.unchanged_request("p"), "unchanged"
            else:
                screen = screens[choices.randrange(len(screens))]
                parts, kind = agent.capture_request(screen, next(counter), "p"), "capture"
            first = False
            sent = loop.time()
            try:
                status, body = await agent.send(parts)
                error = None if status in (200, 201) else _error_name(status, body)
            except (OSError, TimeoutError) as exc:
                error = type(exc).__name__
            done = loop.time()
            if tick >= window_start:
                if error is None:
                    tally.latencies.append(done - tick)
                    tally.lags.append(sent - tick)
                    tally.kinds[kind] += 1
                else:
                    tally.errors[error] += 1
            elif error is not None:
                tally.errors[error] += 1  # errors during ramp-up count too
            tick += interval_s

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        sampler.mark()
        marked.set()

    marker = loop.create_task(mark_window())
    tasks = [
        agent_loop(agent, rnd.uniform(0, interval_s), random.Random(seed * 100_003 + agent.index))
        for agent in agents
    ]
    running = [loop.create_task(task) for task in tasks]
    _, pending = await asyncio.wait(running, timeout=duration_s + REQUEST_TIMEOUT_S + 10)
    for task in pending:  # cannot happen while every request has its own timeout; bounded anyway
        task.cancel()
        tally.errors["phase timeout"] += 1
    await marker
    window = end - window_start
    result = tally.summary(window)
    result.update(sampler.read())
    result["agents"] = len(agents)
    return result


async def closed_loop_step(
    agents: list[Agent],
    screens: list[Screen],
    counter: Callable[[], int],
    *,
    step_s: float,
    warmup_s: float,
    sampler: TreeSampler,
    tag: str,
) -> dict[str, Any]:
    """``len(agents)`` uploaders, each sending captures back to back for ``step_s``. Counted: requests
    started after ``warmup_s``; throughput is their count over the rest of the step."""
    loop = asyncio.get_running_loop()
    await connect_all(agents)
    start = loop.time()
    window_start, end = start + warmup_s, start + step_s
    tally = Tally()

    async def uploader(agent: Agent, choices: random.Random) -> None:
        while loop.time() < end:
            parts = agent.capture_request(screens[choices.randrange(len(screens))], counter(), tag)
            sent = loop.time()
            try:
                status, body = await agent.send(parts)
                error = None if status in (200, 201) else _error_name(status, body)
            except (OSError, TimeoutError) as exc:
                error = type(exc).__name__
            if sent >= window_start:
                if error is None:
                    tally.latencies.append(loop.time() - sent)
                    tally.kinds["capture"] += 1
                else:
                    tally.errors[error] += 1

    async def mark_window() -> None:
        await asyncio.sleep(warmup_s)
        sampler.mark()

    marker = loop.create_task(mark_window())
    async with asyncio.timeout(step_s + REQUEST_TIMEOUT_S + 10):
        await asyncio.gather(*(uploader(agent, random.Random(agent.index)) for agent in agents))
        await marker
    usage = sampler.read()  # read before the drain phase dilutes it
    seconds = max(1e-9, loop.time() - window_start)
    result = tally.summary(seconds)
    result.update(usage)
    result["concurrency"] = len(agents)
    return result


async def saturation(
    agents: list[Agent],
    screens: list[Screen],
    *,
    start: int,
    growth: float,
    limit: int,
    step_s: float,
    warmup_s: float,
    p99_ms: float,
    budget_s: float,
    sampler: TreeSampler,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Raise the number of back-to-back uploaders step by step until p99 > ``p99_ms`` or an error; the
    best step is the highest captures/s among the steps that held."""
    started = time.perf_counter()
    steps: list[dict[str, Any]] = []
    counts = iter(range(10**9))
    concurrency = start
    stop_reason = f"reached --max-concurrency {limit}"
    while True:
        concurrency = min(concurrency, limit, len(agents))
        step = await closed_loop_step(
            agents[:concurrency],
            screens,
            lambda: next(counts),
            step_s=step_s,
            warmup_s=warmup_s,
            sampler=sampler,
            tag=f"s{len(steps):02d}x",
        )
        step["held"] = step["errors"] == 0 and step["p99_ms"] <= p99_ms
        steps.append(step)
        log(
            f"    c={concurrency:4d}  {step['per_s']:7.1f} captures/s  p50 {step['p50_ms']:6.1f} ms  "
            f"p99 {step['p99_ms']:7.1f} ms  errors {step['errors']}  "
            f"server cpu {step['server_cpu_pct']:4.0f}%  "
            f"client cpu {step['client_cpu_pct']:4.0f}%" + ("" if step["held"] else "  <- over the limit")
        )
        if not step["held"]:
            stop_reason = f"p99 > {p99_ms:g} ms" if step["errors"] == 0 else f"{step['errors']} errors"
            break
        if concurrency >= min(limit, len(agents)):
            break
        if time.perf_counter() - started > budget_s:
            stop_reason = f"time budget {budget_s:g} s used"
            break
        concurrency = max(concurrency + 1, round(concurrency * growth))
    held = [step for step in steps if step["held"]]
    best = max(held, key=lambda step: step["per_s"]) if held else None
    return {"steps": steps, "best": best, "stop_reason": stop_reason}
