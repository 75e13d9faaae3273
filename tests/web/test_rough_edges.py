"""Rough edges of the admin UI (issue #13, item 14): a favicon, the API token shown once without being
created again on reload, time zones on timestamps, the bulk actions' order of questions, the test page's
banner, and the template editor's versions card."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import browser_login

expect: Any = pytest.importorskip("playwright.sync_api").expect


# --- favicon -----------------------------------------------------------------------------------------


def test_every_page_names_the_favicon_and_it_is_served(client: TestClient, admin: TestClient) -> None:
    for page in (client.get("/login"), admin.get("/"), admin.get("/log"), admin.get("/no-such-page")):
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    # Browsers ask for /favicon.ico by themselves where no page names an icon (a JSON answer opened in a tab).
    legacy = client.get("/favicon.ico", follow_redirects=True)
    assert legacy.status_code == 200 and legacy.content == icon.content


def test_the_browser_finds_the_favicon(page: Any) -> None:
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    browser_login(page)
    page.goto("/log")
    expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "/static/favicon.svg")
    page.wait_for_load_state("networkidle")
    assert failed == []
