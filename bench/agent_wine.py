"""The Windows agent under Wine, next to the Linux agent on X11 in the same run, on the same screen.

Figures, all marked "Wine" (Wine 8 stands in for Windows; these are not Windows figures):
installer size (target <= 40 MB), installed size (<= 150 MB, after the agent ran once and Python wrote its
bytecode), time from start to joined, the agent's CPU ms per changed capture and its peak RSS; and for the
Linux agent on the same Xvfb display in the same run, the last two. Both agents watch the same desktop:
notepad windows (Wine's, which are X11 windows) opening one after another, so every interval has a change.

Run: .venv/bin/python bench/agent_wine.py [--seconds 40]     (after make agent-windows; about 3 minutes)
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_wine import WinePrefix, windows_path, wine_prefix  # noqa: E402

from agent_xvfb import set_background, xvfb  # noqa: E402
from support import LiveServer, provision_exam  # noqa: E402

VERSION = "0.1.0"
INTERVAL_S = 2


def installer() -> Path:
    found = sorted((ROOT / "dist").glob("invigil-agent-*-setup.exe"))
    if not found:
        sys.exit("no installer in dist/: run make agent-windows")
    return found[-1]


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def changed_captures(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "invigil.db") as db:
        return int(db.execute("SELECT count(*) FROM capture WHERE changed = 1").fetchone()[0])


class Sampler:
    """Polls a process tree's CPU time and RSS (the Wine loader's process is the Windows program itself)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in procs))
                self.cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
            except psutil.Error:
                return
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def change_screen(wine: WinePrefix, texts: list[Path], stop: threading.Event) -> None:
    """Open the next notepad window every interval until ``stop``: every capture sees a change."""
    opened = []
    for path in texts:
        if stop.is_set():
            break
        opened.append(wine.popen(["notepad.exe", windows_path(path)]))
        stop.wait(INTERVAL_S)
    stop.wait()
    for proc in opened:
        proc.kill()


def measure(command: list[str], env_runner, exam, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    before = changed_captures(exam.data_dir)
    started = time.monotonic()
    proc = env_runner(command)
    sampler = Sampler(proc.pid)
    while changed_captures(exam.data_dir) == before:
        if proc.poll() is not None:
            raise SystemExit(f"the agent ended before joining (exit status {proc.returncode})")
        time.sleep(0.05)
    joined_s = time.monotonic() - started
    cpu_at_join, captures_at_join = sampler.cpu, changed_captures(exam.data_dir)
    time.sleep(seconds)
    cpu_steady, captures = sampler.cpu - cpu_at_join, changed_captures(exam.data_dir) - captures_at_join
    proc.communicate(timeout=120)
    sampler.stop()
    return {
        "joined_s": joined_s,
        "cpu_ms_per_changed": 1000 * cpu_steady / max(captures, 1),
        "changed": captures,
        "peak_rss_mb": sampler.peak_rss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=40, help="steady part of each agent's run")
    args = parser.parse_args()
    setup = installer()
    work = Path(tempfile.mkdtemp(prefix="invigil-bench-wine-"))
    try:
        exam = provision_exam(work / "data", duration_min=60)
        with sqlite3.connect(exam.data_dir / "invigil.db") as db:
            db.execute("UPDATE exam SET capture_interval_s = ?", (INTERVAL_S,))
        server = LiveServer(exam.data_dir).start()
        texts = []
        for n in range(200):
            path = work / f"page-{n:03d}.txt"
            path.write_text(f"Page {n}\r\n" + f"line {n} of the exam answer\r\n" * (5 + n % 30))
            texts.append(path)
        try:
            with xvfb("1280x800x24") as display, wine_prefix(work / "prefix", display) as wine:
                set_background(display, "#205080")
                assert wine.run([windows_path(setup), "/S"]).returncode == 0
                wine.wait_idle()
                home = wine.local_app_data / "Programs" / "Invigil"
                python = windows_path(home / "Python" / "python.exe")
                stop = threading.Event()
                changer = threading.Thread(target=change_screen, args=(wine, texts, stop), daemon=True)
                changer.start()
                common = ["--student-number", "s0001", "--join-code", exam.join_code, "--no-gui", "--no-mdns"]
                duration = ["--duration", str(args.seconds + 5)]
                quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # status lines unread
                wine_figures = measure(
                    [
                        python,
                        windows_path(home / "Invigil.launch.py"),
                        "--server",
                        server.url,
                        "--insecure-dev",
                        *common,
                        *duration,
                    ],
                    lambda cmd: wine.popen(cmd, **quiet),
                    exam,
                    args.seconds,
                )
                installed_mb = du_mb(home)
                env = {**wine.env}
                x11_figures = measure(
                    [
                        sys.executable,
                        "-m",
                        "agent",
                        "--server",
                        server.url,
                        "--insecure-dev",
                        *common,
                        *duration,
                        "--state-dir",
                        str(work / "x11-state"),
                    ],
                    lambda cmd: subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, text=True, **quiet),
                    exam,
                    args.seconds,
                )
                stop.set()
                changer.join(timeout=30)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_mb = setup.stat().st_size / 1e6
    print(f"Agent {setup.name}; 1280x800 Xvfb, {INTERVAL_S} s interval, {args.seconds:g} s steady per agent")
    met = "met" if size_mb <= 40 else "MISSED"
    print(f"  Wine  installer size          {size_mb:6.1f} MB   target <= 40 MB: {met}")
    print(
        f"  Wine  installed size          {installed_mb:6.1f} MB   target <= 150 MB: "
        f"{'met' if installed_mb <= 150 else 'MISSED'}"
    )
    for name, figures in (("Wine", wine_figures), ("X11 ", x11_figures)):
        print(
            f"  {name}  start to joined {figures['joined_s']:6.1f} s   CPU per changed capture "
            f"{figures['cpu_ms_per_changed']:6.1f} ms ({figures['changed']:.0f} changed)   "
            f"peak RSS {figures['peak_rss_mb']:6.1f} MB"
        )
    print("  (Wine 8.0 stands in for Windows: these are not Windows figures. CPU per changed capture is")
    print("   the agent's whole CPU between joining and leaving, uploads and heartbeats included, per")
    print("   changed capture; Wine's wineserver process is not counted.)")


if __name__ == "__main__":
    main()
