"""The app works mounted under a prefix in another ASGI application."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailroom import Mailroom
from mailroom.web import create_app
from tests.web.conftest import ADMIN, PASSWORD, csrf_of


def test_mounted_under_a_prefix_links_and_cookies_stay_inside_it(room: Mailroom) -> None:
    parent = FastAPI()

    @parent.get("/")
    def home() -> dict[str, str]:
        return {"app": "parent"}

    parent.mount("/mail", create_app(room))
    with TestClient(parent) as client:
        assert client.get("/").json() == {"app": "parent"}
        assert client.get("/mail/account", follow_redirects=False).headers["location"] == \
            "/mail/login?next=/account"
        page = client.get("/mail/login")
        assert 'href="/mail/static/app.css"' in page.text
        assert client.get("/mail/static/app.css").status_code == 200
        answer = client.post("/mail/login", data={"email": ADMIN, "password": PASSWORD,
                                                  "csrf_token": csrf_of(page.text), "next": "/account"},
                             follow_redirects=False)
        assert answer.headers["location"] == "/mail/account"
        assert re.search(r"path=/mail", answer.headers["set-cookie"], flags=re.IGNORECASE)
        assert ADMIN in client.get("/mail/account").text
        assert client.get("/mail/api/v1/health").json()["status"] == "ok"
