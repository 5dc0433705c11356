"""The systemd units: each passes ``systemd-analyze verify`` and keeps the hardening the appliance relies on.

``systemd-analyze verify`` works offline (no systemd needs to run, as in this container): it loads the unit
from its file and checks syntax, dependencies and that every ExecStart= binary exists and is executable.
It does not resolve User= (``invigil`` need not exist here) and needs no ``--root``. The shipped units name
``/opt/invigil/venv/bin/...``, which a test machine does not have, so the tests render them with
``provisioning.install`` (the same renderer the appliance install uses) pointing at this test run's own
virtualenv, where ``invigil-server``, ``invigil-proxy`` and ``invigil-sentinel`` are installed console
scripts. (``invigil-proxy`` names the proxy venv's mitmdump only as an argument: verify does not check it.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.install import UNIT_NAMES, UNITS_DIR, Layout, render_unit, render_units

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
VENV = Path(sys.executable).parent.parent
SERVICES = [name for name in UNIT_NAMES if name.endswith(".service")]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("units")
    render_units(target, Layout(venv=VENV, proxy_venv=VENV, data_dir=Path("/var/lib/invigil")))
    return target


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value of repeated keys kept in order (sections ignored)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_passes_systemd_analyze_verify(rendered: Path, name: str) -> None:
    result = analyze("verify", "--man=no", str(rendered / name))
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt keys are only warnings ("Unknown key ..., ignoring"): any output is a failure.
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr + result.stdout


def test_verify_catches_a_missing_binary(tmp_path: Path) -> None:
    """Guard against a verify that passes everything: an ExecStart= that does not exist must fail."""
    render_units(tmp_path, Layout(venv=tmp_path / "no-such-venv", proxy_venv=VENV))
    result = analyze("verify", "--man=no", str(tmp_path / "invigil-server.service"))
    assert result.returncode != 0 and "is not executable" in result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_service_exposure_is_low(rendered: Path, name: str) -> None:
    # systemd's own hardening score (0 safe .. 10 unsafe); --threshold is in tenths. 2.0 is "OK".
    result = analyze("security", "--offline=yes", "--threshold=20", str(rendered / name))
    assert result.returncode == 0, result.stdout[-3000:]


# The one privilege each unit has; every other service has none.
CAPABILITIES = {
    "invigil-sentinel.service": ["CAP_NET_RAW"],
    "invigil-gateway-rules.service": ["CAP_NET_ADMIN"],
    "invigil-gateway-dhcp.service": ["CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_NET_ADMIN"],
}
CONF = Path(__file__).resolve().parents[2] / "packaging" / "invigil.conf"


@pytest.mark.parametrize("name", SERVICES)
def test_service_hardening(name: str) -> None:
    unit = directives((UNITS_DIR / name).read_text())
    assert unit["User"] == ["invigil"] and unit["Group"] == ["invigil"]
    assert "DynamicUser" not in unit
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
    }.items():
        assert unit[key] == [value], key
    if name != "invigil-gateway-rules.service":  # it writes nothing but its runtime directory
        assert unit["ReadWritePaths"] == ["/var/lib/invigil"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert "RestrictAddressFamilies" in unit
    capabilities = CAPABILITIES.get(name, [""])
    assert unit["CapabilityBoundingSet"] == capabilities
    assert unit.get("AmbientCapabilities", [""]) == capabilities
    if name == "invigil-sentinel.service":
        assert "AF_PACKET" in unit["RestrictAddressFamilies"][0].split()


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_reads_the_appliance_config_and_checks_it_first(name: str) -> None:
    unit = directives((UNITS_DIR / name).read_text())
    assert unit["EnvironmentFile"] == ["/etc/invigil/invigil.conf"]
    check = unit["ExecStartPre"][0].split()
    assert check[:2] == ["/opt/invigil/venv/bin/invigil-config", "check"]
    assert check[2] in name


def conf_values() -> dict[str, str]:
    """The shipped /etc/invigil/invigil.conf as systemd's EnvironmentFile= reads it (quotes removed)."""
    values = {}
    for line in CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value.strip('"')
    return values


def expand(command: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        command = command.replace("${" + key + "}", value)
    assert "${" not in command, command  # every variable a unit uses is in the shipped file
    return command


def exec_lines(name: str) -> list[str]:
    unit = directives((UNITS_DIR / name).read_text())
    return [*unit.get("ExecStartPre", []), *unit["ExecStart"]]


def test_server_serves_tls_on_8443_from_the_data_dir() -> None:
    exec_start = expand(exec_lines("invigil-server.service")[-1], conf_values())
    assert exec_start.split()[:2] == ["/opt/invigil/venv/bin/invigil-server", "serve"]
    for option in (
        "--data-dir /var/lib/invigil",
        "--bind 0.0.0.0:8443",
        "--tls-cert /var/lib/invigil/tls/server.pem",
        "--tls-key /var/lib/invigil/tls/server.key",
    ):
        assert option in exec_start


def option(command: str, name: str) -> str:
    words = command.split()
    return words[words.index(name) + 1]


def test_proxy_gateway_and_sentinel_agree_on_ports_and_the_interface() -> None:
    values = conf_values()
    proxy = expand(exec_lines("invigil-proxy.service")[-1], values)
    rules = expand(exec_lines("invigil-gateway-rules.service")[1], values)
    dhcp = expand(exec_lines("invigil-gateway-dhcp.service")[1], values)
    sentinel = expand(exec_lines("invigil-sentinel.service")[-1], values)
    server = expand(exec_lines("invigil-server.service")[-1], values)
    api_port = option(server, "--bind").rsplit(":", 1)[1]
    assert option(proxy, "--listen-port") == option(rules, "--proxy-port") == option(dhcp, "--proxy-port")
    assert option(rules, "--service-port") == api_port
    for client in (proxy, sentinel):
        assert option(client, "--server-url") == f"https://127.0.0.1:{api_port}"
    assert (
        option(sentinel, "--interface")
        == option(rules, "--hall-interface")
        == values["INVIGIL_HALL_INTERFACE"]
    )
    assert option(proxy, "--network-mode") == values["INVIGIL_MODE"] == "proxy"
    assert values["INVIGIL_MDNS"] == "on"


def test_gateway_units_come_before_the_proxy_and_only_in_gateway_mode() -> None:
    for name in ("invigil-gateway-rules.service", "invigil-gateway-dhcp.service"):
        unit = directives((UNITS_DIR / name).read_text())
        assert "invigil-proxy.service" in unit["Before"][0].split()
        assert unit["ExecCondition"] == ["/opt/invigil/venv/bin/invigil-config is-gateway"]
    rules = directives((UNITS_DIR / "invigil-gateway-rules.service").read_text())
    assert rules["ExecStart"] == ["/usr/sbin/nft -f /run/invigil-gateway/gateway.nft"]


def test_the_gateway_units_load_what_netpolicy_generates(tmp_path: Path) -> None:
    """Their ExecStartPre, run for real with the shipped config (gateway mode), writes the files that
    nft and dnsmasq then read; ``nft --check`` accepts the ruleset."""
    values = {**conf_values(), "INVIGIL_MODE": "gateway"}
    for name, produced in (
        ("invigil-gateway-rules.service", "/run/invigil-gateway/gateway.nft"),
        ("invigil-gateway-dhcp.service", "/run/invigil-dhcp/dnsmasq.conf"),
    ):
        command = expand(exec_lines(name)[1], values).replace(produced, str(tmp_path / Path(produced).name))
        words = command.split()
        words[0] = str(VENV / "bin" / Path(words[0]).name)
        done = subprocess.run(words, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert "table inet invigil" in (tmp_path / "gateway.nft").read_text()
    dnsmasq = (tmp_path / "dnsmasq.conf").read_text()
    assert f"interface={values['INVIGIL_HALL_INTERFACE']}" in dnsmasq
    nft = shutil.which("nft")
    assert nft is not None
    checked = subprocess.run(
        [nft, "--check", "-f", str(tmp_path / "gateway.nft")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_retention_timer_runs_the_retention_service_daily() -> None:
    timer = directives((UNITS_DIR / "invigil-retention.timer").read_text())
    assert timer["Unit"] == ["invigil-retention.service"]
    assert timer["Persistent"] == ["true"]
    result = analyze("calendar", timer["OnCalendar"][0])
    assert result.returncode == 0 and "*-*-* 03:30:00" in result.stdout
    service = directives((UNITS_DIR / "invigil-retention.service").read_text())
    assert service["ExecStart"] == [
        "/opt/invigil/venv/bin/invigil-server retention --data-dir /var/lib/invigil"
    ]
    assert service["Type"] == ["oneshot"]


def test_render_replaces_the_standard_paths_only() -> None:
    text = (UNITS_DIR / "invigil-proxy.service").read_text()
    assert render_unit(text, Layout()) == text
    layout = Layout(venv=Path("/srv/v"), proxy_venv=Path("/srv/vp"), data_dir=Path("/srv/data"))
    rendered = render_unit(text, layout)
    assert "ExecStart=/srv/v/bin/invigil-proxy " in rendered
    assert "--mitmdump /srv/vp/bin/mitmdump" in rendered  # not /srv/v + "-proxy"
    assert "--server-ca /srv/data/tls/ca.pem" in rendered and "/opt/invigil" not in rendered


def test_screen_text_timer_runs_the_pass_at_idle_priority() -> None:
    timer = directives((UNITS_DIR / "invigil-screen-text.timer").read_text())
    assert timer["Unit"] == ["invigil-screen-text.service"]
    assert timer["OnUnitInactiveSec"] == ["2min"] and timer["OnBootSec"] == ["2min"]
    service = directives((UNITS_DIR / "invigil-screen-text.service").read_text())
    assert service["ExecStart"] == [
        "/opt/invigil/venv/bin/invigil-server screen-text --data-dir /var/lib/invigil --jobs 1 --limit 600"
    ]
    assert service["Type"] == ["oneshot"]
    # Ingest and the live view come first: the lowest CPU and I/O priority, at most half a core.
    assert service["Nice"] == ["19"] and service["CPUSchedulingPolicy"] == ["idle"]
    assert service["IOSchedulingClass"] == ["idle"] and service["CPUQuota"] == ["50%"]
    target = directives((UNITS_DIR / "invigil.target").read_text())
    assert "invigil-screen-text.timer" in target["Wants"][0].split()
