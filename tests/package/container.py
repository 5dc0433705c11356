"""A fresh Debian 13 root with the built package installed, booted with systemd-nspawn, on a hall network.

The root is a copy of the cached minbase root (``.cache/trixie-boot``: systemd, systemd-sysv, dbus), so each
run starts clean; ``apt-get install ./invigil_*.deb`` brings the package's dependencies (their downloads are
kept in ``.cache/apt-archives``). The container boots with ``systemd-nspawn --register=no --keep-unit
--boot --private-network`` and gets one end of a veth pair made in a network namespace this test creates
(``hall0``, the appliance's hall interface); the other end (``lap0``) stays in the namespace, where the
agents, the browser and the test's own requests run. Nothing leaves the namespace: mDNS runs on ``lap0``
and ``hall0`` only.

Commands run in the booted container through ``nsenter`` into its PID 1 (no machined registration).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
BOOT_ROOT = CACHE / "trixie-boot"
APT_ARCHIVES = CACHE / "apt-archives"
HALL_NET = "10.77.0"
APPLIANCE_IP = f"{HALL_NET}.1"
LAPTOP_IP = f"{HALL_NET}.2"  # the namespace's own address: the tiny "internet" site listens here


def sh(*args: str, timeout: float = 60, check: bool = True, input: str | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def build_deb() -> Path:
    """``make deb``'s script (cached build root, pinned wheels, lintian): returns the built package."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-deb.sh")], capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout + done.stderr
    debs = sorted((ROOT / "dist").glob("invigil_*_amd64.deb"))
    assert len(debs) == 1, debs
    print(f"built {debs[0].name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return debs[0]


def nspawn(root: Path, *args: str, timeout: float = 600) -> str:
    """Run a command in ``root`` without booting it (a chroot with /proc, /dev and /sys)."""
    return sh(
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        "-D",
        str(root),
        f"--bind={APT_ARCHIVES}:/var/cache/apt/archives",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        *args,
        timeout=timeout,
    )


def fresh_root(target: Path, deb: Path) -> Path:
    """A copy of the cached minbase root with ``deb`` installed by apt (not booted: no unit starts)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "trixie-root.sh"), str(BOOT_ROOT), "systemd",
                    "systemd-sysv", "dbus"], check=True, timeout=900)  # fmt: skip
    (APT_ARCHIVES / "partial").mkdir(parents=True, exist_ok=True)
    sh("cp", "-a", "--reflink=auto", str(BOOT_ROOT), str(target), timeout=300)
    # systemd-nspawn mounts a fresh /tmp: files handed in go to /srv/hall.
    (target / "srv" / "hall").mkdir(parents=True, exist_ok=True)
    shutil.copy(deb, target / "srv" / "hall" / deb.name)
    nspawn(target, "apt-get", "update", "-q")
    nspawn(target, "apt-get", "install", "-y", "-q", "--no-install-recommends", f"/srv/hall/{deb.name}")
    return target


@dataclass
class Container:
    """The booted appliance: ``run`` a command in it, ``path`` to reach its files from here."""

    root: Path
    ns: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    leader: int = 0
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def run(self, *args: str, timeout: float = 60, check: bool = True, input: str | None = None) -> str:
        assert self.leader, "the container is not booted"
        return sh(
            "nsenter",
            f"--target={self.leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd=/",
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            *args,
            timeout=timeout,
            check=check,
            input=input,
        )

    def as_invigil(self, *args: str, timeout: float = 60) -> str:
        return self.run("runuser", "-u", "invigil", "--", "env", "INVIGIL_DATA_DIR=/var/lib/invigil", *args,
                        timeout=timeout)  # fmt: skip

    def boot(self, timeout_s: float = 120) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--quiet",
                    "--console=pipe",
                    "-D",
                    str(self.root),
                    "--private-network",
                    f"--machine=invigil-{secrets.token_hex(3)}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not self.leader:
            assert self.process.poll() is None, f"systemd-nspawn exited: {self.log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the container's init never started"
            self.leader = _child_named(self.process.pid, "systemd")
            time.sleep(0.2)
        # nspawn's own --network-interface= waits for udev to initialise the link, and no udev runs for a
        # link in a test's namespace: the link is moved into the container's namespace once it runs.
        sh("ip", "-n", self.ns, "link", "set", "hall0", "netns", str(self.leader))
        while True:
            state = self.run("systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return
            assert time.monotonic() < deadline, f"the container did not boot (state {state!r})"
            time.sleep(0.5)

    def address_hall_interface(self) -> None:
        """The site's network setup for the hall interface (not the package's business)."""
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "addr", "add", f"{APPLIANCE_IP}/24", "dev", "hall0")
        self.run("ip", "link", "set", "hall0", "up", "multicast", "on")
        self.run("ip", "route", "add", "224.0.0.0/4", "dev", "hall0")

    def wait_until(self, what: str, ok: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.5)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False)

    def poweroff(self, timeout_s: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to shut down
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.leader = 0

    def start_in_ns(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A process in the hall namespace (a laptop, the site), stopped with the container."""
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self.helpers.append(process)
        return process

    def in_ns(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.ns, *args, timeout=timeout, check=check)

    def stop_helpers(self) -> None:
        for process in self.helpers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.helpers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _child_named(parent: int, name: str) -> int:
    """The pid of ``parent``'s child (or grandchild) called ``name``, or 0."""
    pending = [parent]
    while pending:
        pid = pending.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == name:
                    return child
            except OSError:
                continue
            pending.append(child)
    return 0


def hall_namespace() -> str:
    """A network namespace with the veth pair: ``hall0`` (for the container) and ``lap0`` (the laptops)."""
    ns = f"invigil-pkg-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "link", "add", "hall0", "type", "veth", "peer", "name", "lap0")
    for address in (LAPTOP_IP, f"{HALL_NET}.11", f"{HALL_NET}.12"):
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "lap0")
    sh("ip", "-n", ns, "link", "set", "lap0", "up", "multicast", "on")
    # A laptop has a route for multicast (its default route); here it is the hall link and nothing else.
    sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "lap0")
    return ns


def remove_namespace(ns: str) -> None:
    sh("ip", "netns", "delete", ns, check=False)


def configure_site(root: Path, hosts: dict[str, str]) -> None:
    """What an organiser does before the first boot: the hall interface in invigil.conf, its address."""
    conf = root / "etc/invigil/invigil.conf"
    text = conf.read_text().replace("INVIGIL_HALL_INTERFACE=eth0", "INVIGIL_HALL_INTERFACE=hall0")
    assert "INVIGIL_HALL_INTERFACE=hall0" in text
    conf.write_text(text)
    with open(root / "etc/hosts", "a") as file:
        file.writelines(f"{address} {name}\n" for name, address in hosts.items())
