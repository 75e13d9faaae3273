"""The mail pages in a real browser (Debian's chromium through Playwright): send and watch, search and
filter, open a mail and download it, send a template mail with a JSON model.

No timing is asserted: ``expect`` waits until the page shows what it should (or the page fixture's
timeout passes).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, browser_login

expect: Any = pytest.importorskip("playwright.sync_api").expect


def deliver(room: Mailroom) -> None:
    """Deliver what is due. Playwright's sync API keeps an event loop in this thread, so the worker (which
    runs its own) goes to another one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(room.deliver_pending).result()


def watch_console(page: Any) -> list[str]:
    """CSP violations the page reports: the pages must need no inline script or style."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text)
            if "Content Security Policy" in message.text else None)
    return problems


def test_a_test_mail_goes_out_and_its_badge_follows(page: Any, room: Mailroom, running_worker: None,
                                                    smtp_server: SmtpServerHandle) -> None:
    problems = watch_console(page)
    browser_login(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Test").click()
    card = page.locator("#test-card")
    expect(card.get_by_label("Recipient")).to_have_value(ADMIN)
    card.get_by_label("Subject").fill("Browser test mail")
    card.get_by_label("Message").fill("Sent by chromium.")
    card.get_by_role("button", name="Send test mail").click()

    banner = page.get_by_test_id("sent-banner")
    expect(banner).to_contain_text("The mail was accepted. Status:")
    expect(banner.locator(".badge")).to_have_text("sent")  # followed through the JSON API, no reload
    assert smtp_server.wait_for(1)[0].message()["Subject"] == "Browser test mail"

    banner.get_by_role("link", name="Open its log entry").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Browser test mail")
    expect(page.locator(".detail-head .badge")).to_have_text("sent")
    expect(page.get_by_test_id("text-body")).to_contain_text("Sent by chromium.")
    assert problems == []


def test_the_log_shows_a_mail_turning_sent_without_reload(page: Any, room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Watch me", text="t"))
    browser_login(page)
    page.goto("/log")
    badge = page.locator(f'tr[data-mail-id="{mail_id}"] .badge')
    expect(badge).to_have_text("queued")
    deliver(room)
    expect(badge).to_have_text("sent")
    expect(badge).to_have_class(re.compile(r"\bstatus-sent\b"))


def test_search_and_filter_the_log(page: Any, room: Mailroom) -> None:
    problems = watch_console(page)
    room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Quarterly report", text="t", tags=["reports"]))
    room.send_mail(SYSTEM, Mail(to="bob@example.org", subject="Quarterly invoice", text="t"))
    room.send_mail(SYSTEM, Mail(to="carl@example.org", subject="Newsletter", text="t"))
    deliver(room)
    room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Quarterly report again", text="t"))
    browser_login(page)
    page.goto("/log")
    rows = page.locator("table.log-table tbody tr")
    expect(page.get_by_test_id("log-total")).to_have_text("4 entries")

    search = page.get_by_label("Search", exact=True)
    search.fill('subject:"quarterly report" -status:sent')
    search.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Quarterly report again")
    expect(search).to_have_value('subject:"quarterly report" -status:sent')
    assert "q=subject" in page.url  # the view can be shared

    search.fill("quarterly")
    search.press("Enter")
    expect(page.get_by_test_id("log-total")).to_have_text("3 entries")
    # A select inside its label is named by the label and the chosen option: "Status Any status".
    page.get_by_role("combobox", name=re.compile("^Status")).select_option("sent")  # applies at once (log.js)
    expect(page.get_by_test_id("log-total")).to_have_text("2 entries")
    assert "status=sent" in page.url and "q=quarterly" in page.url
    page.get_by_role("combobox", name=re.compile("^Time range")).select_option("1h")
    expect(page.get_by_test_id("log-total")).to_have_text("2 entries")

    page.get_by_role("link", name="Subject").click()
    expect(rows.first).to_contain_text("Quarterly invoice")  # A to Z
    page.get_by_role("link", name=re.compile("^Subject")).click()
    expect(rows.first).to_contain_text("Quarterly report")  # Z to A

    search.fill("status:snt")
    search.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("unknown status 'snt' (did you mean 'sent'?)")
    assert problems == []


def test_bulk_cancel_with_a_confirmation(page: Any, room: Mailroom) -> None:
    ids = room.send_mails(SYSTEM, [Mail(to="a@example.org", subject=f"bulk {n}", text="t") for n in range(3)])
    browser_login(page)
    page.goto("/log")
    page.get_by_label("Select all mails on this page").check()
    expect(page.locator("[data-selection-count]")).to_have_text("3 selected")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel", exact=True).first.click()
    expect(page.get_by_role("status")).to_have_text("3 mails cancelled.")
    assert {room.get_mail(SYSTEM, i).status for i in ids} == {MailStatus.CANCELLED}


def test_open_a_mail_and_download_its_eml(page: Any, room: Mailroom, tmp_path: Path) -> None:
    problems = watch_console(page)
    mail_id = room.send_mail(SYSTEM, Mail(to="Ann <ann@example.org>", subject="Detail view", text="Plain part",
                                          html='<h1 style="color:#2563eb">Rich part</h1>'))
    deliver(room)
    browser_login(page)
    page.goto("/log")
    page.get_by_role("link", name="Detail view").click()
    expect(page).to_have_url(re.compile(f"/log/{mail_id}$"))
    expect(page.locator(".detail-head .badge")).to_have_text("sent")
    recipients = page.locator("section", has=page.get_by_role("heading", name="Recipients"))
    expect(recipients.get_by_role("row", name=re.compile("ann@example.org"))).to_contain_text("accepted")
    expect(page.frame_locator("iframe.mail-body").get_by_role("heading")).to_have_text("Rich part")
    expect(page.get_by_test_id("text-body")).to_contain_text("Plain part")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download .eml").click()
    download = info.value
    assert download.suggested_filename == f"{mail_id}.eml"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes() == room.log.raw_message(SYSTEM, mail_id)
    assert problems == []


def test_send_a_template_mail_with_a_json_model(page: Any, room: Mailroom, running_worker: None,
                                                smtp_server: SmtpServerHandle) -> None:
    problems = watch_console(page)
    browser_login(page)
    page.goto("/test")
    card = page.locator("#template-card")
    card.get_by_role("combobox", name=re.compile("^Template set")).select_option("mailroom.account")
    card.get_by_role("combobox", name=re.compile(r"^Template(?! set)")).select_option("notification")
    model = card.get_by_label("Model (JSON)")
    expect(model).to_have_value(re.compile('"notification_title"'))  # the declared sample values (log.js)

    model.fill('{"application_name": "Acme", "first_name": "Ann",')
    card.get_by_role("button", name="Send template mail").click()
    expect(page.get_by_test_id("template-error")).to_contain_text("the model is not valid JSON")
    assert room.search_mail_log(SYSTEM).total == 0

    values = {"application_name": "Acme", "first_name": "Ann", "notification_title": "Build finished",
              "message": "All 42 checks passed.", "action_url": "https://ci.example/builds/7",
              "action_label": "Open the build"}
    card = page.locator("#template-card")
    card.get_by_label("Recipient").fill("ann@example.org")
    card.get_by_role("combobox", name=re.compile("^Language")).select_option("de")
    card.get_by_label("Model (JSON)").fill(json.dumps(values, indent=2))
    page.evaluate("window.stillThisPage = true")
    card.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    expect(preview.get_by_test_id("preview-subject")).to_contain_text("Build finished")
    expect(preview.get_by_test_id("preview-text")).to_contain_text("All 42 checks passed.")
    expect(page.frame_locator("#preview-area iframe").get_by_role("link", name="Open the build")).to_be_visible()
    assert page.evaluate("window.stillThisPage") is True  # swapped in by log.js, not a page load
    assert room.search_mail_log(SYSTEM).total == 0  # a preview sends nothing

    page.locator("#template-card").get_by_role("button", name="Send template mail").click()
    expect(page.get_by_test_id("sent-banner").locator(".badge")).to_have_text("sent")
    received = smtp_server.wait_for(1)[0].message()
    assert "Build finished" in received["Subject"]
    assert "All 42 checks passed." in received.get_body(("plain",)).get_content()
    assert problems == []
