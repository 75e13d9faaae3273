"""Fixtures of the web tests: an app over a fresh database, clients logged in as users with given roles,
and, for browser tests, the app served by uvicorn on 127.0.0.1 plus Debian's chromium through Playwright.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom, ServerSettings
from mailroom.domain.servers import Security
from mailroom.domain.users import Profile
from mailroom.web import create_app
from tests.support.smtp_servers import SmtpServerHandle

PASSWORD = "a long test passphrase"
ADMIN = "admin@example.org"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def room(tmp_path: Path, smtp_server: SmtpServerHandle) -> Iterator[Mailroom]:
    """SQLite, a real aiosmtpd server as the only SMTP server, and an administrator."""
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'web.db'}", secret_key_file=str(tmp_path / "key"),
                  self_registration=True, reset_request_floor_seconds=0.0, application_name="Acme",
                  public_base_url="http://testserver") as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="mailroom@example.org"))
        room.users.create_admin(ADMIN, PASSWORD, first_name="Ada")
        yield room


@pytest.fixture
def app(room: Mailroom) -> FastAPI:
    return create_app(room)


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/login")
    token = csrf_of(page.text)
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    client.headers["X-CSRF-Token"] = csrf_of(client.get("/account").text)
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "the page has no CSRF meta tag"
    return match.group(1)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """Not logged in."""
    with TestClient(app) as anonymous:
        yield anonymous


@pytest.fixture
def admin(app: FastAPI) -> Iterator[TestClient]:
    """Logged in as the administrator (session cookie + the CSRF header for JSON calls)."""
    with TestClient(app) as logged_in:
        yield log_in(logged_in, ADMIN)


@pytest.fixture
def german(app: FastAPI, room: Mailroom) -> Iterator[TestClient]:
    """An administrator whose preferred language is German (it wins over the browser's)."""
    room.users.create_user(SYSTEM, Profile(email="greta@example.org", preferred_language="de"), password=PASSWORD,
                           roles=["admin"], verified=True, notify_user=False)
    with TestClient(app, headers={"Accept-Language": "en-US"}) as client:
        yield log_in(client, "greta@example.org")


@pytest.fixture
def user_with(app: FastAPI, room: Mailroom) -> Iterator[Callable[..., TestClient]]:
    """``user_with("mail-operator")``: a client logged in as a new verified user with these roles."""
    clients: list[TestClient] = []

    def make(*roles: str) -> TestClient:
        email = f"user{len(clients)}@example.org"
        room.users.create_user(SYSTEM, Profile(email=email), password=PASSWORD, roles=list(roles), verified=True,
                               notify_user=False)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return log_in(client, email)

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def api_token(room: Mailroom, email: str = ADMIN) -> str:
    user = room.users.find_user(SYSTEM, email)
    assert user is not None
    return room.api_tokens.create(SYSTEM, user.id, "tests")[1]


@pytest.fixture
def running_worker(room: Mailroom) -> Iterator[None]:
    """A delivery worker in a background thread (its own event loop), as in production."""
    import asyncio

    loop = asyncio.new_event_loop()
    worker = room.create_worker()
    thread = threading.Thread(target=lambda: loop.run_until_complete(room.run_worker(worker=worker)), daemon=True)
    thread.start()
    yield
    loop.call_soon_threadsafe(worker.stop)
    thread.join(timeout=30)
    loop.close()


# --- browser tests ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn in a thread; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright; in CI a missing chromium fails the test instead of skipping.

    Per test, not per session: Playwright's sync API keeps an event loop running in the main thread while
    it is open, and later tests need ``asyncio.run`` (``room.deliver_pending()``).
    """
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is needed in CI (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live_server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page on the live server; a screenshot lands in test-artifacts/ when the test ends."""
    context = browser.new_context(base_url=live_server, locale="en-US", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()


def browser_login(page: Any, email: str = ADMIN, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/$"))
