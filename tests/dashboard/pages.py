"""Logged-in browser pages for the dashboard tests."""

from __future__ import annotations

from halls import PASSWORD

VIEWPORT = {"width": 1366, "height": 768}


def login(browser, base_url: str, username: str, password: str = PASSWORD):
    """A fresh browser context (its own cookies) logged in as ``username``; returns the page."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/dashboard/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return page
