"""`make demo`: a whole hall on this machine, with the real components.

1. Provisions `demo-data/` with the organiser's CLI (`invigil-provision`): a hall, its CA and server
   certificate, staff accounts, an exam running now with a network policy, a roster, and the agent bundle.
2. Starts the hall server (gunicorn, TLS) and the allowlist proxy (mitmdump with our addon, its own venv).
3. Starts three Xvfb displays, each with different exam content, and a real `invigil-agent` on each, joined
   with the bundle (TLS checked against the hall CA). The third student's laptop also tries a blocked site
   through the proxy every 20 s, so the dashboard shows a `blocked_site` observation on that seat.
4. Prints the dashboard address and the demo logins, and runs until Ctrl-C, then stops everything in order:
   the agents leave (they drain their spools and delete their state), then the proxy, server and displays.

Everything listens on 127.0.0.1 only; the agents use their own loopback addresses (127.0.0.11-13) so the proxy
can tell them apart by client address, as it tells laptops apart in a hall.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INVIGIL_DEMO_DIR", ROOT / "demo-data")).resolve()  # tests use their own
WORK = DATA / "demo"
BIN = Path(sys.executable).parent
PASSWORD = "demo-password"  # noqa: S105 - the demo accounts' password, printed for the person trying it
STAFF = [
    ("organiser", "organiser"),
    ("invigilator", "invigilator"),
    ("reviewer", "reviewer"),
    ("board", "exam_board"),
]
STUDENTS = [
    ("s1001", "Ada Jansen", "essay", "127.0.0.11"),
    ("s1002", "Bram de Vries", "code", "127.0.0.12"),
    ("s1003", "Chen Li", "chat", "127.0.0.13"),
]
POLICY = """# Demo exam: only the exam portal and the Python docs.
# localhost is this machine: through the proxy only the hall server's agent API is reachable on it.
allow localhost
allow docs.python.org/3/
block chat.example.com
"""


def step(message: str) -> None:
    print(f"== {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def provision(command: list[str], *, json_out: bool = False) -> dict:
    """Run one `invigil-provision` command; stop the demo with its message if it fails."""
    args = [str(BIN / "invigil-provision"), "--data-dir", str(DATA), *(["--json"] if json_out else [])]
    args += command
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"demo: `invigil-provision {' '.join(command)}` failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout) if json_out and done.stdout.strip() else {}


def set_up(server_port: int) -> tuple[int, str]:
    shutil.rmtree(DATA, ignore_errors=True)
    WORK.mkdir(parents=True)
    (WORK / "password").write_text(PASSWORD + "\n")
    (WORK / "exam.policy").write_text(POLICY)
    (WORK / "roster.csv").write_text(
        "student_number,name,extra_time_min\n" + "".join(f"{n},{name},0\n" for n, name, _, _ in STUDENTS)
    )
    step("provisioning the demo hall with invigil-provision")
    provision(["hall", "create", "Demo Hall"])
    provision(["certs", "init", "--hall", "Demo Hall", "--name", "127.0.0.1", "--name", "localhost"])
    for username, role in STAFF:
        provision(["user", "create", username, "--role", role, "--password-file", str(WORK / "password")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    exam = provision(
        [
            "exam",
            "create",
            "--hall",
            "Demo Hall",
            "--title",
            "Demo: Statistics 1",
            "--start",
            start.isoformat(timespec="minutes"),
            "--end",
            (start + timedelta(hours=3)).isoformat(timespec="minutes"),
            "--interval",
            "5",
            "--policy",
            str(WORK / "exam.policy"),
            "--invigilator",
            "invigilator",
            "--reviewer",
            "reviewer",
        ],
        json_out=True,
    )
    exam_id = int(exam.get("exam", exam).get("id"))
    provision(["user", "assign", "board", "--role", "exam_board", "--exam", str(exam_id)])
    provision(["roster", "import", str(exam_id), str(WORK / "roster.csv")])
    provision(
        [
            "bundle",
            str(exam_id),
            "--server-url",
            f"https://127.0.0.1:{server_port}",
            "--out",
            str(WORK / "bundle.json"),
        ]
    )
    code = provision(["joincode", "show", str(exam_id)], json_out=True)
    return exam_id, str(code.get("join_code", code.get("code", "")))


class Processes:
    """Every child in its own session, so Ctrl-C reaches only this script, which stops them in order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(WORK / f"{name}.log", "ab") as log:
            child = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or os.environ.copy(),
                start_new_session=True,
            )
        self.children.append((name, child))
        return child

    def stop(self, prefix: str, timeout_s: float) -> None:
        for name, child in self.children:
            if name.startswith(prefix) and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, child in self.children:
            if name.startswith(prefix):
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()


def wait_until(what: str, check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"demo: {what} did not come up in {timeout_s:.0f} s; see the logs in {WORK}")


def https_up(port: int) -> bool:
    context = ssl.create_default_context(cafile=str(DATA / "tls" / "ca.pem"))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return tls.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_display(procs: Processes, name: str) -> str:
    """An Xvfb display of its own; returns its DISPLAY value."""
    read_end, write_end = os.pipe()
    procs.children.append(
        (
            name,
            subprocess.Popen(
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_end),
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                pass_fds=(write_end,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            ),
        )
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        return ":" + pipe.readline().strip()


def try_blocked_site(proxy_port: int, source: str, stop: threading.Event) -> None:
    """The third laptop asks the proxy for a blocked site now and then, as a browser would (CONNECT)."""
    stop.wait(15)  # let the agent enrol first, so the attempt lands on its seat
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", proxy_port), 5, source_address=(source, 0)) as s:
                s.sendall(b"CONNECT chat.example.com:443 HTTP/1.1\r\nHost: chat.example.com:443\r\n\r\n")
                s.recv(256)  # "HTTP/1.1 403 ..." from the policy
        except OSError:
            pass
        stop.wait(20)


def main() -> int:
    server_port, proxy_port = free_port(), free_port()
    exam_id, join_code = set_up(server_port)
    procs = Processes()
    stop = threading.Event()
    try:
        step("starting the hall server (gunicorn, TLS)")
        procs.start(
            "server",
            [
                str(BIN / "invigil-server"),
                "serve",
                "--data-dir",
                str(DATA),
                "--bind",
                f"127.0.0.1:{server_port}",
                "--tls-cert",
                str(DATA / "tls" / "server.pem"),
                "--tls-key",
                str(DATA / "tls" / "server.key"),
            ],
        )
        wait_until("the hall server", lambda: https_up(server_port))
        policy_file = DATA / "proxy" / "hall-policy.json"
        wait_until("the published network policy", policy_file.exists)
        step("starting the allowlist proxy (mitmdump with the Invigil addon)")
        procs.start(
            "proxy",
            [
                str(BIN / "invigil-proxy"),
                "--policy",
                str(policy_file),
                "--listen-port",
                str(proxy_port),
                "--server-url",
                f"https://127.0.0.1:{server_port}",
                "--server-ca",
                str(DATA / "tls" / "ca.pem"),
                "--service-token-file",
                str(DATA / "service.token"),
                "--confdir",
                str(DATA / "proxy" / "mitmproxy"),
            ],
        )
        wait_until("the proxy", lambda: port_open(proxy_port), timeout_s=60)
        step("starting three students: an Xvfb display, exam content and a real invigil-agent each")
        for number, _name, content, address in STUDENTS:
            display = start_display(procs, f"display-{number}")
            env = {**os.environ, "DISPLAY": display}
            env.pop("WAYLAND_DISPLAY", None)
            screen = [sys.executable, str(ROOT / "scripts" / "demo_screen.py"), content]
            procs.start(f"screen-{number}", screen, env)
            procs.start(
                f"agent-{number}",
                [
                    str(BIN / "invigil-agent"),
                    "--bundle",
                    str(WORK / "bundle.json"),
                    "--student-number",
                    number,
                    "--join-code",
                    join_code,
                    "--no-gui",
                    "--no-mdns",
                    "--source-address",
                    address,
                    "--state-dir",
                    str(WORK / f"agent-{number}"),
                ],
                env,
            )
        blocked_args = (proxy_port, STUDENTS[2][3], stop)
        blocked = threading.Thread(target=try_blocked_site, args=blocked_args, daemon=True)
        blocked.start()
        url = f"https://127.0.0.1:{server_port}/"
        print(
            f"""
Invigil demo is running (exam {exam_id}, join code {join_code}).

  Dashboard:   {url}
               (the hall's own CA signs it: trust {DATA / "tls" / "ca.pem"} or accept the warning)
  Logins:      {", ".join(name for name, _ in STAFF)}   password: {PASSWORD}
  Proxy:       127.0.0.1:{proxy_port} (policy: {policy_file})
  Logs:        {WORK}

Three agents send their screens every 5 s; s1003 also tries chat.example.com. Ctrl-C stops everything.
""",
            flush=True,
        )
        while True:
            time.sleep(1)
            for name, child in procs.children:
                if name in ("server", "proxy") and child.poll() is not None:
                    print(f"demo: the {name} stopped; see {WORK / (name + '.log')}", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        print("\nstopping: the agents leave first (they send what is left and delete their data)", flush=True)
    finally:
        stop.set()
        procs.stop("agent-", 30)
        procs.stop("screen-", 5)
        procs.stop("proxy", 10)
        procs.stop("server", 20)
        procs.stop("display-", 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
