"""Gateway mode: the pure nft/dnsmasq generators, and the real thing — a laptop namespace whose gateway is
an appliance namespace running the nft rules, mitmdump in transparent mode and the hall server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hall_server.store import db
from invigil.seatpolicy import seat_policy_text
from netpolicy.gateway import COUNTERS, Gateway, dnsmasq_config, main, nft_ruleset
from provisioning.certs import make_ca, make_server_cert

from hallnet import enrol_laptop, hall_net, start_hall_server, wait_for
from support import free_port, provision_exam

REPO = Path(__file__).resolve().parents[2]
NFT = shutil.which("nft")
DNSMASQ = shutil.which("dnsmasq")


# --- the generators -----------------------------------------------------------------------------------


def test_ruleset_redirects_web_and_drops_the_rest_with_named_counters() -> None:
    rules = nft_ruleset(Gateway("enp2s0", "10.20.0.1/22", proxy_port=8081, service_tcp_ports=(8443, 9000)))
    assert rules.count("table inet invigil {") == 1 and "delete table inet invigil" in rules
    assert (
        'iifname "enp2s0" fib daddr type != local tcp dport { 80, 443 } counter name web_redirected '
        "redirect to :8081" in rules
    )
    assert "tcp dport 8081 ct status dnat accept" in rules  # only redirected connections reach the proxy
    assert "tcp dport { 8443, 9000 } accept" in rules
    assert "udp dport 443 counter name dropped_quic drop" in rules
    # Loopback is never reached from the hall, whatever net.ipv4.conf.*.route_localnet says.
    assert "ip daddr 127.0.0.0/8 counter name dropped_loopback drop" in rules
    assert "ip6 daddr ::1 counter name dropped_loopback drop" in rules
    assert rules.index("dropped_loopback drop") < rules.index(
        "fib daddr type { local, broadcast, multicast } accept"
    )
    assert "th dport { 53, 853 } counter name dropped_dns drop" in rules
    for name in COUNTERS:
        assert f"counter {name} {{" in rules
    spread = nft_ruleset(Gateway("enp2s0", "10.20.0.1/22", proxy_port=9001, proxy_workers=3))
    assert "redirect to :numgen inc mod 3 map { 0 : 9001, 1 : 9002, 2 : 9003 }" in spread
    assert "tcp dport 9001-9003 ct status dnat accept" in spread
    assert "masquerade" not in rules and "snat" not in rules  # laptops never talk to the outside


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hall_interface": "eth0; flush ruleset"}, "not an interface name"),
        ({"hall_interface": "a-very-long-interface-name"}, "not an interface name"),
        ({"appliance_address": "10.20.0.1"}, "too small"),  # a /32: no room for laptops
        ({"appliance_address": "hall"}, "IPv4 with its prefix"),
        ({"proxy_port": 443}, "must not be 80 or 443"),
        ({"proxy_port": 70000}, "not a port number"),
        ({"proxy_port": 441, "proxy_workers": 3}, "must not be 80 or 443"),
        ({"proxy_workers": 0}, "proxy workers must be 1 to 64"),
        ({"service_tcp_ports": (0,)}, "not a port number"),
        ({"dhcp_lease": "forever"}, "DHCP lease"),
        # A trailing newline would add a line to the generated nftables or dnsmasq configuration.
        ({"hall_interface": "enp2s0\n"}, "not an interface name"),
        ({"dhcp_lease": "4h\n"}, "DHCP lease"),
        ({"upstream_dns": ("dns.google",)}, "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_bad_gateway_settings_are_refused_by_name(kwargs: dict, message: str) -> None:
    settings = {"hall_interface": "enp2s0", "appliance_address": "10.20.0.1/22", **kwargs}
    with pytest.raises(ValueError, match=message):
        Gateway(**settings)


@pytest.mark.parametrize(
    ("address", "first", "last"),
    [("10.20.0.1/22", "10.20.0.11", "10.20.3.254"), ("192.168.7.254/24", "192.168.7.10", "192.168.7.253")],
)
def test_dnsmasq_hands_out_the_appliance_as_router_and_resolver(address: str, first: str, last: str) -> None:
    gw = Gateway("hall0", address, upstream_dns=("192.0.2.53",))
    config = dnsmasq_config(gw).splitlines()
    assert f"dhcp-range={first},{last},{gw.interface.netmask},4h" in config
    assert f"dhcp-option=option:router,{gw.address}" in config
    assert f"dhcp-option=option:dns-server,{gw.address}" in config
    assert {"log-queries", "interface=hall0", "bind-interfaces", "no-resolv", "server=192.0.2.53"} <= set(
        config
    )
    assert "address=/use-application-dns.net/" in config  # Firefox's DoH canary: no answer, no DoH


@pytest.mark.skipif(NFT is None, reason="nft is not installed (Debian: apt-get install -y nftables)")
def test_generated_ruleset_passes_nft_check(tmp_path: Path) -> None:
    path = tmp_path / "gateway.nft"
    path.write_text(nft_ruleset(Gateway("enp2s0", "10.20.0.1/22")))
    checked = subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(DNSMASQ is None, reason="dnsmasq is not installed (Debian: dnsmasq-base)")
def test_generated_dnsmasq_config_passes_dnsmasq_test(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.conf"
    path.write_text(dnsmasq_config(Gateway("hall0", "10.20.0.1/22", dns_log=str(tmp_path / "dns.log"))))
    checked = subprocess.run([DNSMASQ, "--test", "-C", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr, checked.stderr


def test_command_line_prints_and_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--hall-interface", "hall0", "--appliance-address", "10.9.0.1/24", "--print-nft"])
    assert "table inet invigil {" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--hall-interface", "hall0", "--appliance-address", "10.9.0.1", "--print-dnsmasq"])
    assert exit_info.value.code == 2 and "too small" in capsys.readouterr().err


# --- the real gateway in namespaces -------------------------------------------------------------------

ORIGIN = """
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"allowed site {self.path}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""

LAPTOP = """
import json, socket, ssl, sys
ca, allowed_ip, blocked_ip = sys.argv[1:4]
results = {}
def fetch(name, ip):
    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection((ip, 443), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                request = f"GET /exam HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n"
                tls.sendall(request.encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        return data.decode().rsplit("\\r\\n", 1)[-1]
    except (OSError, ssl.SSLError) as exc:
        return f"refused: {type(exc).__name__}"
results["allowed"] = fetch("allowed.exam.test", allowed_ip)
results["blocked"] = fetch("chat.blocked.test", blocked_ip)
results["loopback"] = fetch("localhost", allowed_ip)  # allowed by the policy, but it is the appliance
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # QUIC's port
    for _ in range(3):
        udp.sendto(b"\\xc0quic-initial", (allowed_ip, 443))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # a resolver that is not the appliance
    udp.sendto(bytes.fromhex("1234010000010000000000000000010001"), (blocked_ip, 53))
print(json.dumps(results))
"""


LOOPBACK_SERVICE = """
import socket, sys
server = socket.create_server(("127.0.0.1", 443))
while True:
    conn, _ = server.accept()
    print("connected", flush=True)
    conn.close()
"""


def counters(hn, ns: str) -> dict[str, int]:
    listing = json.loads(hn.run(ns, "nft", "-j", "list", "counters", "table", "inet", "invigil"))
    return {
        item["counter"]["name"]: item["counter"]["packets"]
        for item in listing["nftables"]
        if "counter" in item
    }


@pytest.mark.skipif(NFT is None, reason="nft is not installed (Debian: apt-get install -y nftables)")
@pytest.mark.parametrize("policy_kind", ["plain", "per-seat"])
def test_laptop_behind_the_appliance_reaches_allowed_site_only(
    tmp_path: Path, proxy_factory, policy_kind: str
) -> None:
    """``proxy_factory`` only makes sure .venv-proxy exists. ``per-seat``: the same policy reaches the
    transparent proxy as the laptop's exam's in the hall server's per-seat file."""
    exam = provision_exam(tmp_path / "data")
    ca = make_ca("gateway test")
    issued = make_server_cert(ca, ["allowed.exam.test"])
    for name, pem in (("ca.pem", ca.cert_pem), ("cert.pem", issued.cert_pem), ("key.pem", issued.key_pem)):
        (tmp_path / name).write_bytes(pem)
    policy = tmp_path / "exam.policy"
    policy_text = "allow allowed.exam.test\nallow localhost\nblock *.blocked.test\n"
    with hall_net() as hn:
        if policy_kind == "plain":
            policy.write_text(policy_text)
        else:
            exams_ = {exam.exam_id: ("Gateway", False, policy_text)}
            policy.write_text(seat_policy_text(exams_, {hn.laptop_ip: exam.exam_id}, ""))
        allowed_ip, blocked_ip = hn.internet_ip, hn.internet_ip.rsplit(".", 1)[0] + ".99"
        hn.hosts(hn.appliance_ns, {"allowed.exam.test": allowed_ip})  # the proxy resolves the SNI name
        port, proxy_port = free_port(), 8081
        gateway = Gateway(
            "vhall",
            f"{hn.appliance_ip}/24",
            proxy_port=proxy_port,
            proxy_workers=2,
            service_tcp_ports=(port,),
        )
        rules = tmp_path / "gateway.nft"
        rules.write_text(nft_ruleset(gateway))
        hn.run(hn.appliance_ns, "nft", "-f", str(rules))
        server_url = start_hall_server(hn, exam.data_dir, port)
        loopback_log = tmp_path / "loopback-service.log"
        hn.start(hn.appliance_ns, [sys.executable, "-c", LOOPBACK_SERVICE], loopback_log)
        hn.start(
            hn.internet_ns,
            [sys.executable, "-c", ORIGIN, allowed_ip, str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")],
            tmp_path / "origin.log",
        )
        logs = [tmp_path / f"mitmdump-{worker_port}.log" for worker_port in gateway.proxy_ports]
        for worker_port, log in zip(gateway.proxy_ports, logs, strict=True):  # two workers, as on 2 cores
            hn.start(
                hn.appliance_ns,
                [
                    str(REPO / ".venv" / "bin" / "invigil-proxy"),
                    *("--policy", str(policy), "--mode", "transparent"),
                    *("--listen-host", hn.appliance_ip, "--listen-port", str(worker_port)),
                    *("--server-url", f"http://127.0.0.1:{port}", "--confdir", str(tmp_path / "conf")),
                    *("--service-token-file", str(exam.data_dir / "service.token")),
                    "--",
                    *("--set", f"ssl_verify_upstream_trusted_ca={tmp_path / 'ca.pem'}"),
                ],
                log,
            )
        for log in logs:
            assert wait_for(
                lambda log=log: "proxy listening" in log.read_text(errors="replace").lower(), 30
            ), log.read_text()
        enrol_laptop(hn, server_url, exam.students[0], exam.join_code)

        results = json.loads(
            hn.python(hn.laptop_ns, LAPTOP, str(tmp_path / "ca.pem"), allowed_ip, blocked_ip, timeout=60)
        )
        assert results["allowed"] == "allowed site /exam", [log.read_text()[-2000:] for log in logs]
        assert results["blocked"].startswith("refused"), results
        assert results["loopback"].startswith("refused"), results
        assert "connected" not in loopback_log.read_text()  # the appliance's own port 443 was never reached
        # nft spread the connections over the two workers (numgen inc): each decided some. The TLS name
        # localhost is allowed by the policy, then refused before the proxy connects: two lines.
        decisions = [
            [line for line in log.read_text().splitlines() if f" {hn.laptop_ip} " in line] for log in logs
        ]
        assert sum(len(lines) for lines in decisions) == 4 and all(decisions), decisions

        def stored() -> list[tuple]:
            store = db.connect(exam.data_dir)
            try:
                return store.execute(
                    "SELECT unseal(exam_id, host) AS open_host, decision, unseal(exam_id, client_ip), "
                    "session_id, source, reason FROM site_event ORDER BY open_host, decision"
                ).fetchall()
            finally:
                store.close()

        events = wait_for(lambda: len(stored()) >= 4 and stored(), 15)
        session_id = stored_session(exam.data_dir, hn.laptop_ip)
        assert sorted(event[:5] for event in events) == [
            ("allowed.exam.test", "allowed", hn.laptop_ip, session_id, "proxy"),
            ("chat.blocked.test", "blocked", hn.laptop_ip, session_id, "proxy"),
            ("localhost", "allowed", hn.laptop_ip, session_id, "proxy"),
            ("localhost", "blocked", hn.laptop_ip, session_id, "proxy"),
        ]
        refusal = next(event[5] for event in events if event[0] == "localhost" and event[1] == "blocked")
        assert refusal.startswith(
            f"appliance rule: the proxy connects to this appliance only for the hall "
            f"server's agent API (127.0.0.1:{port})"
        )
        seen = counters(hn, hn.appliance_ns)
        assert seen["web_redirected"] >= 2 and seen["dropped_quic"] == 3 and seen["dropped_dns"] == 1, seen
        assert seen["dropped_inbound"] == 0


def stored_session(data_dir: Path, client_ip: str) -> int:
    store = db.connect(data_dir)
    try:
        return store.execute(
            "SELECT id FROM agent_session WHERE unseal(exam_id, client_ip) = ?", [client_ip]
        ).fetchone()[0]
    finally:
        store.close()
