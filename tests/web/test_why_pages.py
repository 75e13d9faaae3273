"""A mail that cannot go out says why on every page (issue #13, items 1 and 2): the test page warns before
sending, and the overview, the log, the detail page and the API show the reason, in English and German."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from tests.web.conftest import api_token


def csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/account").text)
    assert match
    return match.group(1)


def change_relay(room: Mailroom, **changes: object) -> None:
    """Change the one server of the test app (through the use case, as the admin UI does)."""
    relay = room.servers.get(SYSTEM, "relay")
    settings = {"name": relay.name, "host": relay.host, "port": relay.port, "security": relay.security,
                "sender": relay.sender, "enabled": relay.enabled} | changes
    room.servers.update(SYSTEM, "relay", ServerSettings(**settings))  # type: ignore[arg-type]


def test_the_test_page_warns_before_sending_when_no_server_is_enabled(admin: TestClient, room: Mailroom) -> None:
    assert 'data-testid="cannot-send-warning"' not in admin.get("/test").text
    change_relay(room, enabled=False)

    page = admin.get("/test").text

    assert 'data-testid="cannot-send-warning"' in page
    assert "No SMTP server is enabled: a mail sent now waits in the queue until one is." in page
    assert 'href="/smtp"' in page


def test_a_test_mail_without_a_server_is_queued_with_a_warning_not_a_success(admin: TestClient,
                                                                              room: Mailroom) -> None:
    change_relay(room, enabled=False)

    answer = admin.post("/test/send", data={"csrf_token": csrf(admin), "to": "ann@example.org", "subject": "Hi",
                                            "message": "Body"}, follow_redirects=False)
    assert answer.status_code == 303
    mail_id = answer.headers["location"].removeprefix("/test?sent=")
    page = admin.get(answer.headers["location"]).text

    assert "The mail is queued, but it cannot go out: no SMTP server is enabled." in page
    assert 'class="banner success sent-banner"' not in page
    assert 'class="banner warn sent-banner"' in page
    mail = room.get_mail(SYSTEM, mail_id)
    assert mail.status is MailStatus.QUEUED and mail.last_error and "no enabled SMTP server" in mail.last_error


def test_overview_log_and_detail_say_why_the_mail_waits(admin: TestClient, room: Mailroom) -> None:
    change_relay(room, enabled=False)
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Stuck", text="x"))
    error = room.get_mail(SYSTEM, mail_id).last_error
    assert error is not None

    overview = admin.get("/").text
    assert "No SMTP server is enabled: 1 mail waits in the queue and goes out once one is added or enabled." \
        in overview
    log = admin.get("/log").text
    assert "no enabled SMTP server is configured" in log
    detail = admin.get(f"/log/{mail_id}").text
    assert 'data-testid="cannot-go-out"' in detail
    assert "This mail cannot go out: no SMTP server is enabled." in detail
    assert "no enabled SMTP server is configured" in detail  # the last error
    assert "once an SMTP server is enabled" in detail  # instead of a next attempt in the past

    change_relay(room, enabled=True)
    assert 'data-testid="cannot-go-out"' not in admin.get(f"/log/{mail_id}").text
    assert 'data-testid="cannot-go-out"' not in admin.get("/").text


def test_the_pages_say_it_in_german(german: TestClient, room: Mailroom) -> None:
    change_relay(room, enabled=False)
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Stuck", text="x"))

    assert "Kein SMTP-Server ist aktiviert: Eine jetzt gesendete Mail wartet" in german.get("/test").text
    assert "Diese Mail kann nicht versendet werden: Kein SMTP-Server ist aktiviert." in \
        german.get(f"/log/{mail_id}").text
    assert "sobald ein SMTP-Server aktiviert ist" in german.get(f"/log/{mail_id}").text
    assert "Kein SMTP-Server ist aktiviert: 1 Mail wartet in der Warteschlange" in german.get("/").text


def test_without_a_sender_anywhere_the_test_page_warns_and_refuses(admin: TestClient, room: Mailroom) -> None:
    change_relay(room, sender="")

    assert "No enabled SMTP server has a sender address" in admin.get("/test").text
    page = admin.post("/test/send", data={"csrf_token": csrf(admin), "to": "ann@example.org", "subject": "Hi",
                                          "message": "Body"})

    assert page.status_code == 422
    assert "the mail has no From address" in page.text
    assert room.search_mail_log(SYSTEM).total == 0


def test_the_api_refuses_a_mail_no_server_can_give_a_from(client: TestClient, room: Mailroom) -> None:
    change_relay(room, sender="")
    client.headers["Authorization"] = f"Bearer {api_token(room)}"

    answer = client.post("/api/v1/mails", json={"to": ["ann@example.org"], "subject": "Hi", "text": "Body"})

    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "no_sender_address" and body["field"] == "sender"
    assert "no enabled SMTP server (relay) has a sender address" in body["message"]
    given = client.post("/api/v1/mails", json={"to": ["ann@example.org"], "subject": "Hi", "text": "Body",
                                               "sender": "me@example.org"})
    assert given.status_code == 201


def test_the_api_shows_the_reason_on_the_queued_mail(client: TestClient, room: Mailroom) -> None:
    change_relay(room, enabled=False)
    client.headers["Authorization"] = f"Bearer {api_token(room)}"

    created = client.post("/api/v1/mails", json={"to": ["ann@example.org"], "subject": "Hi", "text": "Body"})
    mail = client.get(f"/api/v1/mails/{created.json()['id']}").json()

    assert mail["status"] == "queued"
    assert "no enabled SMTP server" in mail["last_error"]
