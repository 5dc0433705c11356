"""Fixtures of the dashboard tests: Debian's Chromium driven by Playwright (never a downloaded browser),
two halls with their invigilators, the real server under gunicorn, and logged-in pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from halls import Hall, add_staff, provision_hall
from pages import login

from dashboard.views import VENDOR_DIR

from support import LiveServer

CHROMIUM = os.environ.get("INVIGIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    if not (VENDOR_DIR / "socket.io.min.js").exists():
        pytest.skip("needs the dashboard's front-end libraries: npm ci --prefix dashboard")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def halls(tmp_path: Path) -> tuple[Hall, Hall]:
    """Hall A (30 seats with a seat map, capture interval 1 s so silence shows fast) and hall B (5 seats)."""
    data_dir = tmp_path / "data"
    hall_a = provision_hall(data_dir, students=30, capture_interval_s=1, extra_time={3: 25})
    hall_b = provision_hall(
        data_dir, hall="Hall B", title="Organic Chemistry", students=5, join_code="HALLB234", prefix="b"
    )
    add_staff(data_dir, "anna", hall_id=hall_a.hall_id)
    add_staff(data_dir, "ben", hall_id=hall_b.hall_id)
    return hall_a, hall_b


@pytest.fixture
def server(halls: tuple[Hall, Hall]) -> Iterator[LiveServer]:
    live = LiveServer(halls[0].data_dir).start(timeout_s=30)
    yield live
    live.stop()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("INVIGIL_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def anna_page(browser, server):
    page = login(browser, server.url, "anna")
    page.wait_for_selector("#hall[data-loaded]")
    yield page
    page.context.close()
