"""The sentinel: pure parsing and judging on packets scapy builds, the CLI on pcaps scapy wrote, the kernel
filter on those pcaps, and one live capture on a veth inside namespaces this test creates."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from hall_server.store import db
from invigil.policy import parse_policy
from invigil.seatpolicy import SeatPolicy, parse_policy_document, seat_policy_text
from netpolicy.sentinel import BPF_FILTER, Report, Sentinel, Settings, client_hello_sni, dns_query_name

from hallnet import enrol_laptop, hall_net, start_hall_server, wait_for
from support import free_port, provision_exam

BIN = Path(sys.executable).parent
LAPTOP, APPLIANCE, OUTSIDE = "10.30.0.20", "10.30.0.1", "203.0.113.7"
POLICY = parse_policy("allow exam.example.nl\nallow *.uni.example\nblock *.chatgpt.com\n")
SETTINGS = Settings(appliance=frozenset({APPLIANCE}))
GATEWAY = Settings(appliance=frozenset({APPLIANCE}), proxied_ports=frozenset({80, 443}))


def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello from OpenSSL (no SNI for None or an IP address, as browsers do)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def dns(name: str, dst: str = APPLIANCE, src: str = LAPTOP) -> Packet:
    return (
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=src, dst=dst)
        / UDP(sport=40000, dport=53)
        / DNS(rd=1, qd=DNSQR(qname=name))
    )


def tls(name: str | None, dst: str = OUTSIDE, port: int = 443, src: str = LAPTOP) -> Packet:
    segment = TCP(sport=40001, dport=port, flags="PA", seq=1, ack=1) / Raw(client_hello(name))
    return Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01") / IP(src=src, dst=dst) / segment


def syn(port: int, dst: str = OUTSIDE) -> Packet:
    return (
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=dst)
        / TCP(sport=40002, dport=port, flags="S")
    )


def udp(port: int, dst: str = OUTSIDE) -> Packet:
    return (
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=dst)
        / UDP(sport=40003, dport=port)
        / Raw(b"\x01\x00\x00\x00vpn")
    )


def judge(packet: Packet, settings: Settings = SETTINGS) -> list[Report]:
    found: list[Report] = []
    Sentinel(lambda: SeatPolicy(single=POLICY), settings, lambda report, at: found.append(report)).handle(
        packet
    )
    return found


CASES = [
    (
        "dns: blocked host",
        dns("chat.chatgpt.com"),
        SETTINGS,
        ("dns", "chat.chatgpt.com", "block *.chatgpt.com"),
    ),
    ("dns: outside the policy", dns("Evil.Example."), SETTINGS, ("dns", "evil.example", "default deny")),
    ("dns: allowed host", dns("exam.example.nl"), SETTINGS, None),
    ("dns: reverse lookup", dns("1.0.30.10.in-addr.arpa"), SETTINGS, None),
    (
        "dns: other resolver",
        dns("exam.example.nl", "8.8.8.8"),
        SETTINGS,
        ("sentinel", "exam.example.nl", "not the hall's resolver"),
    ),
    ("dns: DoH resolver name", dns("dns.google"), SETTINGS, ("sentinel", "dns.google", "DNS-over-HTTPS")),
    ("dns: from the appliance", dns("evil.example", OUTSIDE, APPLIANCE), SETTINGS, None),
    (
        "dns over tcp",
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=APPLIANCE)
        / TCP(dport=53, flags="PA")
        / Raw(b"\x00\x1d" + bytes(DNS(qd=DNSQR(qname="evil.example")))),
        SETTINGS,
        ("dns", "evil.example", "default deny"),
    ),
    (
        "dns ipv6",
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IPv6(src="fd00::20", dst="fd00::1")
        / UDP(dport=53)
        / DNS(qd=DNSQR(qname="evil.example")),
        SETTINGS,
        ("sentinel", "evil.example", "not the hall's resolver"),
    ),
    ("tls: allowed host around the proxy", tls("exam.example.nl"), SETTINGS, None),
    (
        "tls: blocked host around the proxy",
        tls("chat.chatgpt.com"),
        SETTINGS,
        ("sentinel", "chat.chatgpt.com", "around the proxy"),
    ),
    ("tls: to the proxy", tls("chat.chatgpt.com", APPLIANCE, 3128), SETTINGS, None),
    ("tls: port the gateway redirects", tls("chat.chatgpt.com"), GATEWAY, None),
    ("tls: no SNI, direct IP", tls(None, port=8443), SETTINGS, ("sentinel", OUTSIDE, "direct IP connection")),
    (
        "tls: IP literal",
        tls("198.51.100.4", "198.51.100.4"),
        SETTINGS,
        ("sentinel", "198.51.100.4", "direct IP"),
    ),
    (
        "tls: DoH by name",
        tls("cloudflare-dns.com", "104.16.248.249"),
        SETTINGS,
        ("sentinel", "cloudflare-dns.com", "DNS-over-HTTPS"),
    ),
    ("tls: DoH by address", tls(None, "1.1.1.1"), SETTINGS, ("sentinel", "1.1.1.1", "DNS-over-HTTPS")),
    ("tls: DoT", tls("dns.example", port=853), SETTINGS, ("sentinel", "dns.example", "DNS-over-TLS")),
    (
        "tls ipv6",
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IPv6(src="fd00::20", dst="2001:db8::7")
        / TCP(dport=443, flags="PA")
        / Raw(client_hello("chat.chatgpt.com")),
        SETTINGS,
        ("sentinel", "chat.chatgpt.com", "[2001:db8::7]:443"),
    ),
    ("syn: DoT", syn(853), GATEWAY, ("sentinel", OUTSIDE, "DNS-over-TLS connection")),
    ("syn: OpenVPN tcp", syn(1194), GATEWAY, ("sentinel", OUTSIDE, "OpenVPN, TCP 1194")),
    ("syn: plain https", syn(443), GATEWAY, None),
    ("udp: WireGuard", udp(51820), GATEWAY, ("sentinel", OUTSIDE, "WireGuard, UDP 51820")),
    ("udp: IPsec NAT-T", udp(4500), GATEWAY, ("sentinel", OUTSIDE, "IPsec NAT-T")),
    ("udp: OpenVPN to the appliance", udp(1194, APPLIANCE), GATEWAY, None),
    (
        "http data is not a ClientHello",
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=OUTSIDE)
        / TCP(dport=8443, flags="PA")
        / Raw(b"GET / HTTP/1.1\r\n"),
        SETTINGS,
        None,
    ),
]


@pytest.mark.parametrize(
    ("packet", "settings", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_packet_is_judged(packet: Packet, settings: Settings, expected: tuple | None) -> None:
    found = judge(packet, settings)
    if expected is None:
        assert found == []
        return
    source, host, reason = expected
    assert len(found) == 1, found
    assert (found[0].source, found[0].host) == (source, host) and reason in found[0].reason, found[0]
    assert found[0].client_ip in (LAPTOP, "fd00::20")


def test_client_hello_parser_reads_openssl_and_refuses_junk() -> None:
    hello = client_hello("Exam.Example.NL")
    assert client_hello_sni(hello) == (True, "exam.example.nl", True)
    assert client_hello_sni(client_hello(None)) == (True, None, True)
    # Cut before the extensions end: a ClientHello spread over segments. No SNI seen is not "no SNI".
    cut = client_hello(None)[:120]
    assert client_hello_sni(cut) == (True, None, False)
    assert client_hello_sni(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")[0] is False  # ServerHello
    assert client_hello_sni(b"GET / HTTP/1.1\r\n\r\n")[0] is False
    assert client_hello_sni(b"\x16\x03\x01\xff\xff\x01" + b"\xff" * 50) == (True, None, False)


def test_dns_parser_reads_queries_only() -> None:
    assert dns_query_name(bytes(DNS(qd=DNSQR(qname="Exam.Example.NL.")))) == "exam.example.nl"
    answer = DNS(qr=1, qd=DNSQR(qname="exam.example.nl"), an=DNSRR(rrname="exam.example.nl", rdata="1.2.3.4"))
    assert dns_query_name(bytes(answer)) is None
    assert dns_query_name(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab") is None  # truncated
    assert dns_query_name(b"\x00") is None


def test_a_cut_client_hello_without_sni_is_not_called_a_direct_connection() -> None:
    packet = (
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=OUTSIDE)
        / TCP(dport=443, flags="A")
        / Raw(client_hello(None)[:120])
    )
    assert judge(packet) == []


def test_each_laptop_is_judged_by_its_own_exams_policy() -> None:
    seats = parse_policy_document(
        seat_policy_text(
            {1: ("A", False, "allow a.example\n"), 2: ("B", False, "allow b.example\n")},
            {LAPTOP: 1, "10.30.0.21": 2},
            "",
        )
    )
    found: list[Report] = []
    sentinel = Sentinel(lambda: seats, SETTINGS, lambda report, at: found.append(report))
    for index, (name, src) in enumerate(
        [
            ("a.example", LAPTOP),
            ("b.example", LAPTOP),
            ("a.example", "10.30.0.21"),
            ("b.example", "10.30.0.21"),
        ]
        + [("a.example", "10.30.0.22")]  # in no running exam: nothing is inside its policy
    ):
        packet = dns(name, src=src)
        packet.time = 1_700_000_000 + index
        sentinel.handle(packet)
    assert [(r.client_ip, r.host, r.source) for r in found] == [
        (LAPTOP, "b.example", "dns"),
        ("10.30.0.21", "a.example", "dns"),
        ("10.30.0.22", "a.example", "dns"),
    ]
    # TLS around the proxy is judged the same way.
    found.clear()
    sentinel.handle(tls("a.example", src=LAPTOP))
    sentinel.handle(tls("a.example", src="10.30.0.21"))
    assert [(r.client_ip, r.host) for r in found] == [("10.30.0.21", "a.example")]


def test_repeats_are_reported_once_a_minute() -> None:
    found: list[Report] = []
    sentinel = Sentinel(lambda: SeatPolicy(single=POLICY), SETTINGS, lambda report, at: found.append(report))
    for offset in (0, 10, 59, 61, 70):
        packet = dns("evil.example")
        packet.time = 1_700_000_000 + offset
        sentinel.handle(packet)
    other = dns("evil.example", src="10.30.0.21")
    other.time = 1_700_000_005
    sentinel.handle(other)
    assert [(r.client_ip, r.host) for r in found] == [
        (LAPTOP, "evil.example"),
        (LAPTOP, "evil.example"),
        ("10.30.0.21", "evil.example"),
    ]


def all_cases_pcap(path: Path) -> Path:
    packets = [case[1] for case in CASES]
    packets.append(
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=APPLIANCE, dst=LAPTOP)
        / UDP(sport=53, dport=40000)
        / DNS(qr=1, qd=DNSQR(qname="x.example"))
    )
    packets.append(
        Ether(src="02:00:00:00:00:20", dst="02:00:00:00:00:01")
        / IP(src=LAPTOP, dst=OUTSIDE)
        / TCP(dport=443, flags="PA")
        / Raw(b"\x17\x03\x03" + b"\x00" * 40)
    )
    wrpcap(str(path), packets)
    return path


def test_kernel_filter_passes_what_the_sentinel_reads(tmp_path: Path) -> None:
    """The BPF expression, compiled by libpcap and run over the pcap the way the kernel runs it."""
    pcap = all_cases_pcap(tmp_path / "all.pcap")
    passed = subprocess.run(
        ["tcpdump", "-nn", "-r", str(pcap), BPF_FILTER], capture_output=True, text=True, check=False
    )
    if passed.returncode != 0 and "not found" in passed.stderr:
        pytest.skip("tcpdump is not installed")
    lines = passed.stdout.splitlines()
    # Everything but the SYN to 443, the HTTP data, the DNS answer and the TLS application data.
    assert len(lines) == len(CASES) - 2, passed.stdout
    assert not any(line.split(" > ")[0].endswith(f"{APPLIANCE}.53") for line in lines)  # the answer


def test_command_line_on_a_pcap_prints_events(tmp_path: Path) -> None:
    pcap = all_cases_pcap(tmp_path / "all.pcap")
    policy = tmp_path / "exam.policy"
    policy.write_text(POLICY.to_text())
    done = subprocess.run(
        [
            str(BIN / "invigil-sentinel"),
            "--read-pcap",
            str(pcap),
            "--policy-file",
            str(policy),
            "--proxy-address",
            APPLIANCE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [c for c in CASES if c[3] is not None and c[2] is SETTINGS]
    assert {(e["source"], e["host"]) for e in events} >= {(c[3][0], c[3][1]) for c in expected}
    assert all(e["decision"] == "blocked" and e["client_ip"] in (LAPTOP, "fd00::20") for e in events)
    assert "packet(s) read" in done.stderr


def test_command_line_refuses_a_bad_policy_and_a_missing_pcap(tmp_path: Path) -> None:
    policy = tmp_path / "exam.policy"
    policy.write_text("alow exam.example.nl\n")
    done = subprocess.run(
        [str(BIN / "invigil-sentinel"), "--read-pcap", "x.pcap", "--policy-file", str(policy)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "line 1: unknown action 'alow'" in done.stderr
    policy.write_text("allow exam.example.nl\n")
    done = subprocess.run(
        [
            str(BIN / "invigil-sentinel"),
            "--read-pcap",
            str(tmp_path / "none.pcap"),
            "--policy-file",
            str(policy),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "cannot read" in done.stderr


def test_command_line_refuses_a_server_url_without_the_service_token(tmp_path: Path) -> None:
    policy = tmp_path / "exam.policy"
    policy.write_text("allow exam.example.nl\n")
    command = [str(BIN / "invigil-sentinel"), "--read-pcap", "x.pcap", "--policy-file", str(policy)]
    done = subprocess.run(
        [*command, "--server-url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--service-token-file is required with --server-url" in done.stderr
    assert "<data_dir>/service.token" in done.stderr
    (tmp_path / "empty.token").write_text("\n")
    done = subprocess.run(
        [
            *command,
            "--server-url",
            "http://127.0.0.1:9",
            "--service-token-file",
            str(tmp_path / "empty.token"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "is empty" in done.stderr


# --- one live capture on a veth inside our own namespaces ------------------------------------------------

LAPTOP_SENDS = """
import socket, ssl, sys
appliance, outside = sys.argv[1:3]
query = bytes.fromhex("432101000001000000000000") + b"\\x04chat\\x07chatgpt\\x03com\\x00\\x00\\x01\\x00\\x01"
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.sendto(query, (appliance, 53))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
with socket.create_connection((outside, 443), timeout=5) as raw:
    try:
        context.wrap_socket(raw, server_hostname="exam-notes.example").close()
    except (OSError, ssl.SSLError):
        pass  # the listener never answers the handshake: the ClientHello is what counts
"""

LISTENER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 443))
deadline = time.monotonic() + 60
server.settimeout(1)
while time.monotonic() < deadline:
    try:
        conn, _ = server.accept()
        time.sleep(0.5)
        conn.close()
    except TimeoutError:
        pass
"""


def test_live_capture_on_the_hall_veth_reaches_the_hall_server(tmp_path: Path) -> None:
    exam = provision_exam(tmp_path / "data")
    policy = tmp_path / "exam.policy"
    policy.write_text("allow exam.example.nl\nblock *.chatgpt.com\n")
    with hall_net() as hn:
        port = free_port()
        server_url = start_hall_server(hn, exam.data_dir, port)
        enrol_laptop(hn, server_url, exam.students[1], exam.join_code)
        hn.start(hn.internet_ns, [sys.executable, "-c", LISTENER, hn.internet_ip], tmp_path / "listener.log")
        sentinel_log = tmp_path / "sentinel.log"
        hn.start(
            hn.appliance_ns,
            [
                str(BIN / "invigil-sentinel"),
                *("--interface", "vhall", "--policy-file", str(policy)),
                *("--proxy-address", hn.appliance_ip, "--server-url", f"http://127.0.0.1:{port}"),
                *("--service-token-file", str(exam.data_dir / "service.token")),
            ],
            sentinel_log,
        )
        assert wait_for(lambda: "watching vhall" in sentinel_log.read_text(errors="replace"), 30), (
            sentinel_log.read_text()
        )
        # The appliance forwards the laptop's TCP to the listener (no gateway rules in this test).
        hn.run(hn.appliance_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        hn.run(hn.internet_ns, "ip", "route", "add", hn.laptop_ip, "via", hn.uplink_ip)
        hn.python(hn.laptop_ns, LAPTOP_SENDS, hn.appliance_ip, hn.internet_ip)

        def stored() -> list[tuple]:
            store = db.connect(exam.data_dir)
            try:
                return store.execute(
                    "SELECT e.source, unseal(e.exam_id, e.host), unseal(e.exam_id, e.client_ip), "
                    "r.student_number, o.kind FROM site_event e "
                    "JOIN agent_session s ON s.id = e.session_id JOIN roster r ON r.id = s.roster_id "
                    "LEFT JOIN observation o ON o.session_id = e.session_id "
                    "AND json_extract(unseal(o.exam_id, o.detail), '$.host') = unseal(e.exam_id, e.host) "
                    "ORDER BY e.source"
                ).fetchall()
            finally:
                store.close()

        rows = wait_for(lambda: len(stored()) >= 2 and stored(), 20)
        assert rows == [
            ("dns", "chat.chatgpt.com", hn.laptop_ip, exam.students[1], "blocked_site"),
            ("sentinel", "exam-notes.example", hn.laptop_ip, exam.students[1], "bypass_site"),
        ], sentinel_log.read_text()


def test_a_packet_scapy_cannot_make_sense_of_is_counted_not_fatal() -> None:
    class Broken:  # what a broken dissection could hand the callback
        time = 0.0

        def getlayer(self, layer: object) -> None:
            raise ValueError("truncated header")

    found: list[Report] = []
    sentinel = Sentinel(lambda: SeatPolicy(single=POLICY), SETTINGS, lambda report, at: found.append(report))
    sentinel.handle(Broken())
    sentinel.handle(dns("evil.example"))
    assert sentinel.malformed == 1 and [r.host for r in found] == ["evil.example"]
