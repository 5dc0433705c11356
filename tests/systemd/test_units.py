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
    assert unit["ReadWritePaths"] == ["/var/lib/invigil"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert "RestrictAddressFamilies" in unit
    if name == "invigil-sentinel.service":
        assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
        assert unit["AmbientCapabilities"] == ["CAP_NET_RAW"]
        assert "AF_PACKET" in unit["RestrictAddressFamilies"][0].split()
    else:
        assert unit["CapabilityBoundingSet"] == [""]
        assert unit.get("AmbientCapabilities", [""]) == [""]


def test_server_serves_tls_on_8443_from_the_data_dir() -> None:
    exec_start = directives((UNITS_DIR / "invigil-server.service").read_text())["ExecStart"][0]
    assert exec_start.split()[:2] == ["/opt/invigil/venv/bin/invigil-server", "serve"]
    for option in (
        "--data-dir /var/lib/invigil",
        "--bind 0.0.0.0:8443",
        "--tls-cert /var/lib/invigil/tls/server.pem",
        "--tls-key /var/lib/invigil/tls/server.key",
    ):
        assert option in exec_start


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
