"""A second network path: which interfaces count (tables), what the checker sends (a category and a count,
never a name), and the real sockets behind the probe on loopback."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from itertools import count

import pytest

from agent.devices import DeviceChecker, load_categories
from agent.netpaths import PathProbe, is_virtual, local_address_towards, path_category, second_paths
from invigil import payloads
from invigil import protocol as p

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
HALL = "10.40.0.23"
WIFI = {"wlan0": [HALL, "fe80::1%wlan0"]}


@pytest.mark.parametrize(
    "extra, up, expected",
    [
        ({}, {}, {}),  # only the hall's Wi-Fi
        ({"usb0": ["192.168.42.129"]}, {}, {"tethering": 1}),  # Android USB tethering
        ({"enx00e04c6812ab": ["172.20.10.2"]}, {}, {"second_path": 1}),  # a USB Ethernet adapter
        ({"iPhone USB": ["172.20.10.3"]}, {}, {"tethering": 1}),  # Windows with an iPhone
        ({"bnep0": ["192.168.44.2"]}, {}, {"tethering": 1}),  # Bluetooth PAN
        ({"wwan0": ["100.64.3.7"]}, {}, {"mobile": 1}),
        ({"Mobile broadband": ["100.64.3.8"]}, {}, {"mobile": 1}),
        ({"wlx7cdd90aabbcc": ["192.168.43.12"]}, {}, {"second_path": 1}),  # a second Wi-Fi on a hotspot
        ({"usb0": ["192.168.42.129"]}, {"usb0": False}, {}),  # plugged in but down
        ({"usb0": ["169.254.12.9"]}, {}, {}),  # no network behind it: a link-local address only
        ({"usb0": ["fe80::2%usb0"]}, {}, {}),
        ({"usb0": ["2a02:a44:1::5"]}, {}, {"tethering": 1}),  # a global IPv6 address counts
        ({"docker0": ["172.17.0.1"], "virbr0": ["192.168.122.1"], "vboxnet0": ["192.168.56.1"]}, {}, {}),
        ({"vEthernet (WSL)": ["172.28.0.1"], "VMware Network Adapter VMnet8": ["192.168.80.1"]}, {}, {}),
        ({"lo": ["127.0.0.1", "::1"], "awdl0": ["fe80::3"]}, {}, {}),
        ({"eth0": [HALL]}, {}, {}),  # the hall address itself
        (
            {"usb0": ["192.168.42.129"], "wwan0": ["100.64.3.7"], "eth1": ["10.9.0.4"]},
            {},
            {"mobile": 1, "second_path": 1, "tethering": 1},
        ),  # fmt: skip
    ],
)
def test_which_interfaces_are_another_way_out(extra, up, expected):
    addresses = {**WIFI, **extra}
    states = {name: True for name in addresses} | up
    assert second_paths(addresses, states, HALL) == expected


def test_nothing_is_told_apart_without_the_hall_address():
    assert second_paths({**WIFI, "usb0": ["192.168.42.129"]}, {"wlan0": True, "usb0": True}, None) == {}


def test_a_second_interface_on_the_hall_network_is_not_a_way_around():
    addresses = {**WIFI, "eth0": ["10.40.1.7"]}
    up = {"wlan0": True, "eth0": True}
    assert second_paths(addresses, up, HALL, reaches_hall=lambda a: a == "10.40.1.7") == {}
    assert second_paths(addresses, up, HALL, reaches_hall=lambda a: False) == {"second_path": 1}


def test_vpn_and_tunnel_interfaces_are_left_to_their_own_category():
    addresses = {**WIFI, "wg0": ["10.66.0.2"]}
    assert second_paths(addresses, {"wlan0": True, "wg0": True}, HALL, skip={"wg0"}) == {}


@pytest.mark.parametrize(
    "name, category",
    [
        ("usb0", "tethering"),
        ("rndis0", "tethering"),
        ("Remote NDIS Compatible Device", "tethering"),
        ("wwp0s20f0u6", "mobile"),
        ("Cellular", "mobile"),
        ("Mobiel breedband", "mobile"),
        ("eth1", "second_path"),
        ("Wi-Fi 2", "second_path"),
    ],  # fmt: skip
)
def test_the_category_comes_from_the_interface_kind(name, category):
    assert path_category(name) == category
    assert category in p.SECOND_PATH_CATEGORIES
    assert not is_virtual(name)


def test_the_checker_sends_a_category_and_a_count_never_a_name():
    ids = count()
    paths: dict[str, int] = {}
    seen_skip: list[set[str]] = []

    def list_paths(up, skip):
        seen_skip.append(set(skip))
        return dict(paths)

    interfaces = {"wlan0": True, "wg0": True}
    checker = DeviceChecker(
        load_categories(),
        new_id=lambda: f"event-{next(ids):04d}",
        list_interfaces=lambda: interfaces,
        list_processes=list,
        list_paths=list_paths,
    )
    first = checker.check(NOW)
    assert [e.detail["category"] for e in first] == ["vpn"]
    assert seen_skip[-1] == {"wg0"}  # the VPN is not counted twice
    paths["tethering"] = 1
    assert [(e.kind, e.detail) for e in checker.check(NOW)] == [
        ("network_interface", {"category": "tethering", "count": 1, "state": "present"})
    ]
    assert checker.check(NOW) == []
    paths["tethering"] = 2
    assert [e.detail["count"] for e in checker.check(NOW)] == [2]
    paths.clear()
    ended = checker.check(NOW)
    assert [(e.kind, e.detail) for e in ended] == [
        ("network_interface", {"category": "tethering", "count": 0, "state": "ended"})
    ]
    for event in ended:
        payloads.parse_device_events({"events": [event.as_wire()]})


def test_the_probe_finds_the_address_towards_the_hall_and_tries_the_hall_from_an_address():
    """Real sockets on loopback: the UDP 'connect' sends nothing; the TCP try reaches a listening server
    and not a closed port, and is asked once per address."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert local_address_towards("127.0.0.1", port) == "127.0.0.1"
        probe = PathProbe("127.0.0.1", port)
        assert probe.hall_address() == "127.0.0.1"
        assert probe.reaches_hall("127.0.0.1") is True
        assert PathProbe("127.0.0.1", port, connect=False).reaches_hall("127.0.0.1") is False
    closed = PathProbe("127.0.0.1", port)
    assert closed.reaches_hall("127.0.0.1") is False
    assert closed._reaches == {"127.0.0.1": False}
    # psutil's real interface list: loopback only counts as nothing.
    assert PathProbe("127.0.0.1", port, connect=False).paths({"lo": True}) == {}
