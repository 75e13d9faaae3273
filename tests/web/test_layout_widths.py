"""Every page fits a phone (390x844) and a laptop (1366x900): nothing scrolls sideways, wide tables scroll
inside their card or become stacked rows, and the top bar stays small on the phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from mailroom import SYSTEM, Mailroom
from tests.support.smtp_servers import SmtpServerHandle
from tests.support.ui_pages import ANONYMOUS_PAGES, admin_pages, fill
from tests.web.conftest import ADMIN, ARTIFACTS, PASSWORD

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}
TOPBAR_MAX_PX_ON_PHONE = 100


@pytest.fixture
def paths(room: Mailroom, smtp_server: SmtpServerHandle) -> dict[str, str]:
    return admin_pages(fill(room, smtp_server))


def open_context(browser: Any, live_server: str, viewport: dict[str, int], *, logged_in: bool,
                 language: str = "en") -> Any:
    context = browser.new_context(base_url=live_server, locale="de-DE" if language == "de" else "en-US",
                                  viewport=viewport)
    if logged_in:
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=email]", ADMIN)
        page.fill("input[name=password]", PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(re.compile(r".*/$"))
    return context


@pytest.fixture
def viewport_pages(paths: dict[str, str], browser: Any, live_server: str) -> Iterator[Any]:
    """Depends on ``paths`` so the data is filled (``asyncio.run``) before Playwright starts its loop."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int], *, logged_in: bool = True, language: str = "en") -> Any:
        context = open_context(browser, live_server, viewport, logged_in=logged_in, language=language)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield make
    for context in contexts:
        context.close()


def overflow(page: Any) -> dict[str, Any]:
    """How wide the document is against the window, and which elements stick out (for the message)."""
    result: dict[str, Any] = page.evaluate("""() => {
        const width = window.innerWidth;
        const clipped = e => {
            for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                if (getComputedStyle(a).overflowX !== 'visible') return true;
            }
            return false;
        };
        const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > width + 0.5 && !clipped(e))
            .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)
            .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                                  + ' ' + Math.round(e.getBoundingClientRect().right));
        return {scroll: document.documentElement.scrollWidth, inner: width, wide};
    }""")
    return result


@pytest.mark.parametrize("language", ["en", "de"])
@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390px", "1366px"])
def test_no_page_scrolls_sideways(room: Mailroom, viewport_pages: Any, paths: dict[str, str],
                                  viewport: dict[str, int], language: str) -> None:
    """German too: its words are longer."""
    admin = room.users.find_user(SYSTEM, ADMIN)
    assert admin is not None
    room.users.update_profile(SYSTEM, admin.id, replace(admin.profile, preferred_language=language),
                              notify_user=False)
    too_wide: dict[str, dict[str, Any]] = {}
    for logged_in, pages in ((True, paths), (False, ANONYMOUS_PAGES)):
        page = viewport_pages(viewport, logged_in=logged_in, language=language)
        for name, path in pages.items():
            page.goto(path)
            page.wait_for_load_state("load")
            measured = overflow(page)
            if measured["scroll"] > measured["inner"]:
                too_wide[name] = measured
    assert not too_wide, f"pages wider than the {viewport['width']} px window: {too_wide}"


def test_the_top_bar_stays_small_on_a_phone(viewport_pages: Any, paths: dict[str, str]) -> None:
    page = viewport_pages(PHONE)
    page.goto(paths["log"])
    page.wait_for_load_state("load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "log-390px.png"), full_page=True)
    height = page.evaluate("() => document.querySelector('header.topbar').getBoundingClientRect().height")
    assert height <= TOPBAR_MAX_PX_ON_PHONE
    for name, path in paths.items():
        page.goto(path)
        links = page.evaluate("""() => [...document.querySelectorAll('.mainnav a')]
            .map(a => { const r = a.getBoundingClientRect(); return r.width > 0 && r.height > 0; })""")
        assert all(links), f"{name}: a link of the main menu is hidden"
