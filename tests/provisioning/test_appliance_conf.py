"""``invigil-config``: the shipped /etc/invigil/invigil.conf passes; each broken key fails the unit that needs
it with a line naming the key and what to write; a missing interface fails the sentinel, not the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.appliance_conf import check

CONF = Path(__file__).resolve().parents[2] / "packaging" / "invigil.conf"
CONFIG = Path(sys.executable).parent / "invigil-config"


def shipped() -> dict[str, str]:
    values = {}
    for line in CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


def test_the_shipped_config_is_good_for_every_unit() -> None:
    values = {**shipped(), "INVIGIL_HALL_INTERFACE": "lo"}  # an interface every machine has
    for unit in ("server", "proxy", "sentinel", "retention"):
        assert check(unit, values) == [], unit
    assert check("gateway", {**values, "INVIGIL_MODE": "gateway"}) == []


@pytest.mark.parametrize(
    ("key", "value", "advice"),
    [
        ("INVIGIL_MODE", "proxi", "write INVIGIL_MODE=proxy"),
        ("INVIGIL_API_PORT", "84430", "write INVIGIL_API_PORT=8443"),
        ("INVIGIL_PROXY_PORT", "", "write INVIGIL_PROXY_PORT=8080"),
        ("INVIGIL_BIND_ADDRESS", "everywhere", "write INVIGIL_BIND_ADDRESS=0.0.0.0"),
        ("INVIGIL_DATA_DIR", "/srv/invigil", "write INVIGIL_DATA_DIR=/var/lib/invigil"),
        ("INVIGIL_MDNS", "maybe", "write INVIGIL_MDNS=on"),
        ("INVIGIL_HALL_INTERFACE", "", "write INVIGIL_HALL_INTERFACE=enp3s0"),
    ],
)
def test_a_bad_key_is_named_with_what_to_write(key: str, value: str, advice: str) -> None:
    problems = check("server", {**shipped(), key: value})
    assert len(problems) == 1 and problems[0].startswith(key) and advice in problems[0], problems


def test_a_bad_server_setting_names_its_variable() -> None:
    problems = check("server", {**shipped(), "INVIGIL_SEAT_OFFLINE_S": "soon"})
    assert problems and "INVIGIL_SEAT_OFFLINE_S" in problems[0] and "whole number" in problems[0]


def test_a_missing_interface_fails_the_sentinel_and_not_the_server() -> None:
    values = {**shipped(), "INVIGIL_HALL_INTERFACE": "hall9"}
    assert check("server", values) == []
    problems = check("sentinel", values)
    assert problems and problems[0].startswith("INVIGIL_HALL_INTERFACE='hall9': no such interface")


def test_gateway_mode_needs_the_hall_address_with_its_prefix() -> None:
    values = {**shipped(), "INVIGIL_MODE": "gateway", "INVIGIL_HALL_INTERFACE": "lo"}
    for bad in ("10.20.0.1", "10.20.0.300/22", ""):
        problems = check("gateway", {**values, "INVIGIL_HALL_ADDRESS": bad})
        assert problems and "INVIGIL_HALL_ADDRESS=10.20.0.1/22" in problems[0], bad


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONFIG), *args], capture_output=True, text=True, env=env, timeout=30)


def test_the_command_fails_the_unit_with_the_message_on_stderr() -> None:
    """As the ExecStartPre= of the units runs it: exit 1 and a line per problem, naming the file."""
    good = {**shipped(), "INVIGIL_HALL_INTERFACE": "lo"}
    assert run("check", "sentinel", env=good).returncode == 0
    bad = run("check", "sentinel", env={**good, "INVIGIL_HALL_INTERFACE": "hall9"})
    assert bad.returncode == 1
    assert bad.stderr.startswith("/etc/invigil/invigil.conf: INVIGIL_HALL_INTERFACE='hall9'")
    assert run("is-gateway", env=good).returncode == 1
    assert run("is-gateway", env={**good, "INVIGIL_MODE": "gateway"}).returncode == 0


def test_the_proxy_needs_a_certificate_that_names_loopback(tmp_path: Path) -> None:
    from provisioning.appliance_conf import loopback_in_certificate
    from provisioning.tlsdir import init_tls

    assert (
        loopback_in_certificate(shipped(), tmp_path) == []
    )  # no certificate yet: the unit's condition waits
    init_tls(tmp_path, "Hall A", ["10.20.0.1"], force=False)
    problems = loopback_in_certificate(shipped(), tmp_path)
    assert problems and '--hall "Hall A" --name 10.20.0.1 --name 127.0.0.1' in problems[0]
    init_tls(tmp_path, "Hall A", ["10.20.0.1", "127.0.0.1"], force=False)
    assert loopback_in_certificate(shipped(), tmp_path) == []
