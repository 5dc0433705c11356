"""The appliance rule (netpolicy.appliance): decided on resolved addresses; the agent API is the exception."""

from __future__ import annotations

import pytest

from netpolicy.appliance import agent_api, choose_address, is_loopback, is_own_address

OWN = {"10.20.0.1", "192.0.2.7", "fe80::1%2"}
API = [("127.0.0.1", 8443)]


def own(address: str) -> bool:
    return address in OWN


@pytest.mark.parametrize(
    ("host", "port", "addresses", "chosen"),
    [
        ("exam.example.nl", 443, ["203.0.113.5", "2001:db8::5"], "203.0.113.5"),
        ("localhost", 8443, ["::1", "127.0.0.1"], "127.0.0.1"),  # the agent API, not ::1
        ("127.0.0.1", 8443, ["127.0.0.1"], "127.0.0.1"),
        ("api.hall.test", 8443, ["203.0.113.5", "127.0.0.1"], "127.0.0.1"),
        ("::ffff:127.0.0.1", 8443, ["::ffff:127.0.0.1"], "::ffff:127.0.0.1"),  # mapped: the same address
        ("localhost", 6379, ["::1", "127.0.0.1"], None),  # Redis on loopback
        ("sneaky.example", 6379, ["127.0.0.1"], None),  # a name that resolves to loopback is loopback
        ("sneaky.example", 443, ["203.0.113.5", "127.0.0.1"], None),  # no real site resolves here too
        ("127.8.9.10", 8443, ["127.8.9.10"], None),  # all of 127.0.0.0/8
        ("0.0.0.0", 8443, ["0.0.0.0"], None),  # reaches this machine
        ("0.1.2.3", 80, ["0.1.2.3"], None),
        ("::", 8443, ["::"], None),
        ("::ffff:127.0.0.2", 80, ["::ffff:127.0.0.2"], None),
        ("hall.exam.test", 443, ["10.20.0.1"], None),  # the appliance's own name and address
        ("hall.exam.test", 8443, ["10.20.0.1"], None),  # the agent API's port, but not its address
        ("hall.exam.test", 80, ["fe80::1%2"], None),
        ("localhost", 8080, ["127.0.0.1"], None),  # the agent API's address, another port
        ("nowhere.example", 443, [], None),
    ],
)
def test_only_the_agent_api_is_reachable_on_the_appliance(host, port, addresses, chosen):
    destination = choose_address(host, port, addresses, API, own)
    assert destination.address == chosen
    assert destination.decision.allowed is (chosen is not None)
    if chosen is None and addresses:
        assert destination.decision.reason.startswith(
            "appliance rule: the proxy connects to this appliance only for the hall server's agent API "
            "(127.0.0.1:8443), whatever the policy allows; "
        )
    assert destination.agent_api is (chosen is not None and host != "exam.example.nl")


def test_without_a_server_url_nothing_on_the_appliance_is_reachable():
    destination = choose_address("localhost", 8443, ["127.0.0.1"], [], own)
    assert destination.address is None and "agent API ((none configured))" in destination.decision.reason


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("https://127.0.0.1:8443/", ("127.0.0.1", 8443)),
        ("https://hall.example", ("hall.example", 443)),
        ("http://[::1]:8080", ("::1", 8080)),
        ("", None),
    ],
)
def test_the_agent_api_is_the_host_and_port_of_the_server_url(url, endpoint):
    assert agent_api(url) == endpoint


def test_a_server_url_without_host_is_refused():
    with pytest.raises(ValueError, match="names no host"):
        agent_api("http://:8080")


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True), ("0.0.0.0", True)]
    + [("::", True), ("10.0.0.1", False), ("2001:db8::1", False), ("fe80::1%2", False)],
)
def test_loopback_and_unspecified_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_this_machine_knows_its_own_addresses():
    assert is_own_address("127.0.0.1") and is_own_address("127.0.0.53") and is_own_address("::1")
    assert not is_own_address("192.0.2.1")  # TEST-NET-1: held by no machine
    assert not is_own_address("not an address")
    # An address of another interface of this machine: hall.exam.test in test_proxy.py.
