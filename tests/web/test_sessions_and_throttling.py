"""Sessions end when they should, logins are throttled per account and client address, account requests are
rate-limited, codes stay out of the access log and notices show only what the server decided (issue #11:
items 3, 4, 10 and 13)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from mailroom import SYSTEM, Mailroom, ServerSettings
from mailroom.adapters.storage.tables import api_tokens
from mailroom.domain.servers import Security
from mailroom.domain.users import Profile
from mailroom.web import create_app
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, PASSWORD, _free_port, csrf_of, log_in

NEW_PASSWORD = "a brand new passphrase"
COOKIE = "mailroom_session"


def stolen(app: FastAPI, client: TestClient) -> TestClient:
    """A second client holding a copy of ``client``'s session cookie, as a thief would."""
    copy = TestClient(app)
    copy.cookies.set(COOKIE, client.cookies[COOKIE])
    return copy


def works(client: TestClient) -> bool:
    """Whether the cookie still opens the account page and the API."""
    page = client.get("/account", follow_redirects=False)
    api = client.get("/api/v1/tokens")
    assert (page.status_code == 200) == (api.status_code == 200), (page.status_code, api.status_code)
    return page.status_code == 200


# --- item 3: sessions end ---------------------------------------------------------------------------


def test_logout_ends_the_session_on_the_server(app: FastAPI, admin: TestClient) -> None:
    copy = stolen(app, admin)
    assert works(copy)
    admin.post("/logout", data={"csrf_token": admin.headers["X-CSRF-Token"]})
    assert not works(copy)
    assert copy.get("/account", follow_redirects=False).headers["location"].startswith("/login")
    assert copy.get("/api/v1/tokens").status_code == 401


def test_password_change_ends_every_other_session_but_not_this_one(app: FastAPI, admin: TestClient) -> None:
    other = log_in(TestClient(app), ADMIN)
    copy = stolen(app, admin)
    answer = admin.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                   "csrf_token": admin.headers["X-CSRF-Token"]})
    assert answer.status_code == 200 and "Your password was changed" in answer.text
    assert works(admin)
    assert not works(other)
    # The copy of the changing session's cookie stays valid: it is the same session (the thief would
    # have needed the current password to change it).
    assert works(copy)


def test_password_reset_ends_every_session_and_can_revoke_tokens(app: FastAPI, admin: TestClient,
                                                                 client: TestClient, room: Mailroom,
                                                                 smtp_server: SmtpServerHandle) -> None:
    secret = room.api_tokens.create(SYSTEM, room.users.find_user(SYSTEM, ADMIN).id, "shop")[1]  # type: ignore[union-attr]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/tokens", headers=bearer).status_code == 200
    page = client.get("/forgot-password")
    client.post("/forgot-password", data={"email": ADMIN, "csrf_token": csrf_of(page.text)})
    room.deliver_pending()
    text = smtp_server.wait_for(1)[0].message().get_body(("plain",)).get_content()
    link = re.search(r"http://testserver(/reset-password\?code=\S+)", text)
    assert link
    form = client.get(link.group(1))
    assert 'name="revoke_tokens"' in form.text
    code = re.search(r'name="code" value="([^"]+)"', form.text)
    assert code
    client.post("/reset-password", data={"code": code.group(1), "password": NEW_PASSWORD, "revoke_tokens": "on",
                                         "csrf_token": csrf_of(form.text)})
    assert not works(admin)
    assert client.get("/api/v1/tokens", headers=bearer).status_code == 401


def test_disable_ends_the_sessions_and_enabling_again_does_not_revive_them(app: FastAPI, admin: TestClient,
                                                                           room: Mailroom) -> None:
    user = room.users.create_user(SYSTEM, Profile(email="op@example.org"), password=PASSWORD,
                                  roles=["mail-operator"], verified=True, notify_user=False)
    operator = log_in(TestClient(app), "op@example.org")
    assert works(operator)
    room.users.set_enabled(SYSTEM, user.id, False)
    room.users.set_enabled(SYSTEM, user.id, True)
    assert not works(operator)


def test_an_expired_token_is_refused_and_the_account_page_shows_expiry(admin: TestClient, client: TestClient,
                                                                      room: Mailroom) -> None:
    created = admin.post("/api/v1/tokens", json={"name": "ci", "expires_days": 30})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["expires_at"] is not None
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/tokens", headers=bearer).status_code == 200
    assert "Last used" in admin.get("/account").text
    with room.database.write() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == body["id"]).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    refused = client.get("/api/v1/tokens", headers=bearer)
    assert refused.status_code == 401 and "expired" in refused.text


def test_the_account_page_creates_a_token_with_an_expiry(admin: TestClient) -> None:
    page = admin.post("/account/tokens", data={"name": "deploy", "expires_days": "7",
                                               "csrf_token": admin.headers["X-CSRF-Token"]})
    assert page.status_code == 200 and 'data-testid="new-token"' in page.text
    token = next(t for t in admin.get("/api/v1/tokens").json() if t["name"] == "deploy")
    expires = datetime.fromisoformat(token["expires_at"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)


# --- item 4: login throttling -------------------------------------------------------------------------


def login_answer(client: TestClient, email: str, password: str) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)


@pytest.fixture
def strict_app(tmp_path: Path, smtp_server: SmtpServerHandle) -> Iterator[FastAPI]:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'strict.db'}", secret_key_file=str(tmp_path / "key"),
                  self_registration=True, reset_request_floor_seconds=0.0, public_base_url="http://testserver",
                  login_max_failures=3, login_lockout_base_seconds=60.0,
                  account_requests_per_address="3/hour", account_requests_per_client="5/hour") as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="mailroom@example.org"))
        room.users.create_admin(ADMIN, PASSWORD)
        yield create_app(room)


def test_an_attacker_elsewhere_cannot_lock_the_owner_out(strict_app: FastAPI) -> None:
    with TestClient(strict_app, client=("203.0.113.66", 40000)) as attacker, \
            TestClient(strict_app, client=("198.51.100.7", 40000)) as owner:
        answers = [login_answer(attacker, ADMIN, f"guess {n}").status_code for n in range(5)]
        assert answers[:3] == [401, 401, 401] and answers[3:] == [429, 429]
        assert login_answer(attacker, ADMIN, PASSWORD).status_code == 429  # the attacker's address stays locked
        assert login_answer(owner, ADMIN, PASSWORD).status_code == 303


def test_unknown_and_known_accounts_get_the_same_answers(strict_app: FastAPI) -> None:
    with TestClient(strict_app, client=("203.0.113.66", 40000)) as attacker:
        def answers(email: str) -> tuple[list[tuple[int, str]], float]:
            started = time.monotonic()
            found = []
            for n in range(5):
                answer = login_answer(attacker, email, f"guess {n}")
                found.append((answer.status_code, re.sub(r"\d+ seconds", "N seconds", answer.text.replace(
                    email, "EMAIL"))))
            return found, time.monotonic() - started

        known, known_seconds = answers(ADMIN)
        unknown, unknown_seconds = answers("nobody@example.org")
        assert [status for status, _ in known] == [401, 401, 401, 429, 429]
        assert [status for status, _ in unknown] == [status for status, _ in known]
        # Bodies differ only in their CSRF tokens.
        assert [re.sub(r'content="[^"]+"|value="[A-Za-z0-9_-]{40,}"', "", body) for _, body in unknown] == \
            [re.sub(r'content="[^"]+"|value="[A-Za-z0-9_-]{40,}"', "", body) for _, body in known]
        assert unknown_seconds < 5 * known_seconds + 1 and known_seconds < 5 * unknown_seconds + 1


def test_register_does_not_reveal_existing_accounts(strict_app: FastAPI) -> None:
    with TestClient(strict_app) as client:
        def register(email: str) -> httpx.Response:
            page = client.get("/register")
            return client.post("/register", data={"email": email, "password": PASSWORD,
                                                  "csrf_token": csrf_of(page.text)})

        taken, new = register(ADMIN), register("fresh@example.org")
        assert taken.status_code == new.status_code == 200
        assert taken.text.replace(ADMIN, "X") == new.text.replace("fresh@example.org", "X")


@pytest.mark.parametrize("path", ["/register", "/forgot-password"])
def test_account_requests_are_rate_limited_per_address_and_per_client(strict_app: FastAPI, path: str) -> None:
    def post(client: TestClient, email: str) -> int:
        page = client.get(path)
        return client.post(path, data={"email": email, "password": PASSWORD,
                                       "csrf_token": csrf_of(page.text)}).status_code

    with TestClient(strict_app, client=("203.0.113.1", 1)) as one, \
            TestClient(strict_app, client=("203.0.113.2", 1)) as two:
        assert [post(one, "ann@example.org") for _ in range(3)] == [200] * 3
        assert post(two, "ann@example.org") == 429  # per address, whoever asks
        assert [post(one, f"x{n}@example.org") for n in range(2)] == [200, 200]
        assert post(one, "y@example.org") == 429  # per client, whatever the address


# --- item 10: codes stay out of the access log -----------------------------------------------------------


def test_codes_do_not_reach_uvicorns_access_log(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", access_log=True))
    thread = threading.Thread(target=server.run, daemon=True)
    access_logger = logging.getLogger("uvicorn.access")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.02)
        # uvicorn's logging config stops access records from propagating: listen on the logger itself.
        access_logger.addHandler(caplog.handler)
        secret = "SeCrEtCoDe123"
        for path in (f"/reset-password?code={secret}", f"/confirm-email?x=1&code={secret}",
                     f"/login?token={secret}"):
            httpx.get(f"http://127.0.0.1:{port}{path}")
    finally:
        access_logger.removeHandler(caplog.handler)
        server.should_exit = True
        thread.join(timeout=10)
    access = [record for record in caplog.records if record.name == "uvicorn.access"]
    assert len(access) == 3
    for record in access:
        line = logging.Formatter().format(record)
        assert secret not in line and secret not in str(record.args)
        assert "code=" in line or "token=" in line  # redacted, not dropped


# --- item 13: notices are the server's own ------------------------------------------------------------


def test_a_crafted_notice_url_shows_no_attacker_text(admin: TestClient) -> None:
    bait = "Your account is compromised, call +1 555 0100"
    for path in ("/users", "/smtp"):
        for done in ("created", "enabled", "added", "saved"):
            page = admin.get(path, params={"done": done, "email": bait, "name": bait})
            assert page.status_code == 200
            assert bait not in page.text and "555 0100" not in page.text


def test_notices_still_show_after_the_action(admin: TestClient) -> None:
    answer = admin.post("/users", data={"email": "new.user@example.org", "language": "en",
                                        "csrf_token": admin.headers["X-CSRF-Token"]})
    assert answer.status_code == 200
    assert "new.user@example.org was created" in answer.text
    assert "new.user@example.org was created" not in admin.get("/users").text  # shown once
