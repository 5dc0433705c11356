"""A hall in network namespaces, for the gateway and sentinel tests: a laptop, the appliance (its gateway)
and an 'internet' behind the appliance, joined by veth pairs that exist only inside those namespaces.

``ip netns exec`` bind-mounts /etc/netns/NAME/hosts over /etc/hosts, so names resolve inside a
namespace only; the folder is removed with the namespaces. Nothing is sent outside the namespaces.

``InNamespace`` runs code of this test process on a thread that has entered a namespace (setns(2) moves
only the calling thread): the sockets it makes belong to that namespace, and keep belonging to it when
other threads use them.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

BIN = Path(sys.executable).parent


def sh(*args: str, timeout: float = 30) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class HallNet:
    tag: str
    appliance_ns: str
    laptop_ns: str
    internet_ns: str
    appliance_ip: str  # on the hall veth ("vhall")
    laptop_ip: str
    uplink_ip: str  # the appliance's end towards the internet namespace
    internet_ip: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, ns: str, *args: str, timeout: float = 30) -> str:
        return sh("ip", "netns", "exec", ns, *args, timeout=timeout)

    def python(self, ns: str, code: str, *args: str, timeout: float = 30) -> str:
        return self.run(ns, sys.executable, "-c", code, *args, timeout=timeout)

    def start(self, ns: str, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """A process inside ``ns`` in its own process group; stopped with the namespaces."""
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", ns, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.processes.append(process)
        return process

    def hosts(self, ns: str, entries: dict[str, str]) -> None:
        """Names for the processes started in ``ns``. Any other name fails at once: the resolver there is
        loopback, where no DNS server listens."""
        folder = Path("/etc/netns") / ns
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost", *(f"{ip} {name}" for name, ip in entries.items())]
        (folder / "hosts").write_text("\n".join(lines) + "\n")
        (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)


@contextmanager
def hall_net() -> Iterator[HallNet]:
    tag = secrets.token_hex(3)
    names = (f"inv-app-{tag}", f"inv-lap-{tag}", f"inv-net-{tag}")
    made = subprocess.run(["ip", "netns", "add", names[0]], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create network namespaces here (need root): {made.stderr.strip()}")
    hall, net = f"10.214.{secrets.randbelow(250) + 1}", f"10.215.{secrets.randbelow(250) + 1}"
    hn = HallNet(tag, *names, f"{hall}.1", f"{hall}.20", f"{net}.1", f"{net}.2")
    app, lap, inet = names
    try:
        sh("ip", "netns", "add", lap)
        sh("ip", "netns", "add", inet)
        # Each veth pair is created inside a namespace with its peer moved straight into the other:
        # no end ever exists in the root namespace.
        sh("ip", "-n", app, "link", "add", "vhall", "type", "veth", "peer", "name", "vlap", "netns", lap)
        sh("ip", "-n", app, "link", "add", "vup", "type", "veth", "peer", "name", "vnet", "netns", inet)
        for ns, dev, address in (
            (app, "vhall", f"{hn.appliance_ip}/24"),
            (lap, "vlap", f"{hn.laptop_ip}/24"),
            (app, "vup", f"{hn.uplink_ip}/24"),
            (inet, "vnet", f"{hn.internet_ip}/24"),
        ):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", lap, "route", "add", "default", "via", hn.appliance_ip)
        sh("ip", "-n", app, "route", "add", "default", "via", hn.internet_ip)
        yield hn
    finally:
        hn.stop_processes()
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


class InNamespace:
    """One thread inside network namespace ``ns``; ``call(fn, ...)`` runs ``fn`` there, returns its result."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{ns}", initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns} failed")
        finally:
            os.close(fd)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._thread.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._thread.shutdown()


@dataclass
class NamespacedServer:
    """The real hall server inside ``hn.appliance_ns`` on every address there; ``stop``/``start`` again
    on the same port."""

    hn: HallNet
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """On the hall network."""
        return f"http://{self.hn.appliance_ip}:{self.port}"

    @property
    def loopback_url(self) -> str:
        """Where the proxy and sentinel on the appliance reach it."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> NamespacedServer:
        self.process = self.hn.start(
            self.hn.appliance_ns,
            [
                str(BIN / "invigil-server"),
                *("serve", "--data-dir", str(self.data_dir), "--bind", f"0.0.0.0:{self.port}"),
            ],
            self.data_dir.parent / f"server-{self.hn.tag}.log",
        )
        wait_http(self.hn, self.hn.appliance_ns, f"{self.loopback_url}/api/v1/health", timeout_s)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)


def start_hall_server(hn: HallNet, data_dir: Path, port: int, timeout_s: float = 30) -> str:
    """The real hall server inside the appliance namespace on every address there (only the
    namespace's own). Returns its URL on the hall network."""
    hn.start(
        hn.appliance_ns,
        [str(BIN / "invigil-server"), "serve", "--data-dir", str(data_dir), "--bind", f"0.0.0.0:{port}"],
        data_dir.parent / f"server-{hn.tag}.log",
    )
    wait_http(hn, hn.appliance_ns, f"http://127.0.0.1:{port}/api/v1/health", timeout_s)
    return f"http://{hn.appliance_ip}:{port}"


WAIT_HTTP = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


def wait_http(hn: HallNet, ns: str, url: str, timeout_s: float) -> None:
    hn.python(ns, WAIT_HTTP, url, str(timeout_s), timeout=timeout_s + 10)


ENROL = """
import json, sys
from agent.transport import HallClient
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now
enrolment = Enrolment(sys.argv[2], sys.argv[3], sys.argv[4], utc_now(), "0.1", "Linux")
answer = HallClient(sys.argv[1]).enrol(enrolment)
print(json.dumps({k: v for k, v in answer.items() if k != "session_token"}))
"""


def enrol_laptop(hn: HallNet, server_url: str, student: str, join_code: str) -> dict:
    """Enrol from the laptop namespace, so the session carries the laptop's address."""
    agent_id = f"agent-{hn.tag}-{student}"
    return json.loads(hn.python(hn.laptop_ns, ENROL, server_url, student, join_code, agent_id))


def wait_for(condition, timeout_s: float, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)
