"""The proxy end to end: real mitmdump (from .venv-proxy, started by ``invigil-proxy``) with our addon,
real HTTP/HTTPS clients and raw sockets, local origins, and the real hall server receiving site events.

Hosts that must be blocked are never resolved (``connection_strategy=lazy``: nothing is contacted before the
decision), so the tricky names below need no DNS; allowed traffic goes to origins on 127.0.0.1/localhost.
"""

from __future__ import annotations

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
allow localhost
allow 127.0.0.1
allow exam.example.nl
allow docs.python.org/3/library/
block 127.0.0.2
block *.chatgpt.com
block 10.0.0.0/8
"""

INTERCEPT_POLICY = """\
allow localhost/allowed/
block localhost/allowed/secret
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


@pytest.fixture(scope="module")
def plain_proxy(proxy_factory, hall, tmp_path_factory):
    exam, server = hall
    folder = tmp_path_factory.mktemp("plain-proxy")
    policy = folder / "exam.policy"
    policy.write_text(PLAIN_POLICY)
    proxy = proxy_factory(
        policy,
        folder / "mitmdump.log",
        args=["--server-url", server.url, "--exam-title", "Linear Algebra", "--policy-poll-ms", "100"],
        extra=["--set", "invigil_retry_max_s=1", "--set", f"confdir={folder / 'conf'}"],
    ).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def intercepting_proxy(proxy_factory, hall, https_origin, tmp_path_factory):
    exam, server = hall
    folder = tmp_path_factory.mktemp("intercepting-proxy")
    policy = folder / "exam.policy"
    policy.write_text(INTERCEPT_POLICY)
    proxy = proxy_factory(
        policy,
        folder / "mitmdump.log",
        args=["--intercept", "--server-url", server.url, "--exam-title", "Linear Algebra <B>"],
        extra=[
            "--set",
            f"confdir={folder / 'conf'}",
            "--set",
            f"ssl_verify_upstream_trusted_ca={https_origin.ca_file}",
        ],
    ).start()
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


def raw_get(proxy, url: str, host_header: str) -> tuple[int, str]:
    """A GET in absolute form, written byte for byte (no client library tidies the URL up)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        answer = _read_all(sock).decode("utf-8", "replace")
    return int(answer.split(" ", 2)[1]), answer


def open_tunnel(proxy, target: str) -> tuple[int, str, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
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


def tls_over(sock: socket.socket, server_name: str, ca_file: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca_file))
    return context.wrap_socket(sock, server_hostname=server_name)


def site_events(exam, marker: str = "") -> list[dict]:
    store = db.connect(exam.data_dir)
    try:
        rows = store.execute(
            "SELECT exam_id, client_ip, host, url, decision, reason, source FROM site_event "
            "WHERE coalesce(url, '') LIKE ? ORDER BY time",
            [f"%{marker}%"],
        ).fetchall()
    finally:
        store.close()
    keys = ("exam_id", "client_ip", "host", "url", "decision", "reason", "source")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ------------------------------------------------------------------------------ without interception


def test_allowed_tls_passes_through_untouched(plain_proxy, https_origin):
    proxies = {"https": plain_proxy.url}
    answer = requests.get(
        f"https://localhost:{https_origin.port}/hello",
        proxies=proxies,
        verify=str(https_origin.ca_file),
        timeout=10,
    )
    assert answer.status_code == 200 and answer.text == "origin https /hello"

    status, _, sock = open_tunnel(plain_proxy, f"localhost:{https_origin.port}")
    assert status == 200
    with tls_over(sock, "localhost", https_origin.ca_file) as tls:
        # The client sees the origin's own certificate: the proxy did not terminate TLS.
        assert ssl.DER_cert_to_PEM_cert(
            tls.getpeercert(binary_form=True)
        ).encode() == https_origin.cert_pem.replace(b"\r\n", b"\n")


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
        ("10.1.2.3:443", 403, "block 10.0.0.0/8"),
        ("167772161:443", 403, "block 10.0.0.0/8"),  # 10.0.0.1
        ("exam.example.nl.evil:443", 403, "default deny"),
    ],
)
def test_connect_is_decided_on_the_host(plain_proxy, target, expected, reason):
    status, body, sock = open_tunnel(plain_proxy, target)
    sock.close()
    assert status == expected, body
    if expected == 403:
        assert "Blocked by the exam's network policy" in body and reason in body


@pytest.mark.parametrize("sni", ["chat.chatgpt.com", "exam.example.nl", "localhost.attacker.net"])
def test_connect_to_an_allowed_host_with_another_tls_name_is_refused(plain_proxy, https_origin, sni):
    before = https_origin.server.handshakes
    status, _, sock = open_tunnel(plain_proxy, f"localhost:{https_origin.port}")
    assert status == 200
    with pytest.raises(OSError):  # ssl.SSLError, EOF or reset: no ServerHello ever comes
        tls_over(sock, sni, https_origin.ca_file).recv(1)
    sock.close()
    assert https_origin.server.handshakes == before  # the origin was never contacted
    assert f"TLS server name {sni} does not match CONNECT host localhost" in plain_proxy.log()


@pytest.mark.parametrize(
    ("url", "host_header", "expected", "reason"),
    [
        ("http://localhost:{http}/page", "localhost:{http}", 200, ""),
        ("http://LocalHost:{http}/case", "LOCALHOST:{http}", 200, ""),
        ("http://2130706433:{http}/decimal", "2130706433:{http}", 200, ""),  # 127.0.0.1 spelled as a number
        ("http://2130706434:{http}/", "2130706434:{http}", 403, "block 127.0.0.2"),
        ("http://0x7f.0.0.2:{http}/", "0x7f.0.0.2:{http}", 403, "block 127.0.0.2"),
        ("http://chat.chatgpt.com/", "chat.chatgpt.com", 403, "block *.chatgpt.com"),
        ("http://exam.example.nl.attacker.net/", "exam.example.nl.attacker.net", 403, "default deny"),
        ("http://docs.python.org/3/", "docs.python.org", 403, "no rule allows path /3/ on docs.python.org"),
        ("http://docs.python.org/3/library/../../x", "docs.python.org", 403, "no rule allows path"),
        # Host header naming another site than the request target: fronting.
        ("http://localhost:{http}/front", "chat.chatgpt.com", 403, "does not match the requested host"),
        ("http://localhost:{http}/front", "localhost@chat.chatgpt.com", 403, "does not match"),
    ],
)
def test_plain_http_is_decided_on_the_url(plain_proxy, http_origin, url, host_header, expected, reason):
    url, host_header = url.format(http=http_origin.port), host_header.format(http=http_origin.port)
    status, answer = raw_get(plain_proxy, url, host_header)
    assert status == expected, answer[:500]
    if expected == 403:
        assert "This site is blocked during the exam" in answer and "Linear Algebra" in answer
        assert reason in answer
    else:
        assert answer.endswith(f"origin http /{url.rsplit('/', 1)[1]}")


def test_userinfo_in_the_url_does_not_hide_the_host(plain_proxy, http_origin):
    served = len(http_origin.seen)
    trick = f"http://localhost:{http_origin.port}@127.0.0.2:{http_origin.port}/userinfo"
    status, answer = raw_get(plain_proxy, trick, f"127.0.0.2:{http_origin.port}")
    assert status in (400, 403), answer[:300]  # mitmproxy refuses the form, or the policy blocks 127.0.0.2
    answer = requests.get(
        "http://exam.example.nl@chat.chatgpt.com/userinfo", proxies={"http": plain_proxy.url}, timeout=10
    )
    assert answer.status_code == 403 and "block *.chatgpt.com" in answer.text
    assert len(http_origin.seen) == served


def test_decisions_land_in_the_store_attributed_to_the_seat(plain_proxy, http_origin, hall):
    exam, _ = hall
    marker = uuid.uuid4().hex
    raw_get(plain_proxy, f"http://localhost:{http_origin.port}/{marker}", f"localhost:{http_origin.port}")
    raw_get(plain_proxy, f"http://chat.chatgpt.com/{marker}", "chat.chatgpt.com")
    rows = wait_for(lambda: len(site_events(exam, marker)) == 2 and site_events(exam, marker), 10)
    assert rows, "site events did not arrive"
    by_host = {row["host"]: row for row in rows}
    assert by_host["localhost"]["decision"] == "allowed"
    assert by_host["localhost"]["reason"] == "allowed by line 2: allow localhost"
    assert by_host["chat.chatgpt.com"]["decision"] == "blocked"
    assert by_host["chat.chatgpt.com"]["url"] == f"http://chat.chatgpt.com/{marker}"
    for row in rows:
        assert row["client_ip"] == "127.0.0.1" and row["exam_id"] == exam.exam_id and row["source"] == "proxy"


def test_events_wait_while_the_hall_server_is_away(plain_proxy, hall):
    exam, server = hall
    marker = uuid.uuid4().hex
    server.stop()
    try:
        status, _ = raw_get(plain_proxy, f"http://chat.chatgpt.com/{marker}", "chat.chatgpt.com")
        assert status == 403  # the proxy keeps deciding while the server is away
        wait_for(lambda: "hall server unreachable" in plain_proxy.log(), 5)
    finally:
        server.start()
    rows = wait_for(lambda: site_events(exam, marker), 15)
    assert [row["decision"] for row in rows] == ["blocked"]


def test_a_changed_policy_is_picked_up_and_a_bad_one_is_refused(plain_proxy, http_origin):
    page = (f"http://localhost:{http_origin.port}/reload", f"localhost:{http_origin.port}")
    assert raw_get(plain_proxy, *page)[0] == 200
    try:
        write_policy(plain_proxy.policy_file, PLAIN_POLICY.replace("allow localhost\n", "block localhost\n"))
        assert wait_for(lambda: raw_get(plain_proxy, *page)[0] == 403, 10), "new policy not picked up"
        write_policy(plain_proxy.policy_file, "allow localhost\nalow exam.example.nl\nallow *.nl\n")
        assert wait_for(lambda: "line 2: unknown action 'alow'" in plain_proxy.log(), 10), plain_proxy.log()[
            -2000:
        ]
        assert "line 3: 'allow *.nl' would allow a whole top-level domain" in plain_proxy.log()
        status, answer = raw_get(plain_proxy, *page)
        assert status == 403 and "block localhost" in answer  # the previous policy stays in force
    finally:
        write_policy(plain_proxy.policy_file, PLAIN_POLICY)
    assert wait_for(lambda: raw_get(plain_proxy, *page)[0] == 200, 10)


# --------------------------------------------------------------------------------- with interception


def _mitm_ca(proxy) -> str:
    return str(proxy.policy_file.parent / "conf" / "mitmproxy-ca-cert.pem")


@pytest.mark.parametrize(
    ("path", "expected", "reason"),
    [
        ("/allowed/page", 200, ""),
        ("/allowed/", 200, ""),
        ("/other", 403, "no rule allows path /other on localhost"),
        ("/allowed/secret/answers", 403, "blocked by line 2: block localhost/allowed/secret"),
        ("/allowed/%2e%2e/other", 403, "no rule allows path"),
        ("/allowed/..%2Fother", 403, "no rule allows path"),
        ("/allowed-evil/", 403, "no rule allows path"),
    ],
)
def test_intercepted_https_is_decided_per_url(intercepting_proxy, https_origin, path, expected, reason):
    answer = requests.get(
        f"https://localhost:{https_origin.port}{path}",
        proxies={"https": intercepting_proxy.url},
        verify=_mitm_ca(intercepting_proxy),  # the laptop trusts the hall's (here: mitmproxy's) CA
        timeout=10,
    )
    assert answer.status_code == expected
    if expected == 200:
        assert answer.text == f"origin https {path}"
    else:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "Linear Algebra &lt;B&gt;" in answer.text and reason in answer.text


def test_intercepted_blocked_host_gets_the_block_page(intercepting_proxy, hall):
    exam, _ = hall
    marker = uuid.uuid4().hex
    answer = requests.get(
        f"https://chat.chatgpt.com/{marker}",
        proxies={"https": intercepting_proxy.url},
        verify=_mitm_ca(intercepting_proxy),
        timeout=10,
    )
    assert answer.status_code == 403 and "block *.chatgpt.com" in answer.text
    rows = wait_for(lambda: site_events(exam, marker), 10)
    assert (
        rows and rows[0]["url"] == f"https://chat.chatgpt.com/{marker}" and rows[0]["decision"] == "blocked"
    )


def test_intercepting_proxy_still_refuses_a_tls_name_other_than_the_connect_host(
    intercepting_proxy, https_origin
):
    status, _, sock = open_tunnel(intercepting_proxy, f"localhost:{https_origin.port}")
    assert status == 200
    with pytest.raises(OSError):
        tls_over(sock, "chat.chatgpt.com", Path(_mitm_ca(intercepting_proxy))).recv(1)
    sock.close()
