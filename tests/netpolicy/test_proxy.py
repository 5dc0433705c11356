"""The proxy end to end: real mitmdump (from .venv-proxy, started by ``invigil-proxy``) with our addon in an
appliance namespace, real HTTP/HTTPS clients and raw sockets on a laptop, origins behind the appliance, and
the real hall server receiving site events (``conftest.proxy_hall``).

Hosts that must be blocked are never resolved (``connection_strategy=lazy``: nothing is contacted before the
decision), so the tricky names below need no DNS; the allowed names resolve through the appliance's hosts
file to the origins.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import requests

from hall_server.store import db

PLAIN_POLICY = """\
# Linear Algebra, hall A
allow site.exam.test
allow exam.example.nl
allow docs.python.org/3/library/
allow {origin_ip}
allow localhost
allow 127.0.0.1
allow ::1
allow hall.exam.test
allow sneaky.exam.test
allow rebind.exam.test
block 127.0.0.2
block *.chatgpt.com
block 192.168.0.0/16
"""

INTERCEPT_POLICY = """\
allow site.exam.test/allowed/
block site.exam.test/allowed/secret
block *.chatgpt.com
"""


def wait_for(condition, timeout_s: float, interval_s: float = 0.1):
    """Poll until ``condition()`` returns something truthy (bounded); returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def write_policy(path: Path, text: str) -> None:
    """Replace the file atomically, as an organiser's tooling should."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def plain_policy(hall) -> str:
    return PLAIN_POLICY.format(origin_ip=hall.hn.internet_ip)


@pytest.fixture(scope="module")
def plain_proxy(proxy_factory, proxy_hall):
    proxy = proxy_hall.proxy(
        proxy_factory,
        "plain",
        plain_policy(proxy_hall),
        *("--exam-title", "Linear Algebra", "--policy-poll-ms", "100"),
        extra=("--set", "invigil_retry_max_s=1"),
    )
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def intercepting_proxy(proxy_factory, proxy_hall):
    proxy = proxy_hall.proxy(
        proxy_factory,
        "intercepting",
        INTERCEPT_POLICY,
        *("--intercept", "--exam-title", "Linear Algebra <B>"),
        extra=("--set", f"ssl_verify_upstream_trusted_ca={proxy_hall.https_origin.ca_file}"),
    )
    yield proxy
    proxy.stop()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while len(b"".join(chunks)) < 1_000_000:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _raw_get(proxy, url: str, host_header: str) -> tuple[int, str]:
    with socket.create_connection((proxy.listen_host, proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        answer = _read_all(sock).decode("utf-8", "replace")
    return int(answer.split(" ", 2)[1]), answer


def raw_get(hall, proxy, url: str, host_header: str) -> tuple[int, str]:
    """From the laptop: a GET in absolute form, written byte for byte (no client library tidies it up)."""
    return hall.laptop.call(_raw_get, proxy, url, host_header)


def _open_tunnel(proxy, target: str) -> tuple[int, str, socket.socket]:
    sock = socket.create_connection((proxy.listen_host, proxy.port), timeout=10)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    text = head.decode("utf-8", "replace")
    status = int(text.split(" ", 2)[1])
    body = b""
    if "content-length:" in text.lower():
        length = int(text.lower().split("content-length:", 1)[1].split("\r\n", 1)[0])
        while len(body) < length:
            body += sock.recv(length - len(body))
    return status, body.decode("utf-8", "replace"), sock


def open_tunnel(hall, proxy, target: str) -> tuple[int, str, socket.socket]:
    """From the laptop: CONNECT; returns the status, the body of a refusal and the socket."""
    return hall.laptop.call(_open_tunnel, proxy, target)


def tls_over(sock: socket.socket, server_name: str, ca_file: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca_file))
    return context.wrap_socket(sock, server_hostname=server_name)


def laptop_get(hall, url: str, proxy, verify: str | bool = True) -> requests.Response:
    """From the laptop: ``requests.get`` through the proxy, as a browser would."""
    proxies = {"http": proxy.url, "https": proxy.url}
    return hall.laptop.call(requests.get, url, proxies=proxies, verify=verify, timeout=10)


def site_events(exam, marker: str = "") -> list[dict]:
    store = db.connect(exam.data_dir)
    try:
        rows = store.execute(
            "SELECT exam_id, unseal(exam_id, client_ip), unseal(exam_id, host), "
            "unseal(exam_id, url) AS open_url, decision, reason, source FROM site_event "
            "WHERE coalesce(open_url, '') LIKE ? OR reason LIKE ? ORDER BY time",
            [f"%{marker}%", f"%{marker}%"],
        ).fetchall()
    finally:
        store.close()
    keys = ("exam_id", "client_ip", "host", "url", "decision", "reason", "source")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ------------------------------------------------------------------------------ without interception


def test_allowed_tls_passes_through_untouched(plain_proxy, proxy_hall):
    https_origin = proxy_hall.https_origin
    answer = laptop_get(
        proxy_hall,
        f"https://site.exam.test:{https_origin.port}/hello",
        plain_proxy,
        str(https_origin.ca_file),
    )
    assert answer.status_code == 200 and answer.text == "origin https /hello"

    status, _, sock = open_tunnel(proxy_hall, plain_proxy, f"site.exam.test:{https_origin.port}")
    assert status == 200
    with tls_over(sock, "site.exam.test", https_origin.ca_file) as tls:
        # The client sees the origin's own certificate: the proxy did not terminate TLS.
        assert ssl.DER_cert_to_PEM_cert(
            tls.getpeercert(binary_form=True)
        ).encode() == https_origin.cert_pem.replace(b"\r\n", b"\n")
    # The tunnels went to the address the appliance rule checked (pinned), not to a second lookup of the name.
    assert f"server connect {proxy_hall.hn.internet_ip}:{https_origin.port}\n" in plain_proxy.log()
    assert f"server connect site.exam.test:{https_origin.port}" not in plain_proxy.log()


@pytest.mark.parametrize(
    ("target", "expected", "reason"),
    [
        ("exam.example.nl:443", 200, ""),
        ("EXAM.Example.NL.:443", 200, ""),  # case and trailing dot
        ("ex\u0430m.example.nl:443", 400, ""),  # non-ASCII: mitmproxy refuses the request line itself
        ("docs.python.org:443", 200, ""),  # host allowed by a URL-level rule
        ("chat.chatgpt.com:443", 403, "block *.chatgpt.com"),
        ("a.b.chatgpt.com:443", 403, "block *.chatgpt.com"),
        ("exam.example.nl.attacker.net:443", 403, "default deny"),  # attacker's suffix
        ("evilexam.example.nl:443", 403, "default deny"),
        ("www.exam.example.nl:443", 403, "default deny"),
        ("xn--exm-7cd.example.nl:443", 403, "default deny"),  # Cyrillic look-alike
        ("2130706434:443", 403, "block 127.0.0.2"),  # decimal IPv4
        ("0x7f.0.0.2:443", 403, "block 127.0.0.2"),  # hex part
        ("0177.0.0.02:443", 403, "block 127.0.0.2"),  # octal parts
        ("127.2:443", 403, "block 127.0.0.2"),  # short form
        ("[::ffff:127.0.0.2]:443", 403, "block 127.0.0.2"),  # IPv4-mapped IPv6
        ("192.168.2.3:443", 403, "block 192.168.0.0/16"),
        ("3232235777:443", 403, "block 192.168.0.0/16"),  # 192.168.1.1
        ("exam.example.nl.evil:443", 403, "default deny"),
    ],
)
def test_connect_is_decided_on_the_host(plain_proxy, proxy_hall, target, expected, reason):
    status, body, sock = open_tunnel(proxy_hall, plain_proxy, target)
    sock.close()
    assert status == expected, body
    if expected == 403:
        assert "Blocked by the exam's network policy" in body and reason in body


@pytest.mark.parametrize("sni", ["chat.chatgpt.com", "exam.example.nl", "site.exam.test.attacker.net"])
def test_connect_to_an_allowed_host_with_another_tls_name_is_refused(plain_proxy, proxy_hall, sni):
    https_origin = proxy_hall.https_origin
    before = https_origin.server.handshakes
    status, _, sock = open_tunnel(proxy_hall, plain_proxy, f"site.exam.test:{https_origin.port}")
    assert status == 200
    with pytest.raises(OSError):  # ssl.SSLError, EOF or reset: no ServerHello ever comes
        proxy_hall.laptop.call(lambda: tls_over(sock, sni, https_origin.ca_file).recv(1))
    sock.close()
    assert https_origin.server.handshakes == before  # the origin was never contacted
    assert f"TLS server name {sni} does not match CONNECT host site.exam.test" in plain_proxy.log()


@pytest.mark.parametrize(
    ("url", "host_header", "expected", "reason"),
    [
        ("http://site.exam.test:{http}/page", "site.exam.test:{http}", 200, ""),
        ("http://Site.Exam.Test:{http}/case", "SITE.EXAM.TEST:{http}", 200, ""),
        ("http://{decimal}:{http}/decimal", "{decimal}:{http}", 200, ""),  # the origin's IPv4 as a number
        ("http://2130706434:{http}/", "2130706434:{http}", 403, "block 127.0.0.2"),
        ("http://0x7f.0.0.2:{http}/", "0x7f.0.0.2:{http}", 403, "block 127.0.0.2"),
        ("http://chat.chatgpt.com/", "chat.chatgpt.com", 403, "block *.chatgpt.com"),
        ("http://exam.example.nl.attacker.net/", "exam.example.nl.attacker.net", 403, "default deny"),
        ("http://docs.python.org/3/", "docs.python.org", 403, "no rule allows path /3/ on docs.python.org"),
        ("http://docs.python.org/3/library/../../x", "docs.python.org", 403, "no rule allows path"),
        # Host header naming another site than the request target: fronting.
        ("http://site.exam.test:{http}/front", "chat.chatgpt.com", 403, "does not match the requested host"),
        ("http://site.exam.test:{http}/front", "site.exam.test@chat.chatgpt.com", 403, "does not match"),
    ],
)
def test_plain_http_is_decided_on_the_url(plain_proxy, proxy_hall, url, host_header, expected, reason):
    fields = {
        "http": proxy_hall.http_origin.port,
        "decimal": int(ipaddress.ip_address(proxy_hall.hn.internet_ip)),
    }
    url, host_header = url.format(**fields), host_header.format(**fields)
    status, answer = raw_get(proxy_hall, plain_proxy, url, host_header)
    assert status == expected, answer[:500]
    if expected == 403:
        assert "This site is blocked during the exam" in answer and "Linear Algebra" in answer
        assert reason in answer
    else:
        assert answer.endswith(f"origin http /{url.rsplit('/', 1)[1]}")


def test_userinfo_in_the_url_does_not_hide_the_host(plain_proxy, proxy_hall):
    http_origin = proxy_hall.http_origin
    served = len(http_origin.seen)
    trick = f"http://site.exam.test:{http_origin.port}@127.0.0.2:{http_origin.port}/userinfo"
    status, answer = raw_get(proxy_hall, plain_proxy, trick, f"127.0.0.2:{http_origin.port}")
    assert status in (400, 403), answer[:300]  # mitmproxy refuses the form, or the policy blocks 127.0.0.2
    answer = laptop_get(proxy_hall, "http://exam.example.nl@chat.chatgpt.com/userinfo", plain_proxy)
    assert answer.status_code == 403 and "block *.chatgpt.com" in answer.text
    assert len(http_origin.seen) == served


def test_decisions_land_in_the_store_attributed_to_the_seat(plain_proxy, proxy_hall):
    exam, port = proxy_hall.exam, proxy_hall.http_origin.port
    marker = uuid.uuid4().hex
    raw_get(proxy_hall, plain_proxy, f"http://site.exam.test:{port}/{marker}", f"site.exam.test:{port}")
    raw_get(proxy_hall, plain_proxy, f"http://chat.chatgpt.com/{marker}", "chat.chatgpt.com")
    rows = wait_for(lambda: len(site_events(exam, marker)) == 2 and site_events(exam, marker), 10)
    assert rows, "site events did not arrive"
    by_host = {row["host"]: row for row in rows}
    assert by_host["site.exam.test"]["decision"] == "allowed"
    assert by_host["site.exam.test"]["reason"] == "allowed by line 2: allow site.exam.test"
    assert by_host["chat.chatgpt.com"]["decision"] == "blocked"
    assert by_host["chat.chatgpt.com"]["url"] == f"http://chat.chatgpt.com/{marker}"
    for row in rows:
        assert row["client_ip"] == proxy_hall.hn.laptop_ip and row["exam_id"] == exam.exam_id
        assert row["source"] == "proxy"


def test_events_wait_while_the_hall_server_is_away(plain_proxy, proxy_hall):
    marker = uuid.uuid4().hex
    proxy_hall.server.stop()
    try:
        status, _ = raw_get(proxy_hall, plain_proxy, f"http://chat.chatgpt.com/{marker}", "chat.chatgpt.com")
        assert status == 403  # the proxy keeps deciding while the server is away
        wait_for(lambda: "hall server unreachable" in plain_proxy.log(), 5)
    finally:
        proxy_hall.server.start()
    rows = wait_for(lambda: site_events(proxy_hall.exam, marker), 15)
    assert [row["decision"] for row in rows] == ["blocked"]


def test_a_changed_policy_is_picked_up_and_a_bad_one_is_refused(plain_proxy, proxy_hall):
    port = proxy_hall.http_origin.port
    page = (f"http://site.exam.test:{port}/reload", f"site.exam.test:{port}")
    policy = plain_policy(proxy_hall)
    assert raw_get(proxy_hall, plain_proxy, *page)[0] == 200
    try:
        write_policy(
            plain_proxy.policy_file, policy.replace("allow site.exam.test\n", "block site.exam.test\n")
        )
        assert wait_for(lambda: raw_get(proxy_hall, plain_proxy, *page)[0] == 403, 10), (
            "new policy not picked up"
        )
        write_policy(plain_proxy.policy_file, "allow site.exam.test\nalow exam.example.nl\nallow *.nl\n")
        assert wait_for(lambda: "line 2: unknown action 'alow'" in plain_proxy.log(), 10), plain_proxy.log()[
            -2000:
        ]
        assert "line 3: 'allow *.nl' would allow a whole top-level domain" in plain_proxy.log()
        status, answer = raw_get(proxy_hall, plain_proxy, *page)
        assert status == 403 and "block site.exam.test" in answer  # the previous policy stays in force
    finally:
        write_policy(plain_proxy.policy_file, policy)
    assert wait_for(lambda: raw_get(proxy_hall, plain_proxy, *page)[0] == 200, 10)


# ------------------------------------------------------------------------------------ the appliance


@pytest.mark.parametrize(
    "target",
    [
        "localhost:{service}",
        "127.0.0.1:{service}",
        "2130706433:{service}",  # 127.0.0.1 spelled as a number
        "[::1]:{service}",
        "sneaky.exam.test:{service}",  # an allowed name that resolves to 127.0.0.1
        "hall.exam.test:{service}",  # the appliance's own name and address
        "hall.exam.test:{agent}",  # the agent API's port, but not the address the proxy was given
        "localhost:{proxy}",  # the proxy itself
    ],
)
def test_the_appliance_is_out_of_reach_whatever_the_policy_allows(plain_proxy, proxy_hall, target):
    target = target.format(
        service=proxy_hall.service.port, agent=proxy_hall.server.port, proxy=plain_proxy.port
    )
    before = proxy_hall.service.connections
    status, body, sock = open_tunnel(proxy_hall, plain_proxy, target)
    sock.close()
    assert status == 403, body
    assert "appliance rule: the proxy connects to this appliance only for the hall server's agent API" in body
    assert f"(127.0.0.1:{proxy_hall.server.port})" in body
    status, answer = raw_get(proxy_hall, plain_proxy, f"http://{target}/", target)
    assert status == 403 and "This site is blocked during the exam" in answer
    # mitmproxy writes an IPv6 request URL without brackets, which the policy refuses before this rule.
    assert "appliance rule" in answer or "unparsable URL" in answer
    assert proxy_hall.service.connections == before  # nothing ever connected to the appliance's service


def test_a_name_that_turns_into_loopback_after_the_connect_is_refused_before_connecting(
    plain_proxy, proxy_hall
):
    hosts = proxy_hall.hn.hosts
    before = proxy_hall.service.connections
    hosts(proxy_hall.hn.appliance_ns, proxy_hall.names(**{"rebind.exam.test": proxy_hall.hn.internet_ip}))
    try:
        status, _, sock = open_tunnel(proxy_hall, plain_proxy, f"rebind.exam.test:{proxy_hall.service.port}")
        assert status == 200  # an outside address: the tunnel is open (nothing is connected before data)
        hosts(proxy_hall.hn.appliance_ns, proxy_hall.names(**{"rebind.exam.test": "127.0.0.1"}))
        proxy_hall.laptop.call(sock.sendall, b"PING\r\n")  # Redis's inline protocol
        with contextlib.suppress(ConnectionResetError):  # closed, or reset: no upstream connection
            assert proxy_hall.laptop.call(sock.recv, 100) == b""
        sock.close()
    finally:
        hosts(proxy_hall.hn.appliance_ns, proxy_hall.names())
    assert proxy_hall.service.connections == before
    rows = wait_for(
        lambda: [r for r in site_events(proxy_hall.exam, "rebind.exam.test") if r["decision"] == "blocked"],
        10,
    )
    assert rows and rows[0]["host"] == "rebind.exam.test" and rows[0]["reason"].startswith("appliance rule")
    assert rows[0]["client_ip"] == proxy_hall.hn.laptop_ip


def test_the_agent_api_is_the_one_place_on_the_appliance_the_proxy_reaches(plain_proxy, proxy_hall):
    port = proxy_hall.server.port
    status, answer = raw_get(
        proxy_hall, plain_proxy, f"http://localhost:{port}/api/v1/health", f"localhost:{port}"
    )
    assert status == 200 and '"status"' in answer, answer[:500]
    status, _, sock = open_tunnel(proxy_hall, plain_proxy, f"localhost:{port}")
    assert status == 200
    request = f"GET /api/v1/health HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    proxy_hall.laptop.call(sock.sendall, request.encode())
    answer = proxy_hall.laptop.call(_read_all, sock).decode()
    sock.close()
    assert answer.startswith("HTTP/1.1 200"), answer[:500]


def test_a_refusal_by_the_appliance_rule_is_a_site_event_of_the_seat(plain_proxy, proxy_hall):
    marker = uuid.uuid4().hex
    target = f"localhost:{proxy_hall.service.port}"
    raw_get(proxy_hall, plain_proxy, f"http://{target}/{marker}", target)
    rows = wait_for(lambda: site_events(proxy_hall.exam, marker), 10)
    assert rows, "the refusal did not arrive"
    assert rows[0]["decision"] == "blocked" and rows[0]["host"] == "localhost"
    assert (
        rows[0]["reason"].startswith("appliance rule: ") and rows[0]["client_ip"] == proxy_hall.hn.laptop_ip
    )


# --------------------------------------------------------------------------------- with interception


def _mitm_ca(proxy) -> str:
    return str(proxy.policy_file.parent / "conf" / "mitmproxy-ca-cert.pem")


@pytest.mark.parametrize(
    ("path", "expected", "reason"),
    [
        ("/allowed/page", 200, ""),
        ("/allowed/", 200, ""),
        ("/other", 403, "no rule allows path /other on site.exam.test"),
        ("/allowed/secret/answers", 403, "blocked by line 2: block site.exam.test/allowed/secret"),
        ("/allowed/%2e%2e/other", 403, "no rule allows path"),
        ("/allowed/..%2Fother", 403, "no rule allows path"),
        ("/allowed-evil/", 403, "no rule allows path"),
    ],
)
def test_intercepted_https_is_decided_per_url(intercepting_proxy, proxy_hall, path, expected, reason):
    answer = laptop_get(
        proxy_hall,
        f"https://site.exam.test:{proxy_hall.https_origin.port}{path}",
        intercepting_proxy,
        _mitm_ca(intercepting_proxy),  # the laptop trusts the hall's (here: mitmproxy's) CA
    )
    assert answer.status_code == expected
    if expected == 200:
        assert answer.text == f"origin https {path}"
    else:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "Linear Algebra &lt;B&gt;" in answer.text and reason in answer.text


def test_intercepted_blocked_host_gets_the_block_page(intercepting_proxy, proxy_hall):
    marker = uuid.uuid4().hex
    answer = laptop_get(
        proxy_hall, f"https://chat.chatgpt.com/{marker}", intercepting_proxy, _mitm_ca(intercepting_proxy)
    )
    assert answer.status_code == 403 and "block *.chatgpt.com" in answer.text
    rows = wait_for(lambda: site_events(proxy_hall.exam, marker), 10)
    assert (
        rows and rows[0]["url"] == f"https://chat.chatgpt.com/{marker}" and rows[0]["decision"] == "blocked"
    )


def test_intercepting_proxy_still_refuses_a_tls_name_other_than_the_connect_host(
    intercepting_proxy, proxy_hall
):
    status, _, sock = open_tunnel(
        proxy_hall, intercepting_proxy, f"site.exam.test:{proxy_hall.https_origin.port}"
    )
    assert status == 200
    with pytest.raises(OSError):
        proxy_hall.laptop.call(
            lambda: tls_over(sock, "chat.chatgpt.com", Path(_mitm_ca(intercepting_proxy))).recv(1)
        )
    sock.close()
