"""Every file the appliance writes is created 0600 and every folder 0700, whatever the umask of the shell
that ran the command: an organiser's shell (umask 022) runs ``invigil-provision`` and ``invigil-server`` for
real here, and nothing in the data directory or in what they wrote is readable by anyone else."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from agent.transport import HallClient
from invigil import protocol as p
from invigil.payloads import CaptureMeta, Enrolment, SiteEvent
from invigil.timeutil import to_wire, utc_now

from support import BIN, LiveServer, png_bytes, sha256

SHELL_UMASK = 0o022


@pytest.fixture
def organiser_shell() -> Iterator[None]:
    """The commands below inherit an ordinary login shell's umask, not the systemd units' UMask=0027."""
    old = os.umask(SHELL_UMASK)
    yield
    os.umask(old)


def _run(*argv: str | Path) -> str:
    answer = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    assert answer.returncode == 0, f"{argv}: {answer.stdout}{answer.stderr}"
    return answer.stdout


def _modes(base: Path, *roots: Path) -> dict[str, int]:
    """Permission bits of each root and everything under it, by path relative to ``base``."""
    return {
        str(path.relative_to(base)): stat.S_IMODE(path.lstat().st_mode)
        for root in roots
        for path in [root, *root.rglob("*")]
    }


def _not_private(base: Path, modes: dict[str, int]) -> dict[str, str]:
    """The paths whose mode is not exactly 0700 (a folder) or 0600 (a file)."""
    wrong = {}
    for name, mode in modes.items():
        kind = (base / name).lstat().st_mode
        if stat.S_ISDIR(kind):
            expected = 0o700
        elif stat.S_ISSOCK(kind):  # gunicorn's control socket: nobody else may connect
            expected = mode & 0o700
        else:
            expected = 0o600
        if mode != expected:
            wrong[name] = oct(mode)
    return wrong


def _seed_through_the_api(server: LiveServer, join_code: str) -> None:
    """One student enrols and uploads two screens; the proxy (with the service token) reports a site for
    them and one for a laptop in no session."""
    agent = HallClient(server.url, source_address="127.0.0.21")
    start = utc_now()
    agent.enrol(Enrolment("s0001", join_code, "agent-s0001", start, "0.1", "Linux"))
    for index in range(2):
        body = png_bytes(320, 200, seed=index + 1)
        meta = CaptureMeta(0, start + timedelta(seconds=5 * index), sha256(body), 320, 200)
        assert agent.put_capture(f"capture-{index:04d}", meta, body, "image/png")
    assert agent.put_thumbnail("capture-0000", png_bytes(96, 60, seed=1), "image/png")
    agent.close()
    events = [
        SiteEvent(
            "proxy-0001", start, "127.0.0.21", "chat.example.com", "blocked", "proxy", "not on the allowlist"
        ),
        SiteEvent(
            "proxy-0002", start, "10.9.9.9", "stray.example.org", "blocked", "proxy", "not on the allowlist"
        ),
    ]
    answer = requests.post(
        f"{server.url}{p.API_PREFIX}/site-events",
        data=json.dumps({"events": [event.as_wire() for event in events]}),
        headers={
            p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION),
            "Content-Type": "application/json",
            "Authorization": f"Bearer {(server.data_dir / 'service.token').read_text().strip()}",
        },
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text


def test_every_file_the_appliance_writes_is_created_private(tmp_path: Path, organiser_shell: None) -> None:
    data_dir = tmp_path / "lib" / "invigil"  # neither folder exists yet
    given, out = tmp_path / "given", tmp_path / "out"  # the organiser's own folders (0755)
    given.mkdir()
    out.mkdir()
    (given / "exam.policy").write_text("allow exam.example.nl\n")
    (given / "students.csv").write_text("student_number,name\ns0001,Ann\ns0002,Bob\n")
    (given / "pw").write_text("correct horse battery\n")
    (given / "pw").chmod(0o600)
    stale_report = out / "s0001.html"
    stale_report.write_text("an older report, readable by everyone")

    provision = (BIN / "invigil-provision", "--data-dir", data_dir)
    _run(*provision, "hall", "create", "Hall A")
    start = utc_now() - timedelta(minutes=10)
    exam = json.loads(
        _run(
            *provision,
            "--json",
            "exam",
            "create",
            "--hall",
            "Hall A",
            "--title",
            "Linear Algebra",
            "--start",
            to_wire(start),
            "--end",
            to_wire(start + timedelta(hours=3)),
            "--policy",
            given / "exam.policy",
        )
    )
    exam_id = str(exam["id"])
    _run(*provision, "roster", "import", exam_id, given / "students.csv")
    _run(*provision, "user", "create", "rita", "--role", "reviewer", "--password-file", given / "pw")
    _run(*provision, "certs", "init", "--hall", "Hall A", "--name", "127.0.0.1")
    _run(
        *provision, "bundle", exam_id, "--server-url", "https://127.0.0.1:8443", "--out", out / "bundle.json"
    )

    server_cli = BIN / "invigil-server"
    _run(server_cli, "migrate", "--data-dir", data_dir)
    server = LiveServer(data_dir).start()
    try:
        _seed_through_the_api(server, exam["join_code"])
        deadline = time.monotonic() + 20
        while not (data_dir / "proxy" / "hall-policy.json").exists():
            assert time.monotonic() < deadline, "the server never published the policy file"
            time.sleep(0.1)
        while_serving = _modes(tmp_path, data_dir)
        assert _not_private(tmp_path, while_serving) == {}
    finally:
        server.stop()
    # SQLite's write-ahead log and shared memory exist while the server has the store open.
    assert {"lib/invigil/invigil.db-wal", "lib/invigil/invigil.db-shm"} <= set(while_serving)

    _run(server_cli, "verify", "--data-dir", data_dir)
    by = ("--by", "rita")
    _run(server_cli, "report", "--data-dir", data_dir, "--exam", exam_id, "--student", "s0001",
         "--format", "html", "--out", stale_report, *by)  # fmt: skip
    _run(server_cli, "export", "--data-dir", data_dir, "--exam", exam_id, "--no-pdf", "--jobs", "1",
         "--out", out / "exam.zip", *by)  # fmt: skip
    _run(server_cli, "gdpr-export", "--data-dir", data_dir, "--exam", exam_id, "--student", "s0001",
         "--out", out / "s0001-data.zip", *by)  # fmt: skip
    _run(server_cli, "retention", "--data-dir", data_dir)

    # The folder the commands had to make above the data directory is private too; "out" is the
    # organiser's own.
    modes = _modes(tmp_path, tmp_path / "lib", *out.iterdir())
    del modes[str(server.log_path.relative_to(tmp_path))]  # the test's own log of the server
    assert _not_private(tmp_path, modes) == {}
    expected = {
        "lib/invigil/invigil.db",
        "lib/invigil/master.key",
        "lib/invigil/secret.key",
        "lib/invigil/service.token",
        "lib/invigil/proxy/hall-policy.json",
        "lib/invigil/tls/ca.pem",
        "lib/invigil/tls/ca.key",
        "lib/invigil/tls/server.pem",
        "lib/invigil/tls/server.key",
        "lib/invigil/blobs/.tmp",
        "out/bundle.json",
        "out/s0001.html",
        "out/exam.zip",
        "out/s0001-data.zip",
    }
    assert expected <= set(modes)
    # The proxy reads the policy as the same user (User=invigil in systemd/invigil-proxy.service): no group.
    assert modes["lib/invigil/proxy/hall-policy.json"] == 0o600
    blobs = [n for n in modes if n.startswith(f"lib/invigil/blobs/{exam_id}/") and n.count("/") == 5]
    assert len(blobs) >= 3  # two screens and a thumbnail, in folders of their own
    assert "an older report" not in stale_report.read_text()
