"""Issue #11 item 2: a hostile template cannot freeze or crash the server. Every render runs in a child
process with CPU, memory and wall-clock limits; each payload of the issue answers 422 with a message
that says which limit it hit, and the server keeps answering meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx2
import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom
from mailroom.adapters.templates.isolated import IsolatedTemplateRenderer
from mailroom.domain.templates import Template
from tests.web.test_api import API, assert_error

PREVIEW = f"{API}/templates/mailroom.account/notification/preview"
RESET = "/templates/mailroom.account/password_reset/en"

SQUARINGS = "{% set a = 9**999 %}" + "{% set a = a*a %}" * 15 + "{{ a > 1 }}"
NESTED_LOOPS = "{% for a in range(20000) %}{% for b in range(20000) %}{% endfor %}{% endfor %}"
# 150 bytes that join a 600 MB string and answer with its length: only the memory limit stops it.
HALF_GIGABYTE = "{% set chunk = 'x' * 999999 %}{{ ([chunk] * 600)|join|length }}"


def preview_of(client: TestClient, html: str, **template: object) -> httpx2.Response:
    return client.post(PREVIEW, json={"template": {"subject": "s", "html": html, "variables": {}} | template})


@pytest.mark.parametrize(("payload", "message"), [
    pytest.param(SQUARINGS, "digits", id="97-s-squarings"),
    pytest.param(NESTED_LOOPS, "more than 2 s of CPU", id="nested-loops"),
    pytest.param(HALF_GIGABYTE, "MB of memory", id="512-MB-string"),
    pytest.param("{{ 'x'|center(10**10) }}", "characters", id="center"),
    pytest.param("{{ '%10000000000s'|format('x') }}", "characters", id="format-filter"),
    pytest.param("{{ 'x'.ljust(10**10) }}", "characters", id="ljust"),
    pytest.param("{{ 'x'.rjust(10**10) }}", "characters", id="rjust"),
    pytest.param("{{ '{:>10000000000}'.format('x') }}", "characters", id="str-format"),
    pytest.param("{{ '%10000000000s' % 'x' }}", "characters", id="percent"),
    pytest.param("{{ ('x' * 999999)|replace('x', 'x' * 999999) }}", "characters", id="replace"),
    pytest.param("{{ 'x'.zfill(10**10) }}", "characters", id="zfill"),
    pytest.param("{{ 'x'|indent(10**10, true) }}", "characters", id="indent"),
    pytest.param("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "calls itself", id="recursive-macro"),
    pytest.param("{% include '__body__.html' %}", "may not include themselves", id="self-include"),
    pytest.param("{% extends '__body__.html' %}", "may not include themselves", id="self-extends"),
    pytest.param("{% if true %}" * 120 + "x" + "{% endif %}" * 120, "nest", id="deep-if"),
    pytest.param("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "nest", id="deep-parentheses"),
    pytest.param("{{ " + "[" * 3000 + "]" * 3000 + " }}", "nest", id="deep-lists"),
])
def test_hostile_previews_are_422_with_the_limit_they_hit(admin: TestClient, payload: str, message: str) -> None:
    answer = preview_of(admin, payload)
    assert answer.status_code == 422, answer.text[:500]
    assert message in answer.json()["message"], answer.json()


@pytest.mark.parametrize("guards", [True, False], ids=["guarded", "process-limits-alone"])
def test_the_97_second_payload_is_stopped_and_the_server_answers_health_meanwhile(
        live_server: str, room: Mailroom, monkeypatch: pytest.MonkeyPatch, guards: bool) -> None:
    """Without the in-sandbox guards the squarings run in C until RLIMIT_CPU or the parent's deadline ends
    the render process; with them they are refused at once. Either way /health answers meanwhile."""
    renderer = IsolatedTemplateRenderer(cpu_seconds=2, memory_mb=256, guards=guards)
    monkeypatch.setattr(room.templates, "_renderer", renderer)
    admin = room.users.find_user(SYSTEM, "admin@example.org")
    assert admin is not None
    token = room.api_tokens.create(SYSTEM, admin.id, "limits")[1]
    result: dict[str, httpx2.Response] = {}

    def hostile() -> None:
        with httpx2.Client(base_url=live_server, timeout=120) as client:
            result["answer"] = client.post(PREVIEW, headers={"Authorization": f"Bearer {token}"}, json={
                "template": {"subject": "s", "html": SQUARINGS, "variables": {}}})

    started = time.monotonic()
    thread = threading.Thread(target=hostile)
    thread.start()
    try:
        with httpx2.Client(base_url=live_server, timeout=60) as client:
            while thread.is_alive() or time.monotonic() - started < 1:
                before = time.monotonic()
                assert client.get(f"{API}/health").status_code == 200
                assert time.monotonic() - before < 1.0, "the server froze while a template rendered"
                time.sleep(0.2)
    finally:
        thread.join(timeout=120)
        renderer.close()
    answer = result["answer"]
    assert answer.status_code == 422, answer.text[:500]
    assert ("digits" if guards else "more than 2 s of CPU") in answer.json()["message"]
    assert time.monotonic() - started < 30  # not 97 s: the render was stopped near its 2 s limit


def test_previewing_unsaved_content_needs_template_edit(user_with: Callable[..., TestClient]) -> None:
    reader = user_with("mail-operator")  # has template.read, not template.edit
    assert reader.post(PREVIEW, json={"language": "en"}).status_code == 200  # the saved template: reading is enough
    assert_error(preview_of(reader, "<p>{{ 1 }}</p>"), 403, "permission_denied")
    assert reader.post(f"{RESET}/preview", data={"subject": "x", "html": "<p>x</p>"}).status_code == 403
    assert reader.post(f"{RESET}/preview.json", data={"subject": "x", "html": "<p>x</p>"}).status_code == 403


def test_a_saved_hostile_template_keeps_its_editor_page_working(admin: TestClient, room: Mailroom) -> None:
    current = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    for body in ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{{ 'x'|center(10**10) }}",
                 "{% include 'layout.html' %}{{ confirm_url }}"):
        room.templates.save_template(SYSTEM, Template(set_id=current.set_id, name=current.name, locale="en",
                                                      subject="s", html=body, variables=current.variables))
        page = admin.get(RESET)
        assert page.status_code == 200, page.text[:300]
        frame = admin.get(f"{RESET}/preview")
        assert frame.status_code in (200, 422), frame.text[:300]


def test_the_editor_preview_of_a_hostile_draft_shows_the_limit(admin: TestClient, room: Mailroom) -> None:
    draft = {"subject": "s", "html": "{{ 'x'|center(10**10) }}", "text": "", "description": "",
             "variables": "{}", "csrf_token": admin.headers["X-CSRF-Token"]}
    parts = admin.post(f"{RESET}/preview.json", data=draft)
    assert parts.status_code == 422 and "characters" in parts.json()["error"]
    frame = admin.post(f"{RESET}/preview", data=draft | {"html": NESTED_LOOPS})
    assert frame.status_code == 422 and "more than 2 s of CPU" in frame.text


def test_a_self_including_partial_cannot_be_saved_or_rendered(admin: TestClient, room: Mailroom) -> None:
    url = f"{API}/templates/mailroom.account/layout/en"
    layout = admin.get(url).json()
    answer = admin.put(url, json={"kind": "partial", "html": "{% include 'layout.html' %}", "text": layout["text"],
                                  "variables": layout["variables"]})
    assert_error(answer, 422, "template_recursion")
    assert "may not include themselves" in answer.json()["message"]


def test_ordinary_previews_still_render(admin: TestClient) -> None:
    for _ in range(5):
        answer = preview_of(admin, "<p>{{ name }}</p>", variables={"name": "Ann"})
        assert answer.status_code == 200 and "<p>Ann</p>" in answer.json()["html"]
