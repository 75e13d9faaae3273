"""A mail that cannot go out, in chromium at 1366 and 390 px, in English and German (issue #13, item 1):
the test page warns before sending, its banner after sending is a warning, and the mail's page says why.
Screenshots of each step land in test-artifacts/ (why-*.png) for the review note."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mailroom import SYSTEM, Mailroom, ServerSettings
from mailroom.domain.users import Profile
from tests.web.conftest import ARTIFACTS, PASSWORD

TEXTS = {
    "en": {"warning": "No SMTP server is enabled: a mail sent now waits in the queue until one is.",
           "queued": "The mail is queued, but it cannot go out: no SMTP server is enabled.",
           "detail": "This mail cannot go out: no SMTP server is enabled.",
           "next": "once an SMTP server is enabled", "last error": "no enabled SMTP server is configured"},
    "de": {"warning": "Kein SMTP-Server ist aktiviert: Eine jetzt gesendete Mail wartet in der Warteschlange",
           "queued": "Die Mail ist in der Warteschlange, kann aber nicht versendet werden",
           "detail": "Diese Mail kann nicht versendet werden: Kein SMTP-Server ist aktiviert.",
           "next": "sobald ein SMTP-Server aktiviert ist",
           "last error": "Es ist kein aktiver SMTP-Server eingerichtet"},
}


@pytest.mark.parametrize("width", [1366, 390])
@pytest.mark.parametrize("language", ["en", "de"])
def test_a_mail_that_cannot_go_out_says_why(browser: Any, live_server: str, room: Mailroom, language: str,
                                             width: int) -> None:
    relay = room.servers.get(SYSTEM, "relay")
    room.servers.update(SYSTEM, "relay", ServerSettings(name=relay.name, host=relay.host, port=relay.port,
                                                        security=relay.security, sender=relay.sender, enabled=False))
    email = f"operator-{language}@example.org"
    room.users.create_user(SYSTEM, Profile(email=email, preferred_language=language), password=PASSWORD,
                           roles=["admin"], verified=True, notify_user=False)
    texts = TEXTS[language]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = f"why-{language}-{width}"
    context = browser.new_context(base_url=live_server, locale="de-DE" if language == "de" else "en-US",
                                  viewport={"width": width, "height": 900 if width > 400 else 844})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/login")
        page.locator("input[name=email]").fill(email)
        page.locator("input[name=password]").fill(PASSWORD)
        page.locator("main form button[type=submit]").click()
        page.wait_for_url(re.compile(r".*/$"))

        page.goto("/test")
        warning = page.get_by_test_id("cannot-send-warning")
        assert warning.is_visible()
        assert texts["warning"] in warning.inner_text()
        page.screenshot(path=str(ARTIFACTS / f"{shot}-1-test-page-warns.png"), full_page=True)

        page.locator("#test-card button[type=submit]").click()
        page.wait_for_url(re.compile(r".*/test\?sent=\w+"))
        banner = page.get_by_test_id("sent-banner")
        assert "warn" in (banner.get_attribute("class") or "")
        assert texts["queued"] in banner.inner_text()
        page.screenshot(path=str(ARTIFACTS / f"{shot}-2-queued-with-a-warning.png"), full_page=True)

        banner.get_by_role("link").click()
        page.wait_for_url(re.compile(r".*/log/\w+$"))
        reason = page.get_by_test_id("cannot-go-out")
        assert reason.is_visible() and texts["detail"] in reason.inner_text()
        facts = page.locator("dl.facts").first.inner_text()
        assert texts["last error"] in facts  # the mail's last error, in the reader's language
        assert texts["next"] in facts
        page.screenshot(path=str(ARTIFACTS / f"{shot}-3-mail-says-why.png"), full_page=True)
    finally:
        context.close()
