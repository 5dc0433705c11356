"""Logged-in browser pages for the dashboard tests."""

from __future__ import annotations

import time

from halls import PASSWORD

VIEWPORT = {"width": 1366, "height": 768}


def login(browser, base_url: str, username: str, password: str = PASSWORD, locale: str | None = None):
    """A fresh browser context (its own cookies, and ``locale``'s Accept-Language when given) logged in as
    ``username``; returns the page."""
    context = browser.new_context(viewport=VIEWPORT, **({"locale": locale} if locale else {}))
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/dashboard/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return page


def image_width(img, timeout_s: float = 15.0) -> int:
    """The natural width of a loaded ``<img>`` (a Playwright locator), waiting for it to load.

    Polled from here, not with ``page.wait_for_function``: Playwright re-runs a string predicate in the page
    with ``eval``, which the dashboard's Content-Security-Policy (no 'unsafe-eval') refuses as soon as the
    first check comes too early.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        width = img.evaluate("element => element.complete ? element.naturalWidth : 0")
        if width or time.monotonic() > deadline:
            return int(width)
        time.sleep(0.05)
