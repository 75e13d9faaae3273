"""Login, logout, CSRF, session cookie flags, security headers, account pages and API tokens."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from mailroom import Mailroom
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, PASSWORD, csrf_of, log_in


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(client: TestClient) -> None:
    assert client.get("/account", follow_redirects=False).headers["location"] == "/login?next=/account"
    page = client.get("/login")
    assert page.status_code == 200 and "Log in" in page.text
    answer = client.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                         "next": "/account"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    account = client.get("/account")
    assert ADMIN in account.text
    client.post("/logout", data={"csrf_token": csrf_of(account.text)})
    assert client.get("/account", follow_redirects=False).status_code == 303


def test_forms_without_the_csrf_token_are_refused(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"email": ADMIN, "password": PASSWORD})
    assert answer.status_code == 403 and "reload the page" in answer.text
    answer = client.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": "forged"})
    assert answer.status_code == 403


def test_open_redirects_are_refused(client: TestClient) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                         "next": "//evil.example/"}, follow_redirects=False)
    assert answer.headers["location"] == "/"


def test_wrong_password_is_slowed_down(client: TestClient, room: Mailroom) -> None:
    token = csrf_of(client.get("/login").text)
    for _ in range(room.settings.login_max_failures):
        answer = client.post("/login", data={"email": ADMIN, "password": "wrong", "csrf_token": token})
        assert answer.status_code == 401 and "Wrong e-mail address or password." in answer.text
    answer = client.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 429 and "Too many failed logins" in answer.text


def test_pages_carry_a_content_security_policy(client: TestClient) -> None:
    headers = client.get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_german_users_get_german_pages(client: TestClient) -> None:
    page = client.get("/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert "Anmelden" in page.text and "Passwort vergessen?" in page.text


def test_register_confirm_and_log_in_through_the_pages(client: TestClient, room: Mailroom,
                                                       smtp_server: SmtpServerHandle) -> None:
    page = client.get("/register")
    answer = client.post("/register", data={"email": "new@example.org", "password": "short",
                                            "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 422 and "too short" in answer.text
    answer = client.post("/register", data={"email": "new@example.org", "password": PASSWORD,
                                            "csrf_token": csrf_of(page.text)})
    assert "We sent a confirmation link to new@example.org" in answer.text
    room.deliver_pending()
    text = smtp_server.wait_for(1)[0].message().get_body(("plain",)).get_content()
    link = re.search(r"http://testserver(/confirm-email\?code=\S+)", text)
    assert link
    confirm = client.get(link.group(1))
    assert confirm.status_code == 200
    code = re.search(r'name="code" value="([^"]+)"', confirm.text)
    assert code
    done = client.post("/confirm-email", data={"code": code.group(1), "csrf_token": csrf_of(confirm.text)},
                       follow_redirects=False)
    assert done.headers["location"] == "/login?done=confirmed"
    log_in(client, "new@example.org")


def test_forgot_and_reset_password_through_the_pages(client: TestClient, room: Mailroom,
                                                     smtp_server: SmtpServerHandle) -> None:
    page = client.get("/forgot-password")
    known = client.post("/forgot-password", data={"email": ADMIN, "csrf_token": csrf_of(page.text)})
    unknown = client.post("/forgot-password", data={"email": "nobody@example.org",
                                                    "csrf_token": csrf_of(page.text)})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(ADMIN, "X") == unknown.text.replace("nobody@example.org", "X")
    room.deliver_pending()
    text = smtp_server.wait_for(1)[0].message().get_body(("plain",)).get_content()
    link = re.search(r"http://testserver(/reset-password\?code=\S+)", text)
    assert link
    form = client.get(link.group(1))
    code = re.search(r'name="code" value="([^"]+)"', form.text)
    assert code
    done = client.post("/reset-password", data={"code": code.group(1), "password": "a new long passphrase",
                                                "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert done.headers["location"] == "/login?done=reset"
    log_in(client, ADMIN, "a new long passphrase")


def test_api_tokens_are_shown_once_and_can_be_revoked(admin: TestClient, client: TestClient) -> None:
    page = admin.post("/account/tokens", data={"name": "shop backend", "csrf_token": admin.headers["X-CSRF-Token"]})
    token = re.search(r'data-testid="new-token">([^<]+)<', page.text)
    assert token
    secret = token.group(1)
    assert client.get("/api/v1/health", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = admin.get("/account").text
    assert "shop backend" in listing and secret not in listing
    token_id = re.search(r'/account/tokens/([0-9a-f]+)/revoke', listing)
    assert token_id
    admin.post(f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": admin.headers["X-CSRF-Token"]})
    assert "revoked" in admin.get("/account").text


def test_translated_text_is_escaped_not_read_as_html(admin: TestClient) -> None:
    """The account page said 'Send it as "Authorization: Bearer ".': newstyle gettext with autoescape took
    "<token>" from the catalogue as a tag."""
    page = admin.get("/account").text
    assert "Bearer &lt;token&gt;" in page and "Bearer <token>" not in page
    german = admin.get("/account", headers={"Accept-Language": "de"}).text
    assert "Bearer &lt;token&gt;" in german
