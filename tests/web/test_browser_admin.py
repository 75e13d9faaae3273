"""The admin pages in a real browser (Debian's chromium through Playwright): the template editor with its
sandboxed preview, the SMTP connection test, and the 403 page for users without the permission."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from mailroom import SYSTEM, Mailroom, ServerSettings
from mailroom.domain.servers import Security
from mailroom.domain.users import Profile
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, PASSWORD, browser_login
from tests.web.test_template_code_editor import code_field, fill_code

RESET = "/templates/mailroom.account/password_reset/en"


@pytest.fixture
def room(tmp_path: Path, smtp_server: SmtpServerHandle, test_ca_file: str) -> Iterator[Mailroom]:
    """The web tests' room, trusting the test CA so a STARTTLS test server gets past STARTTLS."""
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'web.db'}", secret_key_file=str(tmp_path / "key"),
                  reset_request_floor_seconds=0.0, application_name="Acme", public_base_url="http://testserver",
                  smtp_ca_file=test_ca_file) as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="mailroom@example.org"))
        room.users.create_admin(ADMIN, PASSWORD, first_name="Ada")
        yield room


def accept_confirmations(page: Any) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def test_edit_preview_save_and_restore_a_template(page: Any) -> None:
    browser_login(page)
    accept_confirmations(page)
    page.goto(RESET)
    original_subject = page.get_by_label("Subject", exact=True).input_value()
    preview = page.frame_locator("iframe[name=preview-frame]")
    expect(preview.get_by_text("Hello Ann,")).to_be_visible()

    page.get_by_label("Subject", exact=True).fill("Your new {{ application_name }} password")
    fill_code(page, "html", '{% extends "layout.html" %}{% block content %}'
                            "<p>Dear {{ first_name }}, pick a password.</p>{% endblock %}")
    page.get_by_role("button", name="Preview").click()
    expect(preview.get_by_text("Dear Ann, pick a password.")).to_be_visible()
    expect(page.locator("[data-preview-subject]")).to_have_text("Your new Acme password")
    expect(page).to_have_url(re.compile(re.escape(RESET) + "$"))  # previewing does not leave the editor

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("The template was saved as a new version.")
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(preview.get_by_text("Dear Ann, pick a password.")).to_be_visible()

    page.get_by_role("link", name="Compare with current").click()
    expect(page.get_by_test_id("diff")).to_contain_text("+Your new {{ application_name }} password")

    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("The version was restored as a new version.")
    expect(page.get_by_label("Subject", exact=True)).to_have_value(original_subject)
    expect(page.locator("tbody tr")).to_have_count(3)


def test_a_syntax_error_points_at_its_line(page: Any) -> None:
    browser_login(page)
    page.goto(RESET)
    fill_code(page, "text", "Hello {{ first_name }},\n\n{% if %}\n")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("editor-error")).to_contain_text("Syntax error in the text body, line 3")
    expect(code_field(page, "text")).to_be_focused()
    expect(code_field(page, "text")).to_have_attribute("aria-invalid", "true")


def test_a_wrong_smtp_password_fails_the_test_at_login(
        page: Any, smtp_server_factory: Callable[..., SmtpServerHandle]) -> None:
    guarded = smtp_server_factory(auth=("user", "secret"), tls="starttls")
    browser_login(page)
    page.goto("/smtp")
    page.get_by_role("link", name="Add SMTP server").click()
    page.get_by_label("Name", exact=True).fill("guarded")
    page.get_by_label("Host", exact=True).fill(guarded.host)
    page.get_by_label("Port", exact=True).fill(str(guarded.port))
    page.get_by_label("Security").select_option("starttls")
    page.get_by_label("Username", exact=True).fill("user")
    page.get_by_label("Password", exact=True).fill("not the secret")
    page.get_by_role("button", name="Add server").click()
    expect(page.get_by_role("status")).to_contain_text("The SMTP server guarded was added.")

    row = page.locator("tr[data-server=guarded]")
    expect(row).to_contain_text("yes")  # a password is stored, and nothing more is shown of it
    row.get_by_role("button", name="Test connection").click()
    probe = page.get_by_test_id("probe")
    expect(probe.get_by_role("alert")).to_have_text("The test failed at: Login.")
    expect(probe.locator("li.ok")).to_have_count(3)  # connect, EHLO, STARTTLS
    expect(probe.locator("li[data-step=login]")).to_have_class(re.compile(r"\bbad\b"))
    expect(page.locator("body")).not_to_contain_text("not the secret")
    assert guarded.logins == []


def test_a_user_without_the_permission_gets_the_403_page(page: Any, room: Mailroom) -> None:
    room.users.create_user(SYSTEM, Profile(email="nobody@example.org"), password=PASSWORD, verified=True,
                           notify_user=False)
    browser_login(page, "nobody@example.org")
    for path in ("/smtp/new", "/users"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("link", name="SMTP servers")).to_have_count(0)
