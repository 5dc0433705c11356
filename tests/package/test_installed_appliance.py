"""The Debian package, installed into a fresh trixie root and booted with systemd, runs a whole exam.

``make deb``'s script builds the package (lintian must find no error); apt installs it into a clean root;
systemd-nspawn boots it on a hall network that exists only in this test's network namespace (container.py).
Inside, the organiser provisions a hall and an exam with ``invigil-provision`` as the ``invigil`` user and
restarts ``invigil.target``. Outside, two real agents on Xvfb displays find the hall over mDNS (their bundle
names an address where no server is) and join; headless Chromium logs into the dashboard and sees their
screens arrive as pushes; the proxy allows and blocks per the exam's policy; the sentinel records a DNS
query from a laptop; the retention timer's service runs and the screen-text pass reads the exam's screens;
nothing failed. Then ``apt-get remove`` keeps the
data and the configuration, ``purge`` with the default answer keeps the data, a reinstall finds it, and a
purge with "yes" deletes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from container import (
    APPLIANCE_IP,
    HALL_NET,
    LAPTOP_IP,
    Container,
    build_deb,
    configure_site,
    fresh_root,
    hall_namespace,
    remove_namespace,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_xvfb import set_background, xvfb  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu"]  # fmt: skip
PASSWORD = "package-test-pw"
STUDENTS = (("s1001", f"{HALL_NET}.11", "#2050a0"), ("s1002", f"{HALL_NET}.12", "#a05020"))
POLICY = "allow library.exam.test\nblock chat.exam.test\n"
SITE_PORT = 8000
DEAD_IP = f"{HALL_NET}.99"  # in the hall network, where no host answers
BASE = f"https://{APPLIANCE_IP}:8443"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "Xvfb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: run make setup")
    work = tmp_path_factory.mktemp("appliance")
    deb = build_deb()
    root = fresh_root(work / "root", deb)
    configure_site(root, {"library.exam.test": LAPTOP_IP, "chat.exam.test": LAPTOP_IP})
    ns = hall_namespace()
    box = Container(root=root, ns=ns, log_path=work / "console.log")
    box.deb = deb  # type: ignore[attr-defined]
    box.work = work  # type: ignore[attr-defined]
    try:
        box.boot()
        yield box
    finally:
        if box.leader:  # what the appliance logged, kept beside the test's other logs
            journal = box.run("journalctl", "--no-pager", "-o", "short-precise", check=False, timeout=60)
            (work / "journal.txt").write_text(journal)
        box.stop_helpers()
        box.poweroff()
        remove_namespace(ns)
        shutil.rmtree(root, ignore_errors=True)


def provision(box: Container) -> tuple[int, str]:
    """The organiser's steps of docs/appliance.md, as ``invigil`` inside the appliance."""
    (box.path("/srv/hall/exam.policy")).write_text(POLICY)
    (box.path("/srv/hall/password")).write_text(PASSWORD + "\n")
    (box.path("/srv/hall/roster.csv")).write_text(
        "student_number,name,extra_time_min\n" + "".join(f"{n},Student {n},0\n" for n, _, _ in STUDENTS)
    )
    for name in ("exam.policy", "password", "roster.csv"):
        box.path(f"/srv/hall/{name}").chmod(0o644)
    box.run("chown", "invigil:invigil", "/srv/hall")  # the bundle is written here by invigil
    provision_cmd = ("/opt/invigil/venv/bin/invigil-provision",)
    box.as_invigil(*provision_cmd, "hall", "create", "Hall A", "--interface", "hall0")
    box.as_invigil(
        *provision_cmd,
        "certs",
        "init",
        "--hall",
        "Hall A",
        "--name",
        APPLIANCE_IP,
        "--name",
        DEAD_IP,
        "--name",
        "127.0.0.1",
    )
    for user, role in (("jdoe", "invigilator"), ("asmith", "reviewer")):
        box.as_invigil(
            *provision_cmd, "user", "create", user, "--role", role, "--password-file", "/srv/hall/password"
        )
    start = datetime.now(UTC) - timedelta(minutes=5)
    exam = json.loads(
        box.as_invigil(
            *provision_cmd,
            "--json",
            "exam",
            "create",
            "--hall",
            "Hall A",
            "--title",
            "Linear Algebra",
            "--start",
            start.isoformat(timespec="minutes"),
            "--end",
            (start + timedelta(hours=2)).isoformat(timespec="minutes"),
            "--interval",
            "2",
            "--policy",
            "/srv/hall/exam.policy",
            "--invigilator",
            "jdoe",
            "--reviewer",
            "asmith",
            "--screen-text",
        )  # fmt: skip
    )
    exam_id = int(exam.get("exam", exam)["id"])
    box.as_invigil(*provision_cmd, "roster", "import", str(exam_id), "/srv/hall/roster.csv")
    # The bundle names an address where no server answers: only mDNS leads the agents to the hall.
    box.as_invigil(*provision_cmd, "bundle", str(exam_id), "--server-url", f"https://{DEAD_IP}:8443",
                   "--out", "/srv/hall/bundle.json")  # fmt: skip
    code = json.loads(box.as_invigil(*provision_cmd, "--json", "joincode", "show", str(exam_id)))
    return exam_id, str(code.get("join_code", code.get("code", "")))


def ns_python(box: Container, code: str, *args: str, timeout: float = 60) -> str:
    return box.in_ns(sys.executable, "-c", textwrap.dedent(code), *args, timeout=timeout)


HTTPS_GET = """
import sys, requests
response = requests.get(sys.argv[1], verify=sys.argv[2], timeout=10)
print(response.status_code)
"""

THROUGH_PROXY = """
import socket, sys
host, proxy, port, source, site_port = sys.argv[1:6]
target = f"{host}:{site_port}"
request = f"GET http://{target}/ HTTP/1.1\\r\\nHost: {target}\\r\\nConnection: close\\r\\n\\r\\n"
with socket.create_connection((proxy, int(port)), 10, source_address=(source, 0)) as s:
    s.sendall(request.encode())
    print(s.recv(64).decode(errors="replace").split("\\r\\n")[0])
"""

DNS_QUERY = """
import socket, struct, sys
name = sys.argv[1]
question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
packet = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + question
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind((sys.argv[3], 0))
    for _ in range(3):
        s.sendto(packet, (sys.argv[2], 53))
"""


def db_rows(box: Container, sql: str) -> list[list[object]]:
    # Through the installed store library: personal columns open with unseal(exam_id, column).
    code = (
        "import json, sys; from hall_server.store import db; "
        "store = db.connect('/var/lib/invigil'); "
        "print(json.dumps(store.execute(sys.argv[1]).fetchall()))"
    )
    return json.loads(
        box.run("runuser", "-u", "invigil", "--", "/opt/invigil/venv/bin/python", "-c", code, sql)
    )


def test_the_installed_appliance_runs_a_whole_exam(appliance: Container) -> None:
    box = appliance
    work: Path = box.work  # type: ignore[attr-defined]
    # Before provisioning nothing has failed: the services wait for the certificates (skipped, not failed).
    assert box.run("systemctl", "--failed", "--no-legend", "--plain").strip() == ""
    assert (box.path("/var/lib/invigil").stat().st_mode & 0o777) == 0o750
    assert (box.path("/var/lib/invigil/master.key").stat().st_mode & 0o777) == 0o600

    box.address_hall_interface()
    exam_id, join_code = provision(box)
    box.run("systemctl", "restart", "invigil.target")
    ca = work / "ca.pem"
    shutil.copy(box.path("/var/lib/invigil/tls/ca.pem"), ca)
    box.wait_until(
        "the hall server's health",
        lambda: ns_python(box, HTTPS_GET, f"{BASE}/api/v1/health", str(ca), timeout=20).strip() == "200",
        timeout_s=90,
    )
    for unit in ("invigil-server", "invigil-proxy", "invigil-sentinel"):
        box.wait_until(
            f"{unit} active",
            lambda u=unit: box.run("systemctl", "is-active", u, check=False).strip() == "active",
        )
    # The gateway units are skipped in proxy mode (ExecCondition), never failed.
    assert box.run("systemctl", "is-active", "invigil-gateway-rules", check=False).strip() == "inactive"
    # The dashboard's front-end library came with the package.
    assert ns_python(box, HTTPS_GET, f"{BASE}/dashboard/vendor/socket.io.min.js", str(ca)).strip() == "200"

    bundle = work / "bundle.json"
    shutil.copy(box.path("/srv/hall/bundle.json"), bundle)
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium_in_ns = work / "chromium-in-ns"
    chromium_in_ns.write_text(f'#!/bin/sh\nexec ip netns exec {box.ns} {CHROMIUM} "$@"\n')
    chromium_in_ns.chmod(0o755)

    # On a thread of its own: the Playwright sync API refuses to run where another test's sync API (the
    # dashboard tests' session browser) still holds an event loop in this thread.
    def in_the_hall() -> None:
        with (
            playwright_api.sync_playwright() as playwright,
            xvfb("1024x640x24") as one,
            xvfb("1024x640x24") as two,
        ):
            browser = playwright.chromium.launch(executable_path=str(chromium_in_ns), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1366, "height": 768}, ignore_https_errors=True)
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto(f"{BASE}/dashboard/login")
            page.fill("input[name=username]", "jdoe")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect = playwright_api.expect
            expect(page).to_have_url(f"{BASE}/dashboard/exams/{exam_id}")
            expect(page.locator(".tile")).to_have_count(len(STUDENTS))

            for (number, address, colour), display in zip(STUDENTS, (one, two), strict=True):
                set_background(display, colour)
                box.start_in_ns(
                    [
                        str(BIN / "invigil-agent"),
                        "--bundle",
                        str(bundle),
                        "--student-number",
                        number,
                        "--join-code",
                        join_code,
                        "--no-gui",
                        "--source-address",
                        address,
                        "--state-dir",
                        str(work / f"agent-{number}"),
                        "-v",
                    ],  # fmt: skip
                    work / f"agent-{number}.log",
                    env={"DISPLAY": display, "WAYLAND_DISPLAY": ""},
                )
            # Pushed, not reloaded: both tiles turn live and show a capture, then a newer one.
            expect(page.locator(".tile.s-live")).to_have_count(len(STUDENTS), timeout=90_000)
            img = page.locator(".tile.s-live img").first
            expect(img).to_have_attribute("data-capture", re.compile(".+"), timeout=60_000)
            first = img.get_attribute("data-capture")
            set_background(one, "#20a050")
            set_background(two, "#a02050")
            expect(img).not_to_have_attribute("data-capture", first or "", timeout=60_000)
            page.screenshot(path=str(work / "dashboard.png"))
            # The bundle names only a dead address: the agents reached the hall because mDNS told them where.
            server_log = box.journal("invigil-server")
            assert f"mDNS: advertising hall 1 on {APPLIANCE_IP}" in server_log, server_log[-3000:]

            def agents_seen() -> bool:
                return box.journal("invigil-server").count(" present (") >= len(STUDENTS)

            box.wait_until("the server to see the agents over mDNS", agents_seen)

            # The proxy: the allowed site answers; the blocked and the unlisted ones are refused.
            box.start_in_ns([sys.executable, "-m", "http.server", str(SITE_PORT), "--bind", LAPTOP_IP],
                            work / "site.log")  # fmt: skip
            time.sleep(1)

            def through_proxy(host: str) -> str:
                return ns_python(
                    box, THROUGH_PROXY, host, APPLIANCE_IP, "8080", STUDENTS[0][1], str(SITE_PORT)
                )

            box.wait_until(
                "the exam's policy at the proxy", lambda: " 200 " in through_proxy("library.exam.test") + " "
            )
            assert " 403" in through_proxy("chat.exam.test")
            assert " 403" in through_proxy("unlisted.exam.test")
            # The sentinel sees a laptop's DNS query for a host outside the policy on the hall interface.
            ns_python(box, DNS_QUERY, "chat.exam.test", APPLIANCE_IP, STUDENTS[1][1])
            box.wait_until(
                "the sentinel's DNS record",
                lambda: (
                    db_rows(
                        box,
                        "SELECT COUNT(*) FROM site_event WHERE source = 'dns' "
                        "AND unseal(exam_id, host) = 'chat.exam.test'",
                    )[0][0]
                    > 0
                ),
                timeout_s=30,
            )

            # The proxy sends its decisions in batches on a thread of its own (retrying with a backoff while
            # the hall server was still starting): wait for them rather than read them once.
            def proxy_rows() -> list[list[object]]:
                return db_rows(
                    box,
                    "SELECT unseal(exam_id, host) AS open_host, decision FROM site_event "
                    "WHERE source = 'proxy' ORDER BY open_host",
                )

            def proxy_decisions_stored() -> bool:
                rows = proxy_rows()
                return ["chat.exam.test", "blocked"] in rows and ["library.exam.test", "allowed"] in rows

            try:
                box.wait_until("the proxy's site events", proxy_decisions_stored, timeout_s=60)
            except AssertionError:
                raise AssertionError(f"{proxy_rows()}\n{box.journal('invigil-proxy')[-4000:]}") from None
            sessions = db_rows(box, "SELECT COUNT(*) FROM agent_session")[0][0]
            assert sessions == len(STUDENTS)
            context.close()
            browser.close()
            box.stop_helpers()  # the agents leave (they send what is left and delete their data)

    with ThreadPoolExecutor(1) as thread:
        thread.submit(in_the_hall).result()

    box.run("systemctl", "start", "invigil-retention.service", timeout=120)
    result = box.run("systemctl", "show", "-p", "Result", "--value", "invigil-retention.service").strip()
    assert result == "success", box.journal("invigil-retention.service")
    assert box.run("systemctl", "is-enabled", "invigil-retention.timer").strip() == "enabled"
    # The screen-text timer is on, and its pass reads the exam's screens with the installed tesseract
    # under the unit's own hardening (idle priority, no network).
    assert box.run("systemctl", "is-enabled", "invigil-screen-text.timer").strip() == "enabled"
    box.run("systemctl", "start", "invigil-screen-text.service", timeout=300)
    result = box.run("systemctl", "show", "-p", "Result", "--value", "invigil-screen-text.service").strip()
    assert result == "success", box.journal("invigil-screen-text.service")
    read = db_rows(box, "SELECT COUNT(*) FROM screen_text")[0][0]
    assert read > 0, box.journal("invigil-screen-text.service")
    failed = box.run("systemctl", "--failed", "--no-legend", "--plain").strip()
    assert failed == "", failed + "\n" + "\n".join(box.journal(u.split()[0]) for u in failed.splitlines())
    # The logs reach the journal as JSON lines.
    server_log = box.journal("invigil-server")
    events = [json.loads(line) for line in server_log.splitlines() if line.startswith("{")]
    assert events and all("event" in e and "level" in e for e in events), server_log[-2000:]


def test_remove_keeps_the_data_and_purge_asks_before_deleting_it(appliance: Container) -> None:
    box = appliance
    key = hashlib.sha256(box.path("/var/lib/invigil/master.key").read_bytes()).hexdigest()
    box.run("apt-get", "remove", "-y", "-q", "invigil", timeout=300)
    assert box.run("systemctl", "is-active", "invigil-server", check=False).strip() != "active"
    assert not box.path("/opt/invigil/venv").exists()
    assert box.path("/etc/invigil/invigil.conf").exists()  # a conffile stays until purge
    assert box.path("/var/lib/invigil/invigil.db").exists()

    box.run("apt-get", "purge", "-y", "-q", "invigil", timeout=300)  # noninteractive: the default "no"
    assert not box.path("/etc/invigil/invigil.conf").exists()
    assert hashlib.sha256(box.path("/var/lib/invigil/master.key").read_bytes()).hexdigest() == key

    deb: Path = box.deb  # type: ignore[attr-defined]
    shutil.copy(deb, box.path(f"/srv/hall/{deb.name}"))
    box.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/srv/hall/{deb.name}", timeout=300)
    assert hashlib.sha256(box.path("/var/lib/invigil/master.key").read_bytes()).hexdigest() == key
    assert db_rows(box, "SELECT COUNT(*) FROM exam")[0][0] == 1

    box.run("debconf-set-selections", input="invigil invigil/purge_data boolean true\n")
    box.run("apt-get", "purge", "-y", "-q", "invigil", timeout=300)
    assert not box.path("/var/lib/invigil").exists()
    assert box.run("getent", "passwd", "invigil", check=False).strip() != ""  # the user stays (policy)
