"""Accessibility of every page, in chromium: axe-core (packaged by axe-playwright-python, no network) finds
no serious or critical violation at either width, every table header cell has a name, the main menu marks
the current page, and a skip link leads to the content."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailroom import Mailroom
from tests.support.smtp_servers import SmtpServerHandle
from tests.support.ui_pages import ANONYMOUS_PAGES, admin_pages, fill
from tests.web.conftest import browser_login

BLOCKING = {"serious", "critical"}


@pytest.fixture
def paths(room: Mailroom, smtp_server: SmtpServerHandle) -> dict[str, str]:
    return admin_pages(fill(room, smtp_server))


@pytest.fixture
def contexts(paths: dict[str, str], browser: Any, live_server: str) -> Iterator[Any]:
    """Depends on ``paths`` so the data is filled (``asyncio.run``) before Playwright starts its loop."""
    opened: list[Any] = []

    def make(width: int, *, logged_in: bool) -> Any:
        context = browser.new_context(base_url=live_server, locale="en-US",
                                      viewport={"width": width, "height": 900})
        opened.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        if logged_in:
            browser_login(page)
        return page

    yield make
    for context in opened:
        context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    violations: list[dict[str, Any]] = Axe().run(page).response["violations"]
    return violations


@pytest.mark.parametrize("width", [390, 1366])
def test_axe_finds_nothing_serious_on_any_page(contexts: Any, paths: dict[str, str], width: int) -> None:
    found: dict[str, list[str]] = {}
    for logged_in, pages in ((True, paths), (False, ANONYMOUS_PAGES)):
        page = contexts(width, logged_in=logged_in)
        for name, path in pages.items():
            page.goto(path)
            page.wait_for_load_state("load")
            blocking = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
                        for v in axe_violations(page) if v["impact"] in BLOCKING]
            if blocking:
                found[name] = blocking
    assert not found, f"serious or critical axe-core violations: {found}"


def test_header_cells_have_text_and_the_menu_marks_the_current_page(contexts: Any, paths: dict[str, str]) -> None:
    page = contexts(1366, logged_in=True)
    empty: dict[str, int] = {}
    for name, path in paths.items():
        page.goto(path)
        count = page.evaluate("""() => [...document.querySelectorAll('th')]
            .filter(th => th.textContent.trim() === '' && !th.querySelector('[aria-label]')).length""")
        if count:
            empty[name] = count
    assert not empty, f"header cells without text: {empty}"

    for path, label in (("/", "Overview"), ("/log", "Log"), (paths["mail-sent"], "Log"),
                        ("/templates/mailroom.account", "Templates"), ("/smtp/new", "SMTP servers"),
                        ("/users", "Users"), ("/test", "Test")):
        page.goto(path)
        current = page.locator(".mainnav [aria-current]")
        assert current.count() == 1, path
        assert current.get_attribute("aria-current") == "page"
        assert current.inner_text() == label, path
    page.goto("/account")
    assert page.locator(".mainnav [aria-current]").count() == 0


def test_a_skip_link_leads_to_the_content(contexts: Any) -> None:
    page = contexts(1366, logged_in=True)
    page.goto("/log")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    assert skip.inner_text() == "Skip to content"
    assert skip.is_visible(), "the skip link shows when it has the focus"
    skip.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "content"
    page.goto("/login")
    page.keyboard.press("Tab")
    assert page.locator(":focus").inner_text() == "Skip to content"
