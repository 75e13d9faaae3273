"""The Idempotency-Key header of the send routes (issue #14, item 3): a repeat gets the first mail's id and
queues nothing; the same key with another mail is a 422; keys are per user."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mail, Mailroom
from mailroom.domain.log import LogQuery
from tests.web.conftest import api_token

API = "/api/v1"


def _total(room: Mailroom) -> int:
    total = room.log.search(SYSTEM, LogQuery(with_total=True)).total
    assert total is not None
    return total


def _send(client: TestClient, key: str | None, **fields: Any) -> Any:
    body = {"to": ["ann@example.org"], "subject": "Invoice 7", "text": "Attached."} | fields
    return client.post(f"{API}/mails", json=body, headers={"Idempotency-Key": key} if key else {})


def test_a_repeated_request_with_the_header_queues_one_mail(admin: TestClient, room: Mailroom) -> None:
    first = _send(admin, "invoice-7")
    assert first.status_code == 201, first.text
    again = _send(admin, "invoice-7")
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert _send(admin, None).json()["id"] != first.json()["id"]  # no header: a new mail each time
    assert _total(room) == 2


def test_the_same_key_with_another_mail_is_a_422(admin: TestClient, room: Mailroom) -> None:
    first = _send(admin, "invoice-7").json()["id"]
    answer = _send(admin, "invoice-7", subject="Invoice 8")
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "idempotency_conflict" and body["field"] == "idempotency_key"
    assert first in body["message"] and "use a new key" in body["message"]
    assert _total(room) == 1


def test_an_unusable_key_is_a_422_naming_it(admin: TestClient, room: Mailroom) -> None:
    answer = _send(admin, "k" * 300)
    assert answer.status_code == 422 and answer.json()["field"] == "idempotency_key"
    assert _total(room) == 0


def test_the_template_route_takes_the_header(admin: TestClient, room: Mailroom) -> None:
    body = {"to": ["ann@example.org"], "set_id": "mailroom.account", "name": "notification",
            "model": {"application_name": "Acme", "first_name": "Ann", "notification_title": "Export",
                      "message": "Ready.", "action_label": "Open", "action_url": "https://example.org/e/1"}}
    ids = {admin.post(f"{API}/mails/template", json=body, headers={"Idempotency-Key": "export-1"}).json()["id"]
           for _ in range(3)}
    assert len(ids) == 1 and _total(room) == 1


def test_keys_are_per_user(admin: TestClient, client: TestClient, room: Mailroom) -> None:
    """A token of the same user shares the session's keys; the system's keys are apart."""
    first = _send(admin, "k").json()["id"]
    client.headers["Authorization"] = f"Bearer {api_token(room)}"
    assert _send(client, "k").json()["id"] == first
    assert room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Invoice 7", text="Attached."),
                          idempotency_key="k") != first
