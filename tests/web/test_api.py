"""The JSON API under /api/v1: sending with real delivery to aiosmtpd, the log, templates, SMTP servers,
API tokens, authentication, CSRF, permissions and validation errors."""

from __future__ import annotations

import base64
import email
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response

from mailroom import SYSTEM, Mail, Mailroom
from tests.support.smtp_servers import Behaviour, SmtpServerHandle
from tests.web.conftest import api_token

API = "/api/v1"
LOGO = bytes(range(256)) * 4  # every byte value: any mangling on the way shows
SMTP_PASSWORD = "s3cret-smtp-Passw0rd"


def send(client: TestClient, **fields: Any) -> Response:
    body = {"to": ["ann@example.org"], "subject": "Hello", "text": "Hi Ann"} | fields
    return client.post(f"{API}/mails", json=body)


def sent_id(client: TestClient, **fields: Any) -> str:
    answer = send(client, **fields)
    assert answer.status_code == 201, answer.text
    mail_id: str = answer.json()["id"]
    return mail_id


def assert_error(answer: Response, status: int, code: str, field: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code, body
    if field is not None:
        assert body.get("field") == field, body


def status_of(client: TestClient, mail_id: str) -> str:
    answer = client.get(f"{API}/mails/{mail_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


# --- sending and delivery ----------------------------------------------------------------------------


def test_a_mail_sent_through_the_api_is_delivered_with_its_attachments(
        admin: TestClient, room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    report = b"Name;Total\nAnn;42\n"
    mail_id = sent_id(
        admin, to=["Ann Lee <ann@example.org>"], cc=["bob@example.org"], bcc=["audit@example.org"],
        reply_to=["desk@example.org"], subject="Your report", text="See the attachment.",
        html='<p>See the attachment. <img src="cid:logo"></p>', headers={"X-Report-Id": "42"},
        attachments=[
            {"filename": "report.csv", "content_type": "text/csv",
             "content_base64": base64.b64encode(report).decode()},
            # wrapped at 76 columns, as MIME tools write base64
            {"filename": "logo.bin", "content_base64": base64.encodebytes(LOGO).decode(), "inline": True,
             "content_id": "logo"},
        ],
        priority="high", tags=["reports", "monthly"], correlation_id="order-42")
    assert status_of(admin, mail_id) == "queued"

    room.deliver_pending()

    received = smtp_server.wait_for(1)[0]
    assert sorted(received.rcpt_tos) == ["ann@example.org", "audit@example.org", "bob@example.org"]
    message = received.message()
    assert message["Subject"] == "Your report"
    assert message["X-Report-Id"] == "42"
    assert message["Reply-To"] == "desk@example.org"
    assert "Bcc" not in message
    parts = {part.get_filename(): part for part in message.walk() if part.get_filename()}
    assert parts["report.csv"].get_content_type() == "text/csv"
    assert parts["report.csv"].get_payload(decode=True) == report
    assert parts["logo.bin"].get_payload(decode=True) == LOGO
    assert parts["logo.bin"]["Content-ID"] == "<logo>"

    shown = admin.get(f"{API}/mails/{mail_id}").json()
    assert shown["status"] == "sent"
    assert shown["server"] == "relay" and shown["sent_at"] is not None
    assert shown["priority"] == "high" and shown["tags"] == ["reports", "monthly"]
    assert shown["correlation_id"] == "order-42"
    assert {(r["email"], r["kind"], r["status"]) for r in shown["recipients"]} == {
        ("ann@example.org", "to", "accepted"), ("bob@example.org", "cc", "accepted"),
        ("audit@example.org", "bcc", "accepted")}
    [attempt] = shown["attempts"]
    assert attempt["server"] == "relay" and attempt["outcome"] == "sent"
    assert attempt["code"] == 250 and attempt["duration_ms"] >= 0 and attempt["time"]
    assert shown["attempt_count"] == 1 and shown["last_error"] is None


def test_the_raw_message_downloads_as_an_eml_file(admin: TestClient) -> None:
    mail_id = sent_id(admin, subject="Grüße", text="Hallo")
    answer = admin.get(f"{API}/mails/{mail_id}/raw")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "message/rfc822"
    assert answer.headers["content-disposition"] == f'attachment; filename="{mail_id}.eml"'
    message = email.message_from_bytes(answer.content, policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Grüße" and message["To"] == "ann@example.org"
    assert message.get_content().strip() == "Hallo"
    assert_error(admin.get(f"{API}/mails/nope/raw"), 404, "mail_not_found")


def test_a_template_mail_is_rendered_in_the_negotiated_locale_and_delivered(
        admin: TestClient, room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    template = admin.get(f"{API}/templates/mailroom.account/notification/de").json()
    model = template["variables"] | {"notification_title": "Bericht fertig"}
    answer = admin.post(f"{API}/mails/template", json={
        "to": ["ann@example.org"], "set_id": "mailroom.account", "name": "notification", "language": "de_CH",
        "model": model, "tags": ["report"], "priority": "low", "correlation_id": "r-1"})
    assert answer.status_code == 201, answer.text
    mail_id = answer.json()["id"]

    room.deliver_pending()

    assert smtp_server.wait_for(1)[0].message()["Subject"] == "Bericht fertig"
    shown = admin.get(f"{API}/mails/{mail_id}").json()
    assert (shown["status"], shown["template"], shown["locale"]) == ("sent", "mailroom.account/notification", "de")
    assert (shown["priority"], shown["tags"], shown["correlation_id"]) == ("low", ["report"], "r-1")


def test_template_mail_errors_name_the_problem(admin: TestClient) -> None:
    base = {"to": ["ann@example.org"], "set_id": "mailroom.account", "name": "notification"}
    assert_error(admin.post(f"{API}/mails/template", json=base | {"name": "nope"}), 404, "template_not_found")
    assert_error(admin.post(f"{API}/mails/template", json=base | {"set_id": "nope"}), 404, "template_set_not_found")
    assert_error(admin.post(f"{API}/mails/template", json=base | {"model": {"first_name": "Ann"}}), 422,
                 "invalid_model", "model")
    assert_error(admin.post(f"{API}/mails/template", json=base | {"model": ["not", "an", "object"]}), 422,
                 "invalid_input", "model")
    assert admin.get(f"{API}/mails").json()["total"] == 0  # nothing was queued


# --- the log -----------------------------------------------------------------------------------------


def test_search_filters_sorts_and_pages(admin: TestClient, room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    for n in range(5):
        sent_id(admin, to=[f"user{n}@example.org"], subject=f"Invoice {n}", tags=["invoice"],
                correlation_id=f"c-{n}")
    sent_id(admin, to=["boss@example.org"], subject="Weekly news", tags=["news"])
    room.deliver_pending()
    smtp_server.wait_for(6)
    cancelled = sent_id(admin, subject="Never mind")
    admin.post(f"{API}/mails/{cancelled}/cancel")

    def search(**params: Any) -> dict[str, Any]:
        answer = admin.get(f"{API}/mails", params=params)
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        return page

    everything = search()
    assert everything["total"] == 7 and len(everything["items"]) == 7
    assert (everything["offset"], everything["limit"]) == (0, 50)
    assert search(tag="invoice")["total"] == 5
    assert search(text="WEEKLY")["items"][0]["subject"] == "Weekly news"
    assert search(recipient="user3@")["items"][0]["subject"] == "Invoice 3"
    assert search(correlation_id="c-2")["items"][0]["subject"] == "Invoice 2"
    assert search(status="cancelled")["items"][0]["id"] == cancelled
    assert search(status=["cancelled", "sent"])["total"] == 7
    assert search(status="failed")["total"] == 0
    assert search(server="relay")["total"] == 6
    assert search(q="tag:invoice -subject:\"Invoice 3\"")["total"] == 4
    assert search(q="-status:sent")["items"][0]["id"] == cancelled
    assert search(q="weekly", status="sent")["items"][0]["subject"] == "Weekly news"
    assert_error(admin.get(f"{API}/mails", params={"q": "status:snt"}), 422, "invalid_input", "q")

    pages = [search(tag="invoice", sort="subject", descending="false", limit=2, offset=offset)
             for offset in (0, 2, 4)]
    assert [page["total"] for page in pages] == [5, 5, 5]
    assert [item["subject"] for page in pages for item in page["items"]] == [f"Invoice {n}" for n in range(5)]
    assert pages[2]["offset"] == 4 and len(pages[2]["items"]) == 1

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert search(queued_after=later)["total"] == 0
    assert search(queued_before=later)["total"] == 7
    assert_error(admin.get(f"{API}/mails", params={"status": "lost"}), 422, "invalid_input", "status.0")
    assert_error(admin.get(f"{API}/mails", params={"limit": 0}), 422, "invalid_input", "limit")
    assert_error(admin.get(f"{API}/mails", params={"sort": "colour"}), 422, "invalid_input", "sort")
    assert_error(admin.get(f"{API}/mails", params={"queued_after": "2030-01-01T00:00:00"}), 422,
                 "invalid_input", "queued_after")


def test_a_search_says_when_more_mails_match_than_it_counted(admin: TestClient, room: Mailroom) -> None:
    room.send_mails(SYSTEM, [Mail(to=f"u{n}@example.org", subject=f"Invoice {n}", text="t") for n in range(1005)])
    common = admin.get(f"{API}/mails", params={"text": "invoice", "limit": 10}).json()
    assert (common["total"], common["total_exact"], len(common["items"])) == (1000, False, 10)
    deep = admin.get(f"{API}/mails", params={"text": "invoice", "limit": 10, "offset": 1000}).json()
    assert (deep["total"], deep["total_exact"], len(deep["items"])) == (1005, True, 5)
    whole = admin.get(f"{API}/mails", params={"limit": 10}).json()
    assert (whole["total"], whole["total_exact"]) == (1005, True)
    # Keyset paging: next_after continues where a page ended, at any depth.
    walked, page = [], admin.get(f"{API}/mails", params={"text": "invoice 100", "limit": 4}).json()
    while True:
        walked += [item["subject"] for item in page["items"]]
        if not page["next_after"]:
            break
        page = admin.get(f"{API}/mails", params={"text": "invoice 100", "limit": 4,
                                                 "after": page["next_after"]}).json()
    assert walked == ["Invoice 1004", "Invoice 1003", "Invoice 1002", "Invoice 1001", "Invoice 1000", "Invoice 100"]
    assert_error(admin.get(f"{API}/mails", params={"after": "nonsense"}), 422, "invalid_input", "after")


def test_cancel_retry_and_delete_follow_the_status_rules(
        admin: TestClient, room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    queued = sent_id(admin, subject="Cancel me")
    assert_error(admin.post(f"{API}/mails/{queued}/retry"), 409, "invalid_transition")
    answer = admin.post(f"{API}/mails/{queued}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert_error(admin.post(f"{API}/mails/{queued}/cancel"), 409, "invalid_transition")

    smtp_server.behaviour = Behaviour.PERMANENT
    failing = sent_id(admin, subject="Refused")
    room.deliver_pending()
    failed = admin.get(f"{API}/mails/{failing}").json()
    assert failed["status"] == "failed" and failed["last_error"]
    assert failed["attempts"][0]["code"] == 550
    assert_error(admin.post(f"{API}/mails/{failing}/cancel"), 409, "invalid_transition")

    smtp_server.behaviour = Behaviour.ACCEPT
    answer = admin.post(f"{API}/mails/{failing}/retry")
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    room.deliver_pending()
    assert status_of(admin, failing) == "sent"
    assert_error(admin.post(f"{API}/mails/{failing}/retry"), 409, "invalid_transition")

    assert admin.delete(f"{API}/mails/{failing}").status_code == 204
    assert_error(admin.get(f"{API}/mails/{failing}"), 404, "mail_not_found")
    assert_error(admin.delete(f"{API}/mails/{failing}"), 404, "mail_not_found")
    assert_error(admin.post(f"{API}/mails/nope/retry"), 404, "mail_not_found")

    others = [sent_id(admin) for _ in range(3)]
    answer = admin.post(f"{API}/mails/bulk-delete", json={"ids": [*others, queued, "unknown"]})
    assert answer.status_code == 200 and answer.json() == {"deleted": 4}
    assert admin.get(f"{API}/mails").json()["total"] == 0
    assert_error(admin.post(f"{API}/mails/bulk-delete", json={"ids": []}), 422, "invalid_input", "ids")


# --- authentication, CSRF and permissions ------------------------------------------------------------


def test_calls_without_a_login_are_refused_with_401(client: TestClient) -> None:
    for method, path in (("GET", "/mails"), ("GET", "/mails/x"), ("POST", "/mails"), ("GET", "/templates"),
                         ("GET", "/smtp-servers"), ("POST", "/smtp-servers"), ("GET", "/tokens"),
                         ("DELETE", "/tokens/x")):
        assert_error(client.request(method, API + path, json={}), 401, "login_required")
    answer = client.get(f"{API}/mails", headers={"Authorization": "Bearer mrt_made-up"})
    assert_error(answer, 401, "authentication_failed")


def test_an_api_token_works_without_a_csrf_header(client: TestClient, room: Mailroom) -> None:
    client.headers["Authorization"] = f"Bearer {api_token(room)}"
    mail_id = sent_id(client)
    assert status_of(client, mail_id) == "queued"
    assert client.post(f"{API}/mails/{mail_id}/cancel").status_code == 200


def test_a_cookie_call_without_the_csrf_header_is_refused(admin: TestClient) -> None:
    token = admin.headers.pop("X-CSRF-Token")
    assert_error(send(admin), 403, "csrf_rejected")
    assert_error(admin.post(f"{API}/mails", json={}, headers={"X-CSRF-Token": "forged"}), 403, "csrf_rejected")
    assert admin.get(f"{API}/mails").status_code == 200  # reading needs no token
    admin.headers["X-CSRF-Token"] = token
    assert send(admin).status_code == 201


def test_roles_limit_what_a_user_may_call(user_with: Callable[..., TestClient]) -> None:
    operator = user_with("mail-operator")
    assert operator.get(f"{API}/smtp-servers").status_code == 200
    assert operator.get(f"{API}/templates").status_code == 200
    mail_id = sent_id(operator)
    assert operator.post(f"{API}/mails/{mail_id}/cancel").status_code == 403
    assert_error(operator.delete(f"{API}/mails/{mail_id}"), 403, "permission_denied")
    assert_error(operator.post(f"{API}/smtp-servers", json={"name": "x", "host": "smtp.example.org"}), 403,
                 "permission_denied")
    assert_error(operator.delete(f"{API}/smtp-servers/relay"), 403, "permission_denied")
    assert_error(operator.post(f"{API}/smtp-servers/relay/test"), 403, "permission_denied")
    assert_error(operator.put(f"{API}/templates/mailroom.account/notification/en",
                              json={"subject": "x", "text": "y"}), 403, "permission_denied")

    editor = user_with("template-editor")
    assert_error(editor.get(f"{API}/mails"), 403, "permission_denied")
    assert_error(send(editor), 403, "permission_denied")
    assert_error(editor.get(f"{API}/smtp-servers"), 403, "permission_denied")
    assert editor.get(f"{API}/templates/mailroom.account").status_code == 200


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"to": ["not an address"]}, "invalid_address", "to"),
    ({"cc": ["ann@"]}, "invalid_address", "cc"),
    ({"sender": "robot at example"}, "invalid_address", "sender"),
    ({"to": []}, "no_recipients", "to"),
    ({"subject": "Hi\r\nBcc: victim@example.org"}, "invalid_input", "subject"),
    ({"to": ["ann@example.org\nBcc: x@example.org"]}, "invalid_input", "to.0"),
    ({"headers": {"X-Evil": "a\nb"}}, "invalid_input", "headers.X-Evil"),
    ({"headers": {"From": "x@example.org"}}, "invalid_header", "headers.From"),
    ({"text": None}, "invalid_input", "text"),
    ({"attachments": [{"filename": "a.bin", "content_base64": "not base64!"}]}, "invalid_input",
     "attachments.0.content_base64"),
    ({"attachments": [{"filename": "a.bin", "content_base64": "äöü"}]}, "invalid_input",
     "attachments.0.content_base64"),
    ({"attachments": [{"filename": "a.bin", "content_base64": "AAAA", "inline": True}]}, "invalid_input",
     "attachments.0"),
    ({"attachments": [{"filename": "a\r\n.bin", "content_base64": "AAAA"}]}, "invalid_input",
     "attachments.0.filename"),
    ({"priority": "urgent"}, "invalid_input", "priority"),
    ({"send_at": "2030-01-01T08:00:00"}, "invalid_input", "send_at"),
    ({"send_at": "2030-01-02T08:00:00Z", "expires_at": "2030-01-01T08:00:00Z"}, "invalid_input", "expires_at"),
    ({"send_at": 1893456000}, "invalid_input", "send_at"),
    ({"send_at": "9999-12-31T23:00:00-05:00"}, "invalid_input", "send_at"),
    ({"tags": ["a,b"]}, "invalid_input", "tags"),
    ({"smtp_hint": "x" * 256}, "invalid_input", "smtp_hint"),
    ({"to": ["a@example.org"] * 1001}, "invalid_input", "to"),
    ({"bcc ": ["typo@example.org"]}, "invalid_input", "bcc "),
])
def test_invalid_mails_are_refused_with_422_naming_the_field(admin: TestClient, fields: dict[str, Any], code: str,
                                                            field: str) -> None:
    assert_error(send(admin, **fields), 422, code, field)


@pytest.mark.parametrize(("fields", "field"), [
    ({"subject": "\ud800"}, "subject"),
    ({"text": "a\x00b"}, "text"),
    ({"tags": ["ok", "\udfff"]}, "tags.1"),
    ({"headers": {"X-Note": "\x00"}}, "headers.X-Note"),
    ({"attachments": [{"filename": "\ud800.txt", "content_base64": ""}]}, "attachments.0.filename"),
])
def test_text_no_database_can_store_is_a_422_not_a_500(admin: TestClient, fields: dict[str, Any],
                                                       field: str) -> None:
    # Valid JSON can carry an unpaired surrogate; json.dumps escapes it, as a client would send it.
    body = json.dumps({"to": ["ann@example.org"], "subject": "Hello", "text": "Hi"} | fields)
    answer = admin.post(f"{API}/mails", content=body, headers={"Content-Type": "application/json"})
    assert_error(answer, 422, "invalid_input", field)


def test_nul_in_a_path_or_query_is_a_422(admin: TestClient) -> None:
    assert_error(admin.get(f"{API}/mails/a%00b"), 422, "invalid_input", "mail_id")
    assert_error(admin.get(f"{API}/smtp-servers/a%00b"), 422, "invalid_input", "name_or_id")
    assert_error(admin.get(f"{API}/mails", params={"text": "a\x00"}), 422, "invalid_input", "text")


def test_malformed_json_is_a_422(admin: TestClient) -> None:
    answer = admin.post(f"{API}/mails", content=b'{"to": [', headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_input"


# --- templates ---------------------------------------------------------------------------------------


def test_templates_are_listed_shown_and_previewed(admin: TestClient) -> None:
    sets = admin.get(f"{API}/templates").json()
    assert "mailroom.account" in {s["id"] for s in sets}
    account = admin.get(f"{API}/templates/mailroom.account").json()
    assert account["default_locale"] == "en"
    entries = {(t["name"], t["locale"]): t for t in account["templates"]}
    assert entries[("notification", "de")]["kind"] == "template"
    assert entries[("layout", "en")]["kind"] == "partial"
    assert entries[("notification", "en")]["version"] >= 1
    assert "first_name" in entries[("notification", "en")]["variables"]

    shown = admin.get(f"{API}/templates/mailroom.account/notification/en").json()
    assert shown["subject"] == "{{ notification_title }}" and shown["html"] and shown["text"]

    url = f"{API}/templates/mailroom.account/notification/preview"
    sample = admin.post(url, json={"language": "de-AT"}).json()
    assert sample["locale"] == "de" and sample["template"] == "mailroom.account/notification"
    assert sample["subject"] == shown["variables"]["notification_title"]
    own = admin.post(url, json={"model": shown["variables"] | {"notification_title": "Tada <b>"}}).json()
    assert own["subject"] == "Tada <b>" and "Tada &lt;b&gt;" in own["html"]
    unsaved = admin.post(url, json={"model": {"first_name": "Ann"},
                                    "template": {"subject": "Hi {{ first_name }}", "text": "Dear {{ first_name }}",
                                                 "variables": {"first_name": "Sam"}}}).json()
    assert (unsaved["subject"], unsaved["text"].strip(), unsaved["locale"]) == ("Hi Ann", "Dear Ann", "en")
    # without variables the saved template's samples apply
    edited = admin.post(url, json={"template": {"subject": "Re: {{ notification_title }}", "text": "x"}}).json()
    assert edited["subject"] == "Re: " + shown["variables"]["notification_title"]


def test_template_errors_are_404_and_422(admin: TestClient) -> None:
    url = f"{API}/templates/mailroom.account/notification/preview"
    assert_error(admin.get(f"{API}/templates/nope"), 404, "template_set_not_found")
    assert_error(admin.get(f"{API}/templates/mailroom.account/nope/en"), 404, "template_not_found")
    assert_error(admin.post(f"{API}/templates/mailroom.account/nope/preview", json={}), 404, "template_not_found")
    assert_error(admin.post(url, json={"model": {"first_name": "Ann"}}), 422, "invalid_model", "model")
    assert_error(admin.post(url, json={"model": "{not json"}), 422, "invalid_input", "model")
    assert_error(admin.post(url, json={"template": {"subject": "{% if %}", "text": "x", "variables": {}}}), 422,
                 "template_syntax_error")
    assert_error(admin.post(url, json={"template": {"subject": "", "text": "x"}}), 422, "invalid_input",
                 "template.subject")


def test_a_template_editor_saves_a_new_version(user_with: Callable[..., TestClient]) -> None:
    editor = user_with("template-editor")
    url = f"{API}/templates/mailroom.account/notification/en"
    before = editor.get(url).json()
    answer = editor.put(url, json={"subject": "News: {{ notification_title }}", "text": before["text"],
                                   "html": before["html"], "variables": before["variables"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == before["version"] + 1
    assert editor.get(url).json()["subject"] == "News: {{ notification_title }}"
    undeclared = editor.put(url, json={"subject": "{{ secret }}", "text": "x", "variables": {}})
    assert_error(undeclared, 422, "invalid_input", "variables")


# --- SMTP servers ------------------------------------------------------------------------------------


def test_smtp_servers_are_managed_and_their_password_never_shown(admin: TestClient,
                                                                  smtp_server: SmtpServerHandle) -> None:
    answers: list[Response] = []

    def call(method: str, path: str, **options: Any) -> Response:
        answer = admin.request(method, f"{API}/smtp-servers{path}", **options)
        answers.append(answer)
        return answer

    settings = {"name": "backup", "host": "127.0.0.1", "port": smtp_server.port, "security": "none",
                "username": "robot", "password": SMTP_PASSWORD, "sender": "robot@example.org", "priority": -1}
    created = call("POST", "", json=settings)
    assert created.status_code == 201, created.text
    server = created.json()
    assert server["has_password"] is True and "password" not in server
    assert server["name"] == "backup" and server["port"] == smtp_server.port

    assert {s["name"] for s in call("GET", "").json()} == {"relay", "backup"}
    assert call("GET", f"/{server['id']}").json()["name"] == "backup"
    assert call("GET", "/backup").json()["id"] == server["id"]

    kept = call("PUT", f"/{server['id']}", json=settings | {"password": None, "priority": 5}).json()
    assert kept["has_password"] is True and kept["priority"] == 5
    omitted = {k: v for k, v in settings.items() if k != "password"}
    assert call("PUT", "/backup", json=omitted).json()["has_password"] is True
    assert call("PUT", "/backup", json=settings | {"password": ""}).json()["has_password"] is False
    assert call("PUT", "/backup", json=settings).json()["has_password"] is True

    probe = call("POST", "/relay/test").json()
    assert probe["ok"] is True and probe["steps"] and all(step["ok"] for step in probe["steps"])
    assert all(step["error"] is None for step in probe["steps"])

    assert_error(call("POST", "", json=settings), 422, "invalid_input", "name")
    assert_error(call("POST", "", json=settings | {"name": "x", "port": 70000}), 422, "invalid_input", "port")
    assert_error(call("POST", "", json=settings | {"name": "x", "sender": "nobody"}), 422, "invalid_address",
                 "sender")
    assert_error(call("POST", "", json=settings | {"name": "x", "security": "ssl"}), 422, "invalid_input",
                 "security")
    assert_error(call("PUT", "/nope", json=settings), 404, "server_not_found")

    assert call("DELETE", "/backup").status_code == 204
    assert_error(call("GET", "/backup"), 404, "server_not_found")
    assert_error(call("DELETE", "/backup"), 404, "server_not_found")

    openapi = admin.get(f"{API}/openapi.json")
    for answer in [*answers, openapi]:
        assert SMTP_PASSWORD not in answer.text
    assert "password_encrypted" not in "".join(answer.text for answer in answers)


def test_a_failing_server_test_reports_the_failed_step(admin: TestClient) -> None:
    with socket.socket() as probe_socket:  # a port nobody listens on once closed
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    server = admin.post(f"{API}/smtp-servers", json={"name": "gone", "host": "127.0.0.1", "port": port,
                                                     "security": "starttls", "timeout_seconds": 5}).json()
    probe = admin.post(f"{API}/smtp-servers/{server['id']}/test").json()
    assert probe["ok"] is False and probe["server"] == server["id"]
    failed = [step for step in probe["steps"] if not step["ok"]]
    assert failed and failed[0]["error"]


# --- API tokens --------------------------------------------------------------------------------------


def test_tokens_are_created_used_and_revoked(admin: TestClient, app: FastAPI) -> None:
    answer = admin.post(f"{API}/tokens", json={"name": "deploy script"})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    secret = created["token"]
    assert secret.startswith(created["hint"]) and created["active"] is True

    listed = admin.get(f"{API}/tokens").json()
    assert [t["name"] for t in listed] == ["deploy script"]
    assert all("token" not in t for t in listed) and secret not in admin.get(f"{API}/tokens").text

    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as script:
        assert script.get(f"{API}/mails").status_code == 200
        assert admin.delete(f"{API}/tokens/{created['id']}").status_code == 204
        assert_error(script.get(f"{API}/mails"), 401, "authentication_failed")

    assert admin.get(f"{API}/tokens").json()[0]["active"] is False
    assert_error(admin.delete(f"{API}/tokens/{created['id']}"), 404, "token_not_found")
    assert_error(admin.post(f"{API}/tokens", json={"name": "  "}), 422, "invalid_input", "name")


def test_a_filter_given_twice_is_refused_not_half_applied(admin: TestClient) -> None:
    answer = admin.get("/api/v1/mails", params=[("correlation_id", "a"), ("correlation_id", "b")])
    assert answer.status_code == 422
    assert answer.json()["field"] == "correlation_id"
    assert admin.get("/api/v1/mails", params=[("status", "sent"), ("status", "failed")]).status_code == 200
