"""Fixtures for the proxy tests: local HTTP and HTTPS origins, a module-wide hall server, and real mitmdump
processes started through ``invigil-proxy`` on free loopback ports. Nothing here reaches beyond loopback."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioning.certs import make_ca, make_server_cert

from support import ExamSetup, LiveServer, free_port, provision_exam

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MITMDUMP = REPO / ".venv-proxy" / "bin" / "mitmdump"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        body = f"origin {self.server.name} {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext | None = None

    def get_request(self):  # the handshake happens in the handler's thread, not the accept loop
        sock, address = super().get_request()
        if self.context is None:
            return sock, address
        self.handshakes += 1
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=True), address


@dataclass
class Origin:
    """A local web server; ``seen`` lists the paths it served, ``handshakes`` counts TLS clients."""

    name: str
    port: int
    server: _TLSServer
    cert_pem: bytes = b""
    ca_file: Path | None = None

    @property
    def seen(self) -> list[str]:
        return self.server.seen  # type: ignore[attr-defined,no-any-return]


def _start_origin(name: str, context: ssl.SSLContext | None) -> _TLSServer:
    server = _TLSServer(("127.0.0.1", 0), _Handler)
    server.context = context
    server.seen = []  # type: ignore[attr-defined]
    server.name = name  # type: ignore[attr-defined]
    server.handshakes = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def origin_ca(tmp_path_factory: pytest.TempPathFactory):
    ca = make_ca("proxy tests")
    path = tmp_path_factory.mktemp("origin-ca") / "ca.pem"
    path.write_bytes(ca.cert_pem)
    return ca, path


@pytest.fixture(scope="session")
def https_origin(origin_ca, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    ca, ca_file = origin_ca
    issued = make_server_cert(ca, ["localhost", "127.0.0.1"])
    folder = tmp_path_factory.mktemp("origin-tls")
    (folder / "cert.pem").write_bytes(issued.cert_pem)
    (folder / "key.pem").write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = _start_origin("https", context)
    yield Origin("https", server.server_address[1], server, issued.cert_pem, ca_file)
    server.shutdown()


@pytest.fixture(scope="session")
def http_origin() -> Iterator[Origin]:
    server = _start_origin("http", None)
    yield Origin("http", server.server_address[1], server)
    server.shutdown()


@pytest.fixture(scope="session")
def mitmdump_available() -> Path:
    """The proxy's own virtualenv; created here (idempotent, stamp file) when a developer has not yet."""
    if not MITMDUMP.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "setup-proxy-venv.sh")], check=True, timeout=600)
    return MITMDUMP


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExamSetup, LiveServer]]:
    """One hall server for the module, with an agent enrolled from 127.0.0.1 (the seat of our clients)."""
    from agent.transport import HallClient
    from invigil.payloads import Enrolment
    from invigil.timeutil import utc_now

    exam = provision_exam(tmp_path_factory.mktemp("hall") / "data", title="Linear Algebra")
    server = LiveServer(exam.data_dir).start()
    HallClient(server.url).enrol(
        Enrolment("s0001", exam.join_code, "agent-proxy-1", utc_now(), "0.1", "Linux")
    )
    yield exam, server
    server.stop()


@dataclass
class Proxy:
    """A real mitmdump started by ``invigil-proxy``; its own process group, terminated on teardown."""

    policy_file: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout_s: float = 20.0) -> Proxy:
        command = [
            str(BIN / "invigil-proxy"),
            "--policy",
            str(self.policy_file),
            "--listen-port",
            str(self.port),
            *self.args,
            "--",
            *self.extra,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"mitmdump exited: {self.log()[-3000:]}"
            if "proxy listening" in self.log():
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return self
            time.sleep(0.1)
        raise AssertionError(f"mitmdump did not start in {timeout_s} s: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture(scope="session")
def proxy_factory(mitmdump_available):
    """``Proxy`` itself, once the proxy's virtualenv exists (test modules cannot import conftest)."""
    return Proxy
