"""Benchmark one screen grab through the Wayland screenshot portal against mss on X11, same size, same run.

The portal side is the real headless stack the agent's tests use (``tests/agent/agent_wayland.py``: sway,
xdg-desktop-portal with its wlr backend, a private session bus; local processes and unix sockets only). It
prints, per grab: wall time (median, p90), CPU in the agent (the D-Bus call and the PNG decode), and CPU in
the portal stack (portal, backend, grim, compositor); then mss on Xvfb at the same size as the baseline.

Run: .venv/bin/python bench/agent_portal.py [--size 1920x1080] [--grabs 50]     (about 30 s)
Needs what ``scripts/setup-debian.sh`` installs for the agent's tests (sway, xdg-desktop-portal-wlr, Xvfb).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent.grab import MssGrabber  # noqa: E402
from agent.portal import PortalGrabber  # noqa: E402

from agent_wayland import wayland_portal_desktop  # noqa: E402
from agent_xvfb import xvfb  # noqa: E402


def group_cpu_s(groups: set[int]) -> float:
    """CPU seconds so far of every process in the given process groups (and their reaped children)."""
    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def timed(grab, grabs: int, groups: set[int]) -> dict[str, float]:
    for _ in range(5):  # warm-up
        grab()
    walls = []
    cpu, stack = time.process_time(), group_cpu_s(groups)
    for _ in range(grabs):
        start = time.perf_counter()
        grab()
        walls.append((time.perf_counter() - start) * 1000)
    return {
        "wall_ms": statistics.median(walls),
        "p90_ms": sorted(walls)[int(grabs * 0.9)],
        "agent_cpu_ms": (time.process_time() - cpu) * 1000 / grabs,
        "stack_cpu_ms": (group_cpu_s(groups) - stack) * 1000 / grabs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--grabs", type=int, default=50)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with wayland_portal_desktop(((0, 0, width, height, "#123456"),)) as desktop:
        groups = set()
        for proc in psutil.process_iter():
            try:
                if str(desktop.runtime_dir) in " ".join(proc.cmdline()):
                    groups.add(os.getpgid(proc.pid))
            except (psutil.Error, ProcessLookupError):
                continue
        with PortalGrabber(bus_address=desktop.bus_address) as grab:
            portal = timed(grab, args.grabs, groups)
    with xvfb(f"{width}x{height}x24") as display:
        os.environ["DISPLAY"] = display
        with MssGrabber() as grab:
            mss = timed(grab, args.grabs, set())
    print(f"one grab of a {args.size} desktop, {args.grabs} grabs after 5 to warm up")
    print(f"{'':28} {'wall ms':>8} {'p90':>8} {'agent CPU':>10} {'stack CPU':>10}")
    for name, row in (("Wayland screenshot portal", portal), ("mss on Xvfb (baseline)", mss)):
        print(
            f"{name:28} {row['wall_ms']:8.1f} {row['p90_ms']:8.1f} {row['agent_cpu_ms']:10.1f} "
            f"{row['stack_cpu_ms']:10.1f}"
        )
    print(
        f"portal / mss: wall {portal['wall_ms'] / mss['wall_ms']:.0f}x, agent CPU "
        f"{portal['agent_cpu_ms'] / max(mss['agent_cpu_ms'], 1e-3):.0f}x"
    )


if __name__ == "__main__":
    main()
