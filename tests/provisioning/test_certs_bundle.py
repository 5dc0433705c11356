"""``certs init`` and ``bundle``: the chain they make verifies with the agent's own TLS code, and only it."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.transport import tls_context
from invigil.protocol import PROTOCOL_VERSION
from provisioning import certs
from provisioning.bundle import parse_bundle
from provisioning.cli import main


def provision(data_dir: Path, *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    provision(data_dir, "hall", "create", "Hall A")
    return data_dir


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A loopback TLS server in a thread that completes handshakes and answers b"ok"; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # close() does not wake a blocked accept(): poll the stop flag instead
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def agent_handshake(ca_file: Path, port: int, host: str) -> bytes:
    """Connect the way the agent does: ``agent.transport.tls_context`` with the bundle's CA, host checked."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        tls_context(str(ca_file)).wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.recv(2)


def test_certs_init_makes_a_chain_the_agent_trusts(data_dir: Path) -> None:
    provision(data_dir, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1", "--name", "localhost")
    tls = data_dir / "tls"
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((tls / name).stat().st_mode) == 0o600
    with tls_server(tls / "server.pem", tls / "server.key") as port:
        assert agent_handshake(tls / "ca.pem", port, "127.0.0.1") == b"ok"
        assert agent_handshake(tls / "ca.pem", port, "localhost") == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
            agent_handshake(tls / "ca.pem", port, "elsewhere.example")


def test_a_server_certificate_of_another_ca_is_refused(data_dir: Path, tmp_path: Path) -> None:
    provision(data_dir, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1")
    impostor = certs.make_server_cert(certs.make_ca("Hall A"), ["127.0.0.1"])  # same name, other CA
    cert, key = tmp_path / "impostor.pem", tmp_path / "impostor.key"
    certs.write_pair(impostor, cert, key)
    with tls_server(cert, key) as port, pytest.raises(ssl.SSLCertVerificationError, match="verify failed"):
        agent_handshake(data_dir / "tls" / "ca.pem", port, "127.0.0.1")


def test_certs_init_keeps_the_ca_and_reissues_only_for_new_names(data_dir: Path) -> None:
    tls = data_dir / "tls"
    provision(data_dir, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1")
    ca, server = (tls / "ca.pem").read_bytes(), (tls / "server.pem").read_bytes()

    again = json.loads(
        provision(data_dir, "--json", "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1").stdout
    )
    assert (again["ca_created"], again["server_issued"]) == (False, False)
    assert (tls / "server.pem").read_bytes() == server

    more = json.loads(
        provision(
            data_dir,
            "--json",
            "certs",
            "init",
            "--hall",
            "Hall A",
            "--name",
            "127.0.0.1",
            "--name",
            "hall.lan",
        ).stdout
    )
    assert (more["ca_created"], more["server_issued"]) == (False, True)
    assert (tls / "ca.pem").read_bytes() == ca
    assert sorted(more["server"]["names"]) == ["127.0.0.1", "hall.lan"]
    assert more["server"]["issued_by_hall_ca"] is True

    provision(data_dir, "hall", "create", "Hall B")
    other = provision(data_dir, "certs", "init", "--hall", "Hall B", "--name", "127.0.0.1", ok=False)
    assert "--force" in other.stderr and (tls / "ca.pem").read_bytes() == ca
    provision(data_dir, "certs", "init", "--hall", "Hall B", "--name", "127.0.0.1", "--force")
    assert (tls / "ca.pem").read_bytes() != ca
    assert "Hall B" in provision(data_dir, "certs", "show").stdout


def test_certs_for_an_unknown_hall_or_without_names_are_refused(data_dir: Path) -> None:
    assert (
        "no hall 'Hall Z'"
        in provision(data_dir, "certs", "init", "--hall", "Hall Z", "--name", "x", ok=False).stderr
    )
    assert "certs init" in provision(data_dir, "certs", "show", ok=False).stderr


def test_bundle_carries_the_hall_ca_and_the_agent_verifies_the_server_with_it(
    data_dir: Path, tmp_path: Path
) -> None:
    provision(data_dir, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1")
    exam = json.loads(
        provision(
            data_dir,
            "--json",
            "exam",
            "create",
            "--hall",
            "Hall A",
            "--title",
            "T",
            "--start",
            "2026-06-12T09:00Z",
            "--end",
            "2026-06-12T11:00Z",
        ).stdout
    )
    out = tmp_path / "bundle.json"
    provision(
        data_dir, "bundle", str(exam["id"]), "--server-url", "https://127.0.0.1:8443", "--out", str(out)
    )
    text = out.read_text()
    bundle = parse_bundle(text)
    assert bundle["hall"] == "Hall A"
    assert bundle["protocol_version"] == PROTOCOL_VERSION
    assert bundle["server_urls"] == ["https://127.0.0.1:8443"]
    assert bundle["exam"]["id"] == exam["id"]
    assert "PRIVATE KEY" not in text and exam["join_code"] not in text

    ca_file = tmp_path / "bundle-ca.pem"
    ca_file.write_text(bundle["ca_pem"])
    tls = data_dir / "tls"
    with tls_server(tls / "server.pem", tls / "server.key") as port:
        assert agent_handshake(ca_file, port, "127.0.0.1") == b"ok"

    by_hall = tmp_path / "hall.json"
    provision(
        data_dir,
        "bundle",
        "--hall",
        "Hall A",
        "--server-url",
        "https://127.0.0.1:8443",
        "--out",
        str(by_hall),
    )
    assert parse_bundle(by_hall.read_text())["exam"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server-url", "https://10.9.9.9:8443"], "does not name '10.9.9.9'"),
        (["--server-url", "http://127.0.0.1:8443"], "https://HOST:PORT"),
        (["--server-url", "https://127.0.0.1:8443/api"], "no path"),
        (["--hall", "Hall A", "--server-url", "https://127.0.0.1:8443", "1"], "exactly one"),
    ],
)
def test_bundle_refuses_urls_the_agent_could_not_use(
    data_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    provision(data_dir, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1")
    out = tmp_path / "b.json"
    if "--hall" not in args:
        args = ["--hall", "Hall A", *args]
    result = provision(data_dir, "bundle", *args, "--out", str(out), ok=False)
    assert message in result.output
    assert not out.exists()


def test_bundle_without_certificates_says_to_make_them(data_dir: Path, tmp_path: Path) -> None:
    result = provision(
        data_dir,
        "bundle",
        "--hall",
        "Hall A",
        "--server-url",
        "https://127.0.0.1:8443",
        "--out",
        str(tmp_path / "b.json"),
        ok=False,
    )
    assert "certs init" in result.stderr
