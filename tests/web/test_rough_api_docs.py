"""``/api/docs`` shows Swagger UI from files we serve ourselves, under a CSP that allows exactly our own
origin's scripts and styles: no CDN, no inline script (issue #13, item 15)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailroom import Mailroom
from mailroom.web import create_app
from tests.web.conftest import browser_login

expect: Any = pytest.importorskip("playwright.sync_api").expect


def test_the_docs_page_loads_only_our_own_files(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in csp and "http" not in csp
    assert "<script>" not in page.text and "<style" not in page.text  # nothing inline
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/") for source in sources), sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
    assert client.get("/api/docs/swagger-ui/swagger-ui-bundle.js").headers["content-type"].startswith(
        "text/javascript")
    assert client.get("/api/docs/swagger-ui/swagger-ui.css").headers["content-type"].startswith("text/css")
    # Only the files the page needs: not the package's demo page (which loads the petstore) nor anything else.
    for other in ("index.html", "swagger-initializer.js", "oauth2-redirect.html", "..%2F__init__.py", "nothing.js"):
        assert client.get(f"/api/docs/swagger-ui/{other}").status_code == 404, other


def test_the_document_swagger_ui_reads_describes_the_same_api(client: TestClient) -> None:
    page = client.get("/api/docs").text
    document_url = re.search(r'data-openapi-url="([^"]+)"', page)
    assert document_url
    shown = client.get(document_url.group(1)).json()
    served = client.get("/api/v1/openapi.json").json()
    assert shown["paths"].keys() == served["paths"].keys()
    assert shown["info"] == served["info"]
    if shown["openapi"].startswith("3.0"):  # Swagger UI 4 reads 3.0 only: no 3.1 constructs are left
        text = json.dumps(shown)
        assert '{"type": "null"}' not in text and '"const"' not in text and '"nullable": true' in text
        sender = shown["components"]["schemas"]["SendMailRequest"]["properties"]["sender"]
        assert sender["nullable"] is True and sender["type"] == "string"


def test_the_docs_work_under_a_prefix(room: Mailroom) -> None:
    parent = FastAPI()
    parent.mount("/mail", create_app(room))
    with TestClient(parent) as client:
        page = client.get("/mail/api/docs").text
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert all(source.startswith("/mail/") for source in sources), sources
        assert all(client.get(source).status_code == 200 for source in sources)
        document_url = re.search(r'data-openapi-url="([^"]+)"', page)
        assert document_url and document_url.group(1).startswith("/mail/")
        assert client.get(document_url.group(1)).json()["servers"] == [{"url": "/mail"}]  # "Try it out" stays inside


def test_swagger_ui_shows_the_api_in_the_browser(page: Any, live_server: str) -> None:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    elsewhere: list[str] = []
    page.on("request", lambda request: elsewhere.append(request.url)
            if not request.url.startswith((live_server, "data:")) else None)
    browser_login(page)
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("mailroom")
    expect(page.get_by_text("Queue a mail", exact=True)).to_be_visible()
    expect(page.get_by_text("The statuses of several mails in one call", exact=True)).to_be_visible()
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)

    # "Try it out" works with the login cookie: the start script adds the CSRF header itself.
    page.get_by_text("The statuses of several mails in one call", exact=True).click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Add string item").click()
    page.locator(".parameters input[type=text]").first.fill("no-such-mail")
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    assert problems == []
    assert elsewhere == []
