"""Proxy benchmark: requests/s and added latency per new connection through mitmdump with the Invigil addon
(TLS passthrough and intercepted, plain HTTP) against direct connections and Squid, in one run, on loopback.

    .venv/bin/python bench/proxy.py            # needs .venv-proxy (scripts/setup-proxy-venv.sh) and squid

Every request opens a new connection (the expensive case: CONNECT, policy decision, TLS). Origins are
local Python servers; a small in-process sink stands in for the hall server's site-event endpoint, so
the proxy does all its real work (decide, log, batch, POST). Loops are bounded by count and time.
Client, origins and proxy share this machine's cores: figures are for comparison, not absolute capacity.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from provisioning.certs import make_ca, make_server_cert

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BODY = b"x" * 2048  # a small exam-app answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_POST(self) -> None:  # noqa: N802 - the site-event sink
        length = int(self.headers.get("Content-Length", "0"))
        events = json.loads(self.rfile.read(length))["events"]
        self.server.events += len(events)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    context: ssl.SSLContext | None = None
    events = 0

    def get_request(self):
        sock, address = super().get_request()
        if self.context:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, address


def start_server(context: ssl.SSLContext | None = None) -> Server:
    server = Server(("127.0.0.1", 0), Origin)
    server.context = context
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


Fetch = Callable[[], None]


def fetcher(
    kind: str, origin_port: int, proxy_port: int | list[int] | None, client_ctx: ssl.SSLContext | None
) -> Fetch:
    """One GET on a new connection: direct or through an explicit proxy, http or https. A list of proxy
    ports takes them in turn, as the gateway's nft ``numgen`` rule spreads connections over workers."""
    turn = itertools.count()

    def fetch() -> None:
        proxy_port = ports[next(turn) % len(ports)] if ports else None
        if kind == "https":
            if proxy_port:
                conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=client_ctx, timeout=10)
                conn.set_tunnel("localhost", origin_port)
            else:
                conn = http.client.HTTPSConnection("localhost", origin_port, context=client_ctx, timeout=10)
            path = "/exam/q1"
        elif proxy_port:
            conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
            path = f"http://localhost:{origin_port}/exam/q1"
        else:
            conn = http.client.HTTPConnection("localhost", origin_port, timeout=10)
            path = "/exam/q1"
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            answer = conn.getresponse()
            if answer.read() != BODY or answer.status != 200:
                raise RuntimeError(f"unexpected answer {answer.status}")
        finally:
            conn.close()

    ports = proxy_port if isinstance(proxy_port, list) else [proxy_port] if proxy_port else []
    return fetch


def measure(fetch: Fetch, latency_n: int, concurrency: int, duration_s: float) -> dict[str, float]:
    for _ in range(5):
        fetch()  # warm up
    samples = []
    for _ in range(latency_n):
        started = time.perf_counter()
        fetch()
        samples.append((time.perf_counter() - started) * 1000)
    done = [0] * concurrency
    errors = [0] * concurrency
    deadline = time.monotonic() + duration_s

    def worker(index: int) -> None:
        while time.monotonic() < deadline:
            try:
                fetch()
                done[index] += 1
            except OSError:
                errors[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": sorted(samples)[int(len(samples) * 0.95) - 1],
        "rps": sum(done) / elapsed,
        "errors": sum(errors),
    }


def start_mitmdump(folder: Path, policy: Path, sink_port: int, origin_ca: Path, intercept: bool) -> tuple:
    port = free_port()
    log = open(folder / f"mitmdump-{port}.log", "wb")  # noqa: SIM115 - lives as long as the process
    args = [str(BIN / "invigil-proxy"), "--policy", str(policy), "--listen-port", str(port)]
    args += ["--server-url", f"http://127.0.0.1:{sink_port}", "--exam-title", "Bench"]
    if intercept:
        args.append("--intercept")
    args += [
        "--",
        "--set",
        f"confdir={folder / 'conf'}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={origin_ca}",
    ]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(port)
    return port, process


def start_squid(folder: Path, http_port: int, https_port: int) -> tuple[int, subprocess.Popen[bytes]] | None:
    squid = shutil.which("squid") or ("/usr/sbin/squid" if os.path.exists("/usr/sbin/squid") else None)
    if not squid:
        print("squid not installed (Debian: apt-get install -y squid): Squid rows skipped")
        return None
    port = free_port()
    config = folder / "squid.conf"
    config.write_text(
        f"""http_port 127.0.0.1:{port}
pid_filename {folder}/squid.pid
cache deny all
cache_mem 8 MB
access_log none
cache_log {folder}/squid-cache.log
cache_store_log none
coredump_dir {folder}
shutdown_lifetime 1 seconds
acl allowed dstdomain localhost .uni.example exam.example.nl
acl SSL_ports port {https_port} 443
acl Safe_ports port {http_port} {https_port} 80 443
acl CONNECT method CONNECT
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow allowed
http_access deny all
"""
    )
    process = subprocess.Popen(
        [squid, "-N", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_port(port)
    return port, process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-n", type=int, default=200, help="sequential requests for latency")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=4.0, help="throughput phase per row")
    parser.add_argument(
        "--workers", type=int, default=2, help="passthrough mitmdump processes for the multi-worker row"
    )
    parser.add_argument("--laptops", type=int, default=1000)
    parser.add_argument("--per-laptop-s", type=float, default=10.0, help="one request per laptop per this")
    options = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="invigil-bench-proxy-"))
    ca = make_ca("bench")
    issued = make_server_cert(ca, ["localhost", "127.0.0.1"])
    (folder / "ca.pem").write_bytes(ca.cert_pem)
    (folder / "cert.pem").write_bytes(issued.cert_pem)
    (folder / "key.pem").write_bytes(issued.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    https_origin, http_origin, sink = start_server(server_ctx), start_server(), start_server()
    policy = folder / "exam.policy"
    policy.write_text("allow localhost\nallow exam.example.nl\nallow *.uni.example\nblock *.chatgpt.com\n")

    origin_trust = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    https_port, http_port = https_origin.server_address[1], http_origin.server_address[1]
    passthrough_port, passthrough = start_mitmdump(
        folder, policy, sink.server_address[1], folder / "ca.pem", False
    )
    intercept_port, intercepting = start_mitmdump(
        folder, policy, sink.server_address[1], folder / "ca.pem", True
    )
    workers = [
        start_mitmdump(folder, policy, sink.server_address[1], folder / "ca.pem", False)
        for _ in range(max(0, options.workers - 1))
    ]
    worker_ports = [passthrough_port] + [port for port, _ in workers]
    mitm_trust = ssl.create_default_context(cafile=str(folder / "conf" / "mitmproxy-ca-cert.pem"))
    squid = start_squid(folder, http_port, https_port)
    processes = [passthrough, intercepting, *(process for _, process in workers)]
    processes += [squid[1]] if squid else []
    rows: dict[str, dict[str, float]] = {}
    try:
        plan: list[tuple[str, Fetch, subprocess.Popen[bytes] | list[subprocess.Popen[bytes]] | None]] = [
            ("https direct", fetcher("https", https_port, None, origin_trust), None),
            (
                "https mitmdump passthrough",
                fetcher("https", https_port, passthrough_port, origin_trust),
                passthrough,
            ),
            (
                f"https mitmdump passthrough x{len(worker_ports)}",
                fetcher("https", https_port, worker_ports, origin_trust),
                [passthrough, *(process for _, process in workers)],
            ),
            (
                "https mitmdump intercepted",
                fetcher("https", https_port, intercept_port, mitm_trust),
                intercepting,
            ),
            ("http direct", fetcher("http", http_port, None, None), None),
            ("http mitmdump", fetcher("http", http_port, passthrough_port, None), passthrough),
        ]
        if squid:
            plan.insert(
                3, ("https squid CONNECT", fetcher("https", https_port, squid[0], origin_trust), squid[1])
            )
            plan.append(("http squid", fetcher("http", http_port, squid[0], None), squid[1]))
        for name, fetch, process in plan:
            group = process if isinstance(process, list) else [process] if process else []
            watched = [psutil.Process(member.pid) for member in group]
            cpu_before = sum(sum(w.cpu_times()[:2]) for w in watched)
            started, machine_before = time.monotonic(), psutil.cpu_times()
            row = measure(fetch, options.latency_n, options.concurrency, options.duration_s)
            machine_after = psutil.cpu_times()
            row["machine_idle_pct"] = (
                100
                * (machine_after.idle - machine_before.idle)
                / max(1e-9, sum(machine_after) - sum(machine_before))
            )
            if watched:
                cpu = sum(sum(w.cpu_times()[:2]) for w in watched) - cpu_before
                row["proxy_cpu_pct"] = 100 * cpu / (time.monotonic() - started)
                row["proxy_rss_mb"] = sum(w.memory_info().rss for w in watched) / 2**20
            rows[name] = row
    finally:
        for process in processes:
            stop(process)

    print(
        f"\nProxy benchmark ({os.cpu_count()} CPUs; client, origins and proxy on one machine; new connection"
    )
    print(
        f"per request; latency over {options.latency_n} sequential requests, throughput with "
        f"{options.concurrency} concurrent clients for {options.duration_s:.0f} s)\n"
    )
    print(
        f"{'path':30} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'proxy CPU%':>10} "
        f"{'RSS MiB':>8} {'errors':>6} {'machine idle %':>14}"
    )
    for name, row in rows.items():
        cpu = f"{row['proxy_cpu_pct']:.0f}" if "proxy_cpu_pct" in row else "-"
        rss = f"{row['proxy_rss_mb']:.0f}" if "proxy_rss_mb" in row else "-"
        print(
            f"{name:30} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['rps']:8.0f} {cpu:>10} {rss:>8} "
            f"{row['errors']:6.0f} {row['machine_idle_pct']:14.0f}"
        )

    def ratio(a: str, b: str, key: str) -> str:
        return f"{rows[a][key] / rows[b][key]:.2f}" if a in rows and b in rows else "n/a"

    print("\nRatios")
    for proto in ("https", "http"):
        direct = f"{proto} direct"
        mitm = f"{proto} mitmdump passthrough" if proto == "https" else "http mitmdump"
        squid_row = "https squid CONNECT" if proto == "https" else "http squid"
        added = rows[mitm]["p50_ms"] - rows[direct]["p50_ms"]
        print(
            f"  {proto}: mitmdump adds {added:.2f} ms per new connection (p50); "
            f"throughput mitmdump/direct {ratio(mitm, direct, 'rps')}, "
            f"mitmdump/squid {ratio(mitm, squid_row, 'rps')}, "
            f"latency mitmdump/squid {ratio(mitm, squid_row, 'p50_ms')}"
        )
    added = rows["https mitmdump intercepted"]["p50_ms"] - rows["https direct"]["p50_ms"]
    print(
        f"  https intercepted: adds {added:.2f} ms (p50); throughput intercepted/passthrough "
        f"{ratio('https mitmdump intercepted', 'https mitmdump passthrough', 'rps')}"
    )

    load = options.laptops / options.per_laptop_s
    print(
        f"\nHall load: {options.laptops} laptops x 1 request / {options.per_laptop_s:.0f} s "
        f"= {load:.0f} req/s, "
        "each on a new connection (worst case)"
    )
    multi = f"https mitmdump passthrough x{len(worker_ports)}"
    for name in ("https mitmdump passthrough", multi, "https mitmdump intercepted", "http mitmdump"):
        print(f"  {name:30} {100 * load / rows[name]['rps']:5.1f} % of measured capacity")
    print(f"\nSite events delivered to the sink: {sink.events}")
    print(
        "machine idle %: the whole machine's idle CPU during the row; near 0 means the proxy was starved of\n"
        "CPU (by the client, the origins or other load), whatever its own CPU % says."
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
