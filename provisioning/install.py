"""Render the systemd units in ``systemd/`` for an appliance's own paths and install them.

The unit files in ``systemd/`` are complete for the standard layout (``/opt/invigil/venv``,
``/opt/invigil/venv-proxy``, ``/var/lib/invigil``). ``render_unit`` rewrites those paths for another layout
(another prefix, or a test's own virtualenv, so that ``systemd-analyze verify`` finds the binaries);
``python -m provisioning.install`` renders and installs them (docs/appliance.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT_NAMES = (
    "invigil-server.service",
    "invigil-proxy.service",
    "invigil-sentinel.service",
    "invigil-retention.service",
    "invigil-retention.timer",
    "invigil-screen-text.service",
    "invigil-screen-text.timer",
    "invigil-gateway-rules.service",
    "invigil-gateway-dhcp.service",
    "invigil.target",
)
_STANDARD_PATH = re.compile(r"/opt/invigil/venv-proxy(?=/)|/opt/invigil/venv(?=/)|/var/lib/invigil\b")


@dataclass(frozen=True)
class Layout:
    """Where the appliance keeps its virtualenvs and data."""

    venv: Path = Path("/opt/invigil/venv")
    proxy_venv: Path = Path("/opt/invigil/venv-proxy")
    data_dir: Path = Path("/var/lib/invigil")


def render_unit(text: str, layout: Layout) -> str:
    """``text`` with the standard paths replaced by ``layout``'s (pure)."""
    replacements = {
        "/opt/invigil/venv-proxy": str(layout.proxy_venv),
        "/opt/invigil/venv": str(layout.venv),
        "/var/lib/invigil": str(layout.data_dir),
    }
    return _STANDARD_PATH.sub(lambda match: replacements[match.group(0)], text)


def render_units(target: Path, layout: Layout, units_dir: Path = UNITS_DIR) -> list[Path]:
    """Write every unit, rendered for ``layout``, into ``target``; returns the written paths."""
    if not (units_dir / UNIT_NAMES[0]).exists():
        raise FileNotFoundError(f"no unit files in {units_dir}: run this from an Invigil source checkout")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in UNIT_NAMES:
        path = target / name
        path.write_text(render_unit((units_dir / name).read_text(), layout))
        path.chmod(0o644)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m provisioning.install --target /etc/systemd/system``, run when installing the appliance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", type=Path, default=Path("/etc/systemd/system"))
    parser.add_argument("--venv", type=Path, default=Layout.venv)
    parser.add_argument("--proxy-venv", type=Path, default=Layout.proxy_venv)
    parser.add_argument("--data-dir", type=Path, default=Layout.data_dir)
    parser.add_argument("--units-dir", type=Path, default=UNITS_DIR, help="the checkout's systemd/ directory")
    args = parser.parse_args(argv)
    layout = Layout(args.venv, args.proxy_venv, args.data_dir)
    for path in render_units(args.target, layout, args.units_dir):
        print(f"installed {path}")
    print(
        "now: systemctl daemon-reload && "
        "systemctl enable --now invigil-server invigil-retention.timer invigil-screen-text.timer"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
