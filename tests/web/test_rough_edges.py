"""Rough edges of the admin UI (issue #13, item 14): a favicon, the API token shown once without being
created again on reload, time zones on timestamps, the bulk actions' order of questions, the test page's
banner, and the template editor's versions card."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mail, Mailroom
from tests.web.conftest import ADMIN, browser_login

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


# --- API token: post/redirect/get --------------------------------------------------------------------


def tokens_of(room: Mailroom, email: str = ADMIN) -> list[str]:
    user = room.users.find_user(SYSTEM, email)
    assert user is not None
    return [token.name for token in room.api_tokens.list(SYSTEM, user.id)]


def test_creating_a_token_redirects_and_shows_it_once(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post("/account/tokens", data={"name": "shop backend", "csrf_token": admin.headers["X-CSRF-Token"]},
                        follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    shown = admin.get("/account").text
    secret = re.search(r'data-testid="new-token">([^<]+)<', shown)
    assert secret and secret.group(1).startswith("mrt_")
    assert secret.group(1) not in answer.headers.get("set-cookie", "")  # the cookie carries it sealed
    again = admin.get("/account").text  # a reload
    assert 'data-testid="new-token"' not in again and secret.group(1) not in again
    assert tokens_of(room) == ["shop backend"]


def test_a_token_form_error_still_shows_on_the_form(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post("/account/tokens", data={"name": "x", "expires_days": "soon",
                                                 "csrf_token": admin.headers["X-CSRF-Token"]})
    assert answer.status_code == 422 and "Expires in days must be a number." in answer.text
    assert tokens_of(room) == []


def test_reloading_after_creating_a_token_creates_no_other(page: Any, room: Mailroom) -> None:
    browser_login(page)
    page.goto("/account")
    page.get_by_label("Token name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_have_text(re.compile("^mrt_"))
    page.reload()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert tokens_of(room) == ["deploy script"]


# --- time zones --------------------------------------------------------------------------------------


def test_timestamps_say_their_time_zone(admin: TestClient, room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="When", text="t"))
    queued_at = room.get_mail(SYSTEM, mail_id).queued_at.astimezone(UTC)
    shown = f"{queued_at:%Y-%m-%d %H:%M:%S} UTC"
    assert shown in admin.get("/log").text
    assert shown in admin.get(f"/log/{mail_id}").text
    assert shown in admin.get("/log", headers={"Accept-Language": "de"}).text
    admin.post("/account/tokens", data={"name": "t", "csrf_token": admin.headers["X-CSRF-Token"]})
    created = re.search(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[^<]*)</td>", admin.get("/account").text)
    assert created and created.group(1).endswith(" UTC")


# --- bulk actions: "nothing selected" before any question ------------------------------------------


def test_a_bulk_action_without_a_selection_says_so_without_asking_first(page: Any, room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Keep me", text="t"))
    questions: list[str] = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    browser_login(page)
    page.goto("/log")
    toolbar = page.locator(".log-toolbar")
    toolbar.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("alert")).to_have_text("Select at least one mail first.")
    assert questions == []
    assert "done=" not in page.url  # nothing was posted

    page.get_by_label("Select: Keep me").check()
    expect(page.get_by_role("alert")).to_have_count(0)
    toolbar.get_by_role("button", name="Cancel").click()  # with a selection, the question comes as before
    expect(page.get_by_role("status")).to_have_text("1 mail cancelled.")
    assert questions == ["Cancel the selected mails?"]
    assert room.get_mail(SYSTEM, mail_id).status.value == "cancelled"


# --- the test page's banner --------------------------------------------------------------------------


def test_the_test_page_banner_does_not_contradict_its_badge(page: Any, room: Mailroom, running_worker: None) -> None:
    browser_login(page)
    page.goto("/test")
    card = page.locator("#test-card")
    card.get_by_label("Subject").fill("Banner check")
    card.get_by_role("button", name="Send test mail").click()
    banner = page.get_by_test_id("sent-banner")
    expect(banner.locator(".badge")).to_have_text("sent")
    words_beside_the_badge = banner.evaluate(
        "b => [...b.childNodes].filter(n => !n.classList?.contains('badge')).map(n => n.textContent).join(' ')")
    assert "queued" not in words_beside_the_badge
    expect(banner).to_contain_text("The mail was accepted. Status: sent")


# --- the template editor's versions card -------------------------------------------------------------

RESET = ("mailroom.account", "password_reset", "en")


def test_the_versions_card_keeps_its_distance_and_the_diff_comes_into_view(page: Any, room: Mailroom) -> None:
    current = room.templates.get_template(SYSTEM, *RESET)
    room.templates.save_template(SYSTEM, replace(current, subject="A new subject for {{ application_name }}"))
    browser_login(page)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto("/templates/{}/{}/{}".format(*RESET))
    editor = page.locator(".grid.editor").bounding_box()
    versions = page.locator("section.card", has=page.get_by_role("heading", name="Versions")).bounding_box()
    assert editor and versions
    assert versions["y"] - (editor["y"] + editor["height"]) >= 16, "the versions card touches the editor"

    page.get_by_role("link", name="Compare with current").click()
    diff = page.get_by_test_id("diff")
    expect(diff).to_contain_text("+A new subject for {{ application_name }}")
    expect(page.get_by_role("heading", name="Differences from version 1 to 2")).to_be_in_viewport()
    expect(diff).to_be_in_viewport()
    assert page.url.endswith("#diff")

    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_role("button", name="Show differences").click()  # the form lands on the diff as well
    expect(page.get_by_role("heading", name="Differences from version 1 to 2")).to_be_in_viewport()
