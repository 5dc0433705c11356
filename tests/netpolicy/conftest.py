"""Fixtures for the proxy tests: HTTP and HTTPS origins, and real mitmdump processes started through
``invigil-proxy``, on loopback or inside the network namespaces of ``hallnet``. Nothing here reaches beyond
loopback and those namespaces.

The proxy never connects to loopback or to the machine it runs on (the appliance rule, docs/proxy.md), so
the proxy tests run it in an appliance namespace, with the origins in an 'internet' namespace behind it and
the test's own client code on a thread inside a laptop namespace (``hallnet.InNamespace``)."""

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

from hallnet import HallNet, InNamespace, NamespacedServer, enrol_laptop, hall_net
from support import ExamSetup, free_port, provision_exam

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


def start_origin(name: str, context: ssl.SSLContext | None, host: str = "127.0.0.1") -> _TLSServer:
    """A threaded origin on ``host`` (free port); call it on an ``InNamespace`` thread to listen there."""
    server = _TLSServer((host, 0), _Handler)
    server.context = context
    server.seen = []  # type: ignore[attr-defined]
    server.name = name  # type: ignore[attr-defined]
    server.handshakes = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def tls_context(ca, names: list[str], folder: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server TLS context with a certificate of ``ca`` for ``names``; returns it and the certificate."""
    issued = make_server_cert(ca, names)
    (folder / "cert.pem").write_bytes(issued.cert_pem)
    (folder / "key.pem").write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context, issued.cert_pem


class CountingService:
    """A TCP service on every address of its namespace (as a Redis bound to all would be) that counts the
    connections it accepts and answers none."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@dataclass
class ProxyHall:
    """Namespaces of a hall: the hall server (with a student enrolled from the laptop) and a service that
    must stay out of reach on the appliance, origins on the 'internet', and a thread on the laptop."""

    hn: HallNet
    exam: ExamSetup
    server: NamespacedServer
    laptop: InNamespace
    http_origin: Origin
    https_origin: Origin
    service: CountingService
    folder: Path

    def names(self, **more: str) -> dict[str, str]:
        """The appliance's hosts file: the origins' names, the appliance's own name, a name for loopback."""
        internet = self.hn.internet_ip
        return {
            "site.exam.test": internet,
            "exam.example.nl": internet,
            "docs.python.org": internet,
            "hall.exam.test": self.hn.appliance_ip,
            "sneaky.exam.test": "127.0.0.1",
            **more,
        }

    def proxy(self, proxy_factory, name: str, policy: str, *args: str, extra: tuple[str, ...] = ()):
        """A regular-mode proxy in the appliance namespace that reports to the hall server."""
        folder = self.folder / name
        folder.mkdir()
        (folder / "exam.policy").write_text(policy)
        return proxy_factory(
            folder / "exam.policy",
            folder / "mitmdump.log",
            args=[
                *("--server-url", self.server.loopback_url),
                *("--service-token-file", str(self.exam.data_dir / "service.token")),
                *args,
            ],
            extra=["--set", f"confdir={folder / 'conf'}", *extra],
            netns=self.hn.appliance_ns,
            listen_host=self.hn.appliance_ip,
        ).start()


@pytest.fixture(scope="module")
def proxy_hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyHall]:
    folder = tmp_path_factory.mktemp("proxy-hall")
    exam = provision_exam(folder / "data", title="Linear Algebra")
    ca = make_ca("proxy tests")
    ca_file = folder / "origin-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    context, cert_pem = tls_context(ca, ["site.exam.test", "exam.example.nl"], folder)
    with hall_net() as hn:
        internet, appliance = InNamespace(hn.internet_ns), InNamespace(hn.appliance_ns)
        laptop = InNamespace(hn.laptop_ns)
        https = internet.call(start_origin, "https", context, hn.internet_ip)
        plain = internet.call(start_origin, "http", None, hn.internet_ip)
        service = appliance.call(CountingService)
        server = NamespacedServer(hn, exam.data_dir, free_port())
        hall = ProxyHall(
            hn,
            exam,
            server,
            laptop,
            Origin("http", plain.server_address[1], plain),
            Origin("https", https.server_address[1], https, cert_pem, ca_file),
            service,
            folder,
        )
        hn.hosts(hn.appliance_ns, hall.names())
        server.start()
        enrol_laptop(hn, server.url, exam.students[0], exam.join_code)
        try:
            yield hall
        finally:
            server.stop()
            for origin in (plain, https):
                origin.shutdown()
                origin.server_close()
            service.close()
            for thread in (internet, appliance, laptop):
                thread.close()


@pytest.fixture(scope="session")
def mitmdump_available() -> Path:
    """The proxy's own virtualenv; created here (idempotent, stamp file) when a developer has not yet."""
    if not MITMDUMP.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "setup-proxy-venv.sh")], check=True, timeout=600)
    return MITMDUMP


@dataclass
class Proxy:
    """A real mitmdump started by ``invigil-proxy``; its own process group, terminated on teardown.
    With ``netns`` it runs inside that network namespace and listens on ``listen_host`` there."""

    policy_file: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    netns: str = ""
    listen_host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout_s: float = 20.0) -> Proxy:
        command = [
            *(["ip", "netns", "exec", self.netns] if self.netns else []),
            str(BIN / "invigil-proxy"),
            *("--policy", str(self.policy_file)),
            *("--listen-host", self.listen_host, "--listen-port", str(self.port)),
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
                if not self.netns:  # in a namespace the listening line is all this process can see
                    with socket.create_connection((self.listen_host, self.port), timeout=2):
                        pass
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
