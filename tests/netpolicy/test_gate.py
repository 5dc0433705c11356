"""The proxy's pure decisions (netpolicy.gate) and its command line (netpolicy.proxy_cli): no mitmproxy."""

from __future__ import annotations

import os

import pytest

from invigil.policy import parse_policy
from invigil.seatpolicy import parse_policy_document, seat_policy_text
from netpolicy import proxy_cli
from netpolicy.gate import NotEnrolled, PolicyFile, block_page, decide_request, decide_tls, seat_of

POLICY = parse_policy("allow exam.example.nl\nallow 10.0.0.5\nblock *.chatgpt.com\n")


@pytest.mark.parametrize(
    ("sni", "connect_host", "destination", "allowed", "reason"),
    [
        ("exam.example.nl", "exam.example.nl", None, True, "allowed by line 1"),
        ("EXAM.example.nl.", "exam.example.nl", None, True, "allowed by line 1"),
        (None, "exam.example.nl", None, True, "allowed by line 1"),  # no SNI: the CONNECT host decides
        ("chat.chatgpt.com", "exam.example.nl", None, False, "does not match CONNECT host exam.example.nl"),
        ("exam.example.nl.attacker.net", "exam.example.nl", None, False, "does not match"),
        ("bad..name", "exam.example.nl", None, False, "invalid TLS server name"),
        # transparent mode: no CONNECT host
        ("exam.example.nl", None, "192.0.2.9", True, "allowed by line 1"),
        ("chat.chatgpt.com", None, "10.0.0.5", False, "block *.chatgpt.com"),
        (None, None, "10.0.0.5", True, "allow 10.0.0.5"),
        (None, None, "192.0.2.9", False, "no rule allows 192.0.2.9"),
    ],
)
def test_tls_decisions(sni, connect_host, destination, allowed, reason):
    _, decision = decide_tls(POLICY, sni, connect_host, destination)
    assert decision.allowed is allowed and reason in decision.reason


@pytest.mark.parametrize(
    ("url", "target", "host_header", "allowed", "reason"),
    [
        ("http://exam.example.nl/x", "exam.example.nl", "exam.example.nl:80", True, "allowed"),
        ("http://exam.example.nl/x", "exam.example.nl", None, True, "allowed"),
        ("http://exam.example.nl/x", "exam.example.nl", "chat.chatgpt.com", False, "does not match"),
        ("http://exam.example.nl/x", "exam.example.nl", "exam.example.nl@evil.com", False, "does not match"),
        ("http://exam.example.nl/x", "exam.example.nl", "[zz", False, "invalid Host header"),
        ("http://10.0.0.5/", "10.0.0.5", "167772165", True, "allow 10.0.0.5"),
    ],
)
def test_request_decisions(url, target, host_header, allowed, reason):
    _, decision = decide_request(POLICY, url, target, host_header)
    assert decision.allowed is allowed and reason in decision.reason


SEATS = parse_policy_document(
    seat_policy_text(
        {
            1: ("Algebra", False, "allow exam.example.nl\nallow a.example\n"),
            2: ("Biology <b>", True, "allow exam.example.nl\nallow b.example\n"),
        },
        {"10.0.0.11": 1, "10.0.0.12": 2},
        "",
    )
)
API = ("127.0.0.1", 8443)


@pytest.mark.parametrize(
    ("document", "address", "intercept", "title", "enrolled", "allowed", "blocked"),
    [
        (SEATS, "10.0.0.11", False, "Algebra", True, "a.example", "b.example"),
        (SEATS, "::ffff:10.0.0.11", False, "Algebra", True, "a.example", "b.example"),
        (SEATS, "10.0.0.12", True, "Biology <b>", True, "b.example", "a.example"),
        # In no running exam: nothing but the agent API, with the proxy's own interception option.
        (SEATS, "10.0.0.13", True, "", False, None, "exam.example.nl"),
        (SEATS, "", True, "", False, None, "exam.example.nl"),
        # A plain one-exam policy: the same for everyone, with the proxy's options.
        (
            parse_policy_document("allow a.example\n"),
            "10.0.0.13",
            True,
            "Plain",
            True,
            "a.example",
            "b.example",
        ),
        (None, "10.0.0.11", True, "Plain", True, None, "a.example"),  # not configured yet: deny all
    ],
)
def test_each_address_gets_its_seat(document, address, intercept, title, enrolled, allowed, blocked):
    seat = seat_of(document, address, True, "Plain", API)
    assert (seat.intercept, seat.exam_title, seat.enrolled) == (intercept, title, enrolled)
    if allowed:
        assert seat.policy.decide_host(allowed, 443).allowed
    assert not seat.policy.decide_host(blocked, 443).allowed


@pytest.mark.parametrize(
    ("how", "target", "allowed"),
    [
        ("host", ("127.0.0.1", 8443), True),
        ("host", ("127.0.0.1", None), True),  # a TLS name carries no port: the CONNECT's was checked
        ("host", ("2130706433", 8443), True),  # any spelling of the address
        ("host", ("127.0.0.1", 6379), False),
        ("host", ("exam.example.nl", 443), False),
        ("url", "http://127.0.0.1:8443/api/v1/health", True),
        ("url", "http://127.0.0.1/api/v1/health", False),  # port 80
        ("url", "http://127.0.0.1:8443@evil.example:8443/", False),
        ("url", "http://exam.example.nl/", False),
        ("url", "http://[zz/", False),
    ],
)
def test_a_laptop_in_no_exam_reaches_only_the_agent_api(how, target, allowed):
    policy = NotEnrolled("10.0.0.13", API)
    decision = policy.decide_host(*target) if how == "host" else policy.decide_url(target)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == (
            "this laptop (10.0.0.13) is in no running exam: start the Invigil agent and join the exam first"
        )


def test_without_a_server_url_a_laptop_in_no_exam_reaches_nothing():
    assert not NotEnrolled("10.0.0.13", None).decide_host("127.0.0.1", 8443).allowed


def test_the_block_page_of_a_laptop_in_no_exam_says_what_to_do():
    page = block_page("", "http://a.example/", NotEnrolled("10.0.0.13").reason, enrolled=False)
    assert "Start the Invigil agent and join the exam first" in page and "http://a.example/" in page
    assert "network policy of" not in page


def test_block_page_names_the_exam_and_escapes_everything():
    page = block_page("Algebra <script>", "http://x/<b>", "blocked by line 3: block *.chatgpt.com")
    assert "Algebra &lt;script&gt;" in page and "http://x/&lt;b&gt;" in page and "block *.chatgpt.com" in page


def test_policy_file_reload_keeps_the_old_policy_on_errors(tmp_path):
    path = tmp_path / "exam.policy"
    path.write_text("allow exam.example.nl\n")
    watched = PolicyFile(path)
    watched.load()
    assert watched.reload_if_changed() == (False, None)
    path.write_text("allow exam.example.nl\nblock *.chatgpt.com\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert watched.reload_if_changed() == (True, None) and watched.document.rule_count == 2
    path.write_text("allow exam.example.nl\nalow x.nl\n")
    changed, problem = watched.reload_if_changed()
    assert not changed and problem.startswith("line 2: unknown action 'alow'")
    assert watched.document.rule_count == 2
    path.unlink()
    assert "cannot read" in watched.reload_if_changed()[1]
    assert watched.reload_if_changed() == (False, None)  # reported once


def test_command_line_runs_mitmdump_with_the_addon_and_fixed_settings(tmp_path):
    policy = tmp_path / "exam.policy"
    policy.write_text("allow exam.example.nl\n")
    args = proxy_cli.build_parser().parse_args(
        ["--policy", str(policy), "--mode", "transparent", "--listen-port", "8080", "--intercept", "--", "-q"]
    )
    command = proxy_cli.build_command(args, tmp_path / "mitmdump")
    assert command[:3] == [str(tmp_path / "mitmdump"), "--mode", "transparent"]
    assert ["-s", str(proxy_cli.ADDON)] == command[command.index("-s") : command.index("-s") + 2]
    for setting in (
        "connection_strategy=lazy",
        "http3=false",
        "invigil_intercept=true",
        f"invigil_policy_file={policy}",
    ):
        assert setting in command
    assert command[-1] == "-q" and "mitmweb" not in " ".join(command)


def test_command_line_needs_the_service_token_with_a_server_url(tmp_path, capsys):
    policy = tmp_path / "exam.policy"
    policy.write_text("allow exam.example.nl\n")
    with pytest.raises(SystemExit) as stopped:
        proxy_cli.main(["--policy", str(policy), "--server-url", "http://127.0.0.1:8080", "--print-command"])
    assert stopped.value.code == 2
    assert "--service-token-file is required with --server-url" in capsys.readouterr().err
