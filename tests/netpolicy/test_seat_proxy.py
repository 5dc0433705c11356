"""Per-seat policy end to end: real mitmdump (``invigil-proxy``) in the appliance namespace reading the
per-seat file, real clients on the laptop namespace each sending from an address of its own (the proxy sees
one peer per laptop), origins behind the appliance, and the real hall server publishing the file from
sessions enrolled through its API (``conftest.proxy_hall``).

The laptops' addresses are extra addresses on the laptop namespace's hall interface rather than 127.0.0.x:
the proxy never connects to loopback or its own machine (the appliance rule), so the proxy tests keep the
origins outside the appliance and the clients on the hall network, where laptops are.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from agent.transport import HallClient
from hall_server.store import crypto, db, exams
from invigil.payloads import Enrolment
from invigil.seatpolicy import seat_policy_text
from invigil.timeutil import utc_now

from hallnet import sh, wait_for

SITES = ["shared.exam.test", "a.exam.test", "b.exam.test", *(f"site{n}.exam.test" for n in range(10))]


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def seat_file(exams_: dict[int, tuple[str, bool, str]], seats: dict[str, int]) -> str:
    """The file as the hall server writes it (the same function)."""
    return seat_policy_text(exams_, seats, "2026-01-20T09:00:00.000Z")


class Laptops:
    """Addresses on the laptop namespace's hall interface; ``seat(n)`` is the n-th laptop's address."""

    def __init__(self, hall, count: int = 20) -> None:
        self.hall = hall
        self.prefix = hall.hn.laptop_ip.rsplit(".", 1)[0]
        for n in range(count):
            sh("ip", "-n", hall.hn.laptop_ns, "addr", "add", f"{self.seat(n)}/24", "dev", "vlap")

    def seat(self, n: int) -> str:
        return f"{self.prefix}.{100 + n}"


# --------------------------------------------------------------------------------- client primitives


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _connect(proxy, source: str) -> socket.socket:
    return socket.create_connection((proxy.listen_host, proxy.port), timeout=10, source_address=(source, 0))


def _get(proxy, source: str, url: str, headers: dict[str, str]) -> tuple[int, str]:
    host = url.split("/", 3)[2]
    with _connect(proxy, source) as sock:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
        answer = _read_all(sock).decode("utf-8", "replace")
    return int(answer.split(" ", 2)[1]), answer


def _https_get(proxy, source: str, host: str, port: int, path: str, ca_file: str):
    """CONNECT, then TLS trusting ``ca_file``, then GET: (status, text, the certificate the laptop saw)."""
    sock = _connect(proxy, source)
    try:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = _read_head(sock)
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            return status, (head + _read_all(sock)).decode("utf-8", "replace"), None
        context = ssl.create_default_context(cafile=ca_file)
        with context.wrap_socket(sock, server_hostname=host) as tls:
            cert = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            answer = _read_all(tls).decode("utf-8", "replace")
        return int(answer.split(" ", 2)[1]), answer, cert
    finally:
        sock.close()


def _read_head(sock) -> bytes:
    """The answer's status line and headers, a byte at a time (what follows is TLS or a sized body)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def _connect_status(proxy, source: str, target: str) -> tuple[int, str]:
    """CONNECT only: the status and the body of a refusal (the connection stays open, so read by length)."""
    with _connect(proxy, source) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = _read_head(sock)
        text = head.decode("utf-8", "replace")
        body = b""
        if "content-length:" in text.lower():
            length = int(text.lower().split("content-length:", 1)[1].split("\r\n", 1)[0])
            while len(body) < length:
                body += sock.recv(length - len(body))
    return int(text.split(" ", 2)[1]), body.decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def laptops(proxy_hall) -> Laptops:
    proxy_hall.hn.hosts(
        proxy_hall.hn.appliance_ns, proxy_hall.names(**{site: proxy_hall.hn.internet_ip for site in SITES})
    )
    return Laptops(proxy_hall)


@pytest.fixture(scope="module")
def seat_proxy(proxy_factory, proxy_hall, laptops):
    """A proxy reading a per-seat file the test writes (``seat_proxy.policy_file``)."""
    proxy = proxy_hall.proxy(
        proxy_factory,
        "seats",
        seat_file({}, {}),
        *("--policy-poll-ms", "100"),
        extra=("--set", f"ssl_verify_upstream_trusted_ca={proxy_hall.https_origin.ca_file}"),
    )
    yield proxy
    proxy.stop()


class Hall:
    """The seat proxy with the laptops: ``publish`` writes the file and waits until the proxy took it."""

    def __init__(self, hall, proxy, laptops: Laptops) -> None:
        self.hall, self.proxy, self.laptops = hall, proxy, laptops

    def publish(self, exams_: dict[int, tuple[str, bool, str]], seats: dict[str, int]) -> None:
        before = self.proxy.log().count("reloaded:")
        write_atomically(self.proxy.policy_file, seat_file(exams_, seats))
        assert wait_for(lambda: self.proxy.log().count("reloaded:") > before, 10), self.proxy.log()[-2000:]

    def get(self, source: str, site: str, path: str = "/", **headers: str) -> tuple[int, str]:
        url = f"http://{site}:{self.hall.http_origin.port}{path}"
        return self.hall.laptop.call(_get, self.proxy, source, url, headers)

    def reaches(self, source: str, site: str) -> bool:
        status, answer = self.get(source, site, f"/{uuid.uuid4().hex}")
        assert status in (200, 403), answer[:300]
        return status == 200


@pytest.fixture
def hall(proxy_hall, seat_proxy, laptops) -> Hall:
    return Hall(proxy_hall, seat_proxy, laptops)


# ------------------------------------------------------------------------------------ without a server


def test_two_exams_sharing_a_rule_each_seat_reaches_exactly_its_own_sites(hall):
    a, b, c = hall.laptops.seat(1), hall.laptops.seat(2), hall.laptops.seat(3)
    # One line in both policies: the single-file union would be refused ("duplicate of line ..").
    hall.publish(
        {
            1: ("Algebra", False, "allow shared.exam.test\nallow a.exam.test\n"),
            2: ("Biology", False, "allow shared.exam.test\nallow b.exam.test\n"),
        },
        {a: 1, b: 2, c: 2},
    )
    reached = {
        seat: {
            site for site in ("shared.exam.test", "a.exam.test", "b.exam.test") if hall.reaches(seat, site)
        }
        for seat in (a, b, c)
    }
    assert reached == {
        a: {"shared.exam.test", "a.exam.test"},
        b: {"shared.exam.test", "b.exam.test"},
        c: {"shared.exam.test", "b.exam.test"},
    }
    status, answer = hall.get(a, "b.exam.test")
    assert status == 403 and "The network policy of <strong>Algebra</strong>" in answer


def test_ten_exams_at_once(hall):
    seats = {hall.laptops.seat(n): n + 1 for n in range(10)}
    hall.publish(
        {
            n + 1: (f"Exam {n}", False, f"allow shared.exam.test\nallow site{n}.exam.test\n")
            for n in range(10)
        },
        seats,
    )
    for seat, exam_id in seats.items():
        n = exam_id - 1
        reached = [m for m in range(10) if hall.reaches(seat, f"site{m}.exam.test")]
        assert reached == [n], f"seat {seat} of exam {exam_id} reached {reached}"
        assert hall.reaches(seat, "shared.exam.test")


def test_a_laptop_moving_to_the_next_exam_is_remapped(hall):
    laptop = hall.laptops.seat(4)
    policies = {
        1: ("Morning", False, "allow a.exam.test\n"),
        2: ("Afternoon", False, "allow b.exam.test\n"),
    }
    hall.publish(policies, {laptop: 1})
    assert hall.reaches(laptop, "a.exam.test") and not hall.reaches(laptop, "b.exam.test")
    hall.publish(policies, {laptop: 2})
    assert hall.reaches(laptop, "b.exam.test") and not hall.reaches(laptop, "a.exam.test")
    hall.publish({2: policies[2]}, {})  # it left: not enrolled any more
    status, answer = hall.get(laptop, "b.exam.test")
    assert status == 403 and "start the Invigil agent and join the exam first" in answer


def test_an_unknown_address_gets_only_the_refusal(hall):
    enrolled, stranger = hall.laptops.seat(5), hall.laptops.seat(6)
    hall.publish({1: ("Algebra", False, "allow a.exam.test\nallow site.exam.test\n")}, {enrolled: 1})
    served = len(hall.hall.http_origin.seen)
    status, answer = hall.get(stranger, "a.exam.test", "/stranger")
    assert status == 403
    assert "Start the Invigil agent and join the exam first" in answer
    assert f"this laptop ({stranger}) is in no running exam" in answer
    assert "origin http" not in answer and len(hall.hall.http_origin.seen) == served
    status, answer = hall.hall.laptop.call(
        _connect_status, hall.proxy, stranger, f"site.exam.test:{hall.hall.https_origin.port}"
    )
    assert status == 403
    assert answer == (
        f"Blocked: this laptop ({stranger}) is in no running exam: "
        "start the Invigil agent and join the exam first\n"
    )
    # The one thing it may reach is the hall server's agent API, to join.
    port = hall.hall.server.port
    status, answer = hall.hall.laptop.call(
        _get, hall.proxy, stranger, f"http://127.0.0.1:{port}/api/v1/health", {}
    )
    assert status == 200 and '"status"' in answer, answer[:300]
    assert hall.reaches(enrolled, "a.exam.test")
    assert f"blocked {stranger} a.exam.test" in hall.proxy.log()


def test_a_spoofed_forwarded_for_changes_nothing(hall):
    a, b, stranger = hall.laptops.seat(7), hall.laptops.seat(8), hall.laptops.seat(9)
    hall.publish(
        {1: ("Algebra", False, "allow a.exam.test\n"), 2: ("Biology", False, "allow b.exam.test\n")},
        {a: 1, b: 2},
    )
    spoof = {"X-Forwarded-For": b, "Forwarded": f"for={b}", "X-Real-IP": b, "Client-IP": b}
    assert hall.get(a, "b.exam.test", "/spoof", **spoof)[0] == 403
    assert hall.get(a, "a.exam.test", "/spoof", **spoof)[0] == 200
    status, answer = hall.get(stranger, "b.exam.test", "/spoof", **spoof)
    assert status == 403 and f"this laptop ({stranger}) is in no running exam" in answer


def test_interception_is_honoured_per_seat(hall):
    intercepted, passed = hall.laptops.seat(10), hall.laptops.seat(11)
    origin = hall.hall.https_origin
    hall.publish(
        {
            1: ("Intercepted <I>", True, "allow site.exam.test/allowed/\n"),
            2: ("Passed through", False, "allow site.exam.test/allowed/\n"),
        },
        {intercepted: 1, passed: 2},
    )
    mitm_ca = str(hall.proxy.policy_file.parent / "conf" / "mitmproxy-ca-cert.pem")

    def fetch(seat: str, path: str, ca: str):
        return hall.hall.laptop.call(_https_get, hall.proxy, seat, "site.exam.test", origin.port, path, ca)

    # The intercepting exam's seat: the proxy terminates TLS (the hall CA signs) and decides every URL.
    status, answer, cert = fetch(intercepted, "/allowed/page", mitm_ca)
    assert status == 200 and answer.endswith("origin https /allowed/page")
    assert ssl.DER_cert_to_PEM_cert(cert).encode() != origin.cert_pem.replace(b"\r\n", b"\n")
    status, answer, _ = fetch(intercepted, "/other", mitm_ca)
    assert status == 403 and "Intercepted &lt;I&gt;" in answer and "no rule allows path /other" in answer
    # The other exam's seat: TLS passes through untouched, the origin's own certificate; paths are not seen.
    status, answer, cert = fetch(passed, "/other", str(origin.ca_file))
    assert status == 200 and answer.endswith("origin https /other")
    assert ssl.DER_cert_to_PEM_cert(cert).encode() == origin.cert_pem.replace(b"\r\n", b"\n")


def test_a_bad_file_leaves_the_previous_policy_in_force(hall):
    laptop = hall.laptops.seat(12)
    hall.publish({1: ("Algebra", False, "allow a.exam.test\n")}, {laptop: 1})
    exam = {"title": "x", "intercept": False, "policy": "allow b.exam.test\nallow B.exam.test.\n"}
    bad = json.dumps({"version": 1, "exams": {"1": exam}, "seats": {laptop: "1"}})
    write_atomically(hall.proxy.policy_file, bad)
    assert wait_for(lambda: "exam 1: line 2: duplicate of line 1" in hall.proxy.log(), 10)
    assert "not reloaded, keeping the previous policy" in hall.proxy.log()
    assert hall.reaches(laptop, "a.exam.test") and not hall.reaches(laptop, "b.exam.test")
    hall.publish({1: ("Algebra", False, "allow b.exam.test\n")}, {laptop: 1})
    assert hall.reaches(laptop, "b.exam.test")


# ------------------------------------------------------------------------- with the hall server's file


def _enrol(server_url: str, source: str, student: str, join_code: str) -> None:
    client = HallClient(server_url, source_address=source)
    agent_id = "agent-" + source.replace(".", "-") + "-" + student
    client.enrol(Enrolment(student, join_code, agent_id, utc_now(), "0.1", "Linux"))
    client.close()


def test_the_proxy_follows_what_the_hall_server_publishes_from_real_enrolments(
    proxy_factory, proxy_hall, laptops
):
    setup = proxy_hall.exam
    store = db.connect(setup.data_dir)
    try:
        store.execute(
            "UPDATE exam SET policy_text = ? WHERE id = ?",
            ["allow shared.exam.test\nallow a.exam.test\n", setup.exam_id],
        )
        start = utc_now() - timedelta(minutes=5)
        biology = exams.create_exam(
            store,
            crypto.load_or_create_master_key(setup.data_dir),
            hall_id=setup.hall_id,
            title="Biology",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            policy_text="allow shared.exam.test\nallow b.exam.test\n",
            join_code="HALLB234",
        )
        exams.add_roster(store, biology, [exams.RosterEntry(f"b{i}", f"Student b{i}") for i in range(1, 4)])
    finally:
        store.close()
    # The server publishes every second (the default is 10 s), from the real sessions.
    os.environ["INVIGIL_POLICY_PUBLISH_INTERVAL_S"] = "1"
    try:
        proxy_hall.server.stop()
        proxy_hall.server.start()
    finally:
        del os.environ["INVIGIL_POLICY_PUBLISH_INTERVAL_S"]
    a, b, stranger = laptops.seat(13), laptops.seat(14), laptops.seat(15)
    proxy_hall.laptop.call(_enrol, proxy_hall.server.url, a, setup.students[1], setup.join_code)
    proxy_hall.laptop.call(_enrol, proxy_hall.server.url, b, "b1", "HALLB234")
    published = setup.data_dir / "proxy" / "hall-policy.json"
    assert wait_for(lambda: published.exists() and b in published.read_text(), 15)

    proxy = proxy_factory(
        published,
        proxy_hall.folder / "published-proxy.log",
        args=[
            *("--server-url", proxy_hall.server.loopback_url),
            *("--service-token-file", str(setup.data_dir / "service.token")),
            *("--policy-poll-ms", "100"),
        ],
        extra=["--set", f"confdir={proxy_hall.folder / 'published-conf'}"],
        netns=proxy_hall.hn.appliance_ns,
        listen_host=proxy_hall.hn.appliance_ip,
    ).start()
    hall = Hall(proxy_hall, proxy, laptops)
    try:
        assert {s for s in ("shared.exam.test", "a.exam.test", "b.exam.test") if hall.reaches(a, s)} == {
            "shared.exam.test",
            "a.exam.test",
        }
        assert {s for s in ("shared.exam.test", "a.exam.test", "b.exam.test") if hall.reaches(b, s)} == {
            "shared.exam.test",
            "b.exam.test",
        }
        status, answer = hall.get(stranger, "shared.exam.test")
        assert status == 403 and "start the Invigil agent and join the exam first" in answer

        # The Biology laptop joins Linear Algebra from the same address: the server re-maps it.
        proxy_hall.laptop.call(_enrol, proxy_hall.server.url, b, setup.students[2], setup.join_code)
        assert wait_for(lambda: hall.reaches(b, "a.exam.test"), 15), proxy.log()[-2000:]
        assert not hall.reaches(b, "b.exam.test")

        # Site events keep the laptop's own address and land with its exam.
        marker = uuid.uuid4().hex
        assert hall.get(a, "b.exam.test", f"/{marker}")[0] == 403
        rows = wait_for(lambda: _site_events(setup.data_dir, marker), 15)
        assert rows == [(setup.exam_id, a, "blocked")]
    finally:
        proxy.stop()


def _site_events(data_dir: Path, marker: str) -> list[tuple]:
    store = db.connect(data_dir)
    try:
        return store.execute(
            "SELECT exam_id, unseal(exam_id, client_ip), decision FROM site_event "
            "WHERE unseal(exam_id, url) LIKE ?",
            [f"%{marker}%"],
        ).fetchall()
    finally:
        store.close()
