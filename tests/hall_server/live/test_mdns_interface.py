"""Discovery on the hall interface by name (the package's INVIGIL_HALL_INTERFACE with INVIGIL_MDNS=on)."""

from __future__ import annotations

import pytest

from hall_server.live.announce import discovery_addresses
from hall_server.settings import load_settings


def test_mdns_on_uses_the_hall_interfaces_addresses() -> None:
    settings = load_settings({"INVIGIL_MDNS": "on", "INVIGIL_HALL_INTERFACE": "lo"})
    assert discovery_addresses(settings) == ["127.0.0.1"]  # the real interface's IPv4 address


def test_mdns_addresses_win_and_mdns_off_is_off() -> None:
    assert discovery_addresses(load_settings({"INVIGIL_MDNS_ADDRESSES": "10.1.0.1"})) == ["10.1.0.1"]
    assert discovery_addresses(load_settings({"INVIGIL_HALL_INTERFACE": "lo"})) == []


def test_a_missing_interface_leaves_discovery_off_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"INVIGIL_MDNS": "on", "INVIGIL_HALL_INTERFACE": "hall9"})
    assert discovery_addresses(settings) == []
    assert "check INVIGIL_HALL_INTERFACE" in caplog.text


def test_mdns_on_without_an_interface_names_the_key() -> None:
    with pytest.raises(ValueError, match="INVIGIL_HALL_INTERFACE=<the interface facing the laptops>"):
        load_settings({"INVIGIL_MDNS": "on"})
