"""The mail pages: overview, test, log and mail detail, through the app (TestClient), plus the storage
queries behind them on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import jinja2.ext
import pytest
from babel.messages.extract import extract_from_file
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from mailroom import SYSTEM, Attachment, Mail, Mailroom, MailStatus
from mailroom.adapters.storage.tables import mails
from mailroom.domain.log import LogQuery, SearchTerm, TermField
from mailroom.domain.log_search import parse_search
from mailroom.domain.users import Profile
from mailroom.web import i18n
from mailroom.web.security import MAIL_BODY_CSP
from tests.support.smtp_servers import Behaviour, SmtpServerHandle
from tests.web.conftest import ADMIN, PASSWORD, log_in

WEB = Path(__file__).resolve().parents[2] / "src" / "mailroom" / "web"
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


def csrf(client: TestClient) -> str:
    return str(client.headers["X-CSRF-Token"])


def subjects_on(page: str) -> list[str]:
    """The subjects in the log table, in order."""
    return re.findall(r'<td class="wrap"><a href="/log/[0-9a-f]+">([^<]*)</a></td>', page)


def send(room: Mailroom, subject: str, to: str = "ann@example.org", **fields: object) -> str:
    return room.send_mail(SYSTEM, Mail(to=to, subject=subject, text=f"Text of {subject}", **fields))  # type: ignore[arg-type]


# --- overview ----------------------------------------------------------------------------------------


def test_overview_shows_counts_and_the_hourly_chart(admin: TestClient, room: Mailroom,
                                                    smtp_server: SmtpServerHandle) -> None:
    for n in range(2):
        send(room, f"delivered {n}")
    room.deliver_pending()
    smtp_server.behaviour = Behaviour.PERMANENT
    send(room, "refused")
    room.deliver_pending()
    send(room, "waiting")
    page = admin.get("/")
    assert page.status_code == 200 and "<h1>Mail &amp; SMTP</h1>" in page.text
    counts = dict(re.findall(r'data-testid="count-(\w+)">\s*<span class="count">([^<]+)</span>', page.text))
    assert counts == {"queued": "1", "deferred": "0", "sent": "2", "failed": "1"}
    chart = page.text[page.text.index('<svg class="chart"'):page.text.index("</svg>")]
    assert chart.count('class="hit"') == 48
    assert 'class="sent"' in chart and 'class="failed"' in chart
    assert "2 sent, 1 failed" in chart  # the tooltip of the current hour
    for area in ("/test", "/log", "/templates", "/smtp"):
        assert f'href="{area}"' in page.text


def test_the_overview_shows_only_what_the_user_may_see(user_with: Callable[..., TestClient]) -> None:
    editor = user_with("template-editor")
    page = editor.get("/")
    assert page.status_code == 200
    assert 'data-testid="count-queued"' not in page.text and "<svg" not in page.text
    assert 'href="/templates"' in page.text and 'href="/log"' not in page.text.split("<main")[1]


def test_activity_counts_per_hour_on_both_databases(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        now = datetime.now(UTC)
        finished = {"sent": [now - timedelta(minutes=1), now - timedelta(hours=3, minutes=10),
                             now - timedelta(hours=3, minutes=20), now - timedelta(hours=30),
                             now - timedelta(days=5)],
                    "failed": [now - timedelta(hours=3, minutes=5), now - timedelta(hours=47)],
                    "cancelled": [now - timedelta(minutes=2)]}
        finishing = [(send(room, status), status, moment)
                     for status, moments in finished.items() for moment in moments]
        with room.database.write() as conn:
            for mail_id, status, moment in finishing:
                conn.execute(update(mails).where(mails.c.id == mail_id).values(status=status, finished_at=moment))
        send(room, "still queued")
        activity = room.log.activity(SYSTEM)
    assert len(activity.hourly) == 48
    assert activity.hourly[-1].hour == now.replace(minute=0, second=0, microsecond=0)
    assert all(h.hour.tzinfo is not None for h in activity.hourly)
    by_hour = {h.hour: (h.sent, h.failed) for h in activity.hourly if h.sent or h.failed}
    expected: dict[datetime, list[int]] = {}
    for status, moments in finished.items():
        for moment in moments:
            hour = moment.replace(minute=0, second=0, microsecond=0)
            if status != "cancelled" and hour >= activity.hourly[0].hour:
                expected.setdefault(hour, [0, 0])[0 if status == "sent" else 1] += 1
    assert by_hour == {hour: tuple(counts) for hour, counts in expected.items()}
    assert (activity.sent_last_24h, activity.failed_last_24h) == (3, 1)
    assert activity.by_status[MailStatus.QUEUED] == 1 and activity.by_status[MailStatus.SENT] == 5


# --- log -----------------------------------------------------------------------------------------------


def test_log_lists_mails_with_their_columns(admin: TestClient, room: Mailroom) -> None:
    mail_id = send(room, "Quarterly invoice", to="ann@example.org")
    room.deliver_pending()
    page = admin.get("/log")
    assert page.status_code == 200
    assert "1 entry" in page.text and subjects_on(page.text) == ["Quarterly invoice"]
    row = page.text[page.text.index(f'data-mail-id="{mail_id}"'):]
    row = row[:row.index("</tr>")]
    assert "ann@example.org" in row and "status-sent" in row and ">relay<" in row
    assert "data-mail-status" not in row  # final: nothing to follow
    for header in ("Subject", "Recipients", "Status", "Last error", "Server", "Queued at", "Sent at"):
        assert f">{header}" in page.text


def test_search_syntax_through_the_page(admin: TestClient, room: Mailroom) -> None:
    send(room, "Invoice May", to="ann@example.org", tags=["billing"])
    send(room, "Invoice June", to="bob@example.org", sender="Shop <shop@example.org>")
    send(room, "Two words here", to="carl@example.org")
    cancelled = send(room, "Newsletter", to="ann@example.org")
    room.cancel_mail(SYSTEM, cancelled)

    def found(q: str) -> set[str]:
        page = admin.get("/log", params={"q": q})
        assert page.status_code == 200, page.text
        return set(subjects_on(page.text))

    assert found("invoice") == {"Invoice May", "Invoice June"}
    assert found("invoice ann") == {"Invoice May"}
    assert found("to:ann") == {"Invoice May", "Newsletter"}
    assert found("from:shop@") == {"Invoice June"}
    assert found('subject:"two words"') == {"Two words here"}
    assert found("tag:billing") == {"Invoice May"}
    assert found("-status:queued") == {"Newsletter"}
    assert found("status:cancelled,queued -invoice") == {"Two words here", "Newsletter"}
    assert found("-from:shop") == {"Invoice May", "Two words here", "Newsletter"}  # no sender is no match
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert found(f"before:{tomorrow}") == found("") and found(f"after:{tomorrow}") == set()
    wrong = admin.get("/log", params={"q": "status:snt"})
    assert wrong.status_code == 422 and "unknown status &#39;snt&#39;" in wrong.text
    assert 'value="status:snt"' in wrong.text  # the search stays in the box to be corrected


def test_filters_sort_and_pages_live_in_the_url(admin: TestClient, room: Mailroom) -> None:
    room.send_mails(SYSTEM, [Mail(to=f"u{i}@example.org", subject=f"Mail {i:02}", text="t") for i in range(30)])
    first = admin.get("/log", params={"sort": "subject", "order": "asc", "size": 25})
    assert "30 entries" in first.text and "Page 1 of 2" in first.text
    assert subjects_on(first.text)[:3] == ["Mail 00", "Mail 01", "Mail 02"]
    next_link = re.search(r'href="(/log\?[^"]+)" rel="next"', first.text)
    assert next_link
    second = admin.get(next_link.group(1).replace("&amp;", "&"))
    assert subjects_on(second.text) == [f"Mail {i:02}" for i in range(25, 30)]
    flipped = re.search(r'href="(/log\?[^"]*sort=subject[^"]*)"', first.text)
    assert flipped and "order=desc" not in flipped.group(1)  # desc is the default order: left out
    assert subjects_on(admin.get(flipped.group(1).replace("&amp;", "&")).text)[0] == "Mail 29"
    assert "0 entries" in admin.get("/log", params={"status": "sent"}).text
    queued = admin.get("/log", params={"period": "1h", "status": "queued"})
    assert "30 entries" in queued.text and 'value="queued" selected' in queued.text
    assert admin.get("/log", params={"status": "bogus"}).status_code == 422


def test_totals_are_formatted_for_the_language(admin: TestClient, german: TestClient, room: Mailroom) -> None:
    room.send_mails(SYSTEM, [Mail(to="a@example.org", subject=f"n{i}", text="t") for i in range(1234)])
    assert "1,234 entries" in admin.get("/log").text
    german_page = german.get("/log").text
    assert "1.234 Einträge" in german_page and "Seite 1 von 25" in german_page


def test_bulk_actions_on_a_selection(admin: TestClient, room: Mailroom) -> None:
    a, b, c = (send(room, name) for name in ("a", "b", "c"))
    back = "/log?q=x&done=old"
    answer = admin.post("/log/actions", data={"csrf_token": csrf(admin), "action": "cancel", "ids": [a, b],
                                              "back": back}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/log?q=x&done=cancel&n=2&skipped=0"
    assert {room.get_mail(SYSTEM, i).status for i in (a, b)} == {MailStatus.CANCELLED}
    page = admin.post("/log/actions", data={"csrf_token": csrf(admin), "action": "retry", "ids": [a, c]})
    assert "1 mail queued again." in page.text
    assert "1 mail was skipped: only failed, cancelled or deferred mails" in page.text
    assert room.get_mail(SYSTEM, a).status is MailStatus.QUEUED
    page = admin.post("/log/actions", data={"csrf_token": csrf(admin), "action": "delete", "ids": [a, b, c]})
    assert "3 mails deleted." in page.text and "0 entries" in page.text
    nothing = admin.post("/log/actions", data={"csrf_token": csrf(admin), "action": "delete"})
    assert "Select at least one mail first." in nothing.text


def test_actions_need_the_csrf_token_and_the_permission(admin: TestClient, room: Mailroom,
                                                        user_with: Callable[..., TestClient]) -> None:
    mail_id = send(room, "keep me")
    no_token = {"X-CSRF-Token": ""}  # the fixture's client sends the token as a header by default
    assert admin.post("/log/actions", data={"action": "delete", "ids": [mail_id]}, headers=no_token).status_code == 403
    assert admin.post(f"/log/{mail_id}/delete", headers=no_token).status_code == 403
    operator = user_with("mail-operator")  # reads and sends, may not cancel or delete
    denied = operator.post("/log/actions", data={"csrf_token": csrf(operator), "action": "delete", "ids": [mail_id]})
    assert denied.status_code == 403 and "“Delete mail”" in denied.text
    assert operator.post(f"/log/{mail_id}/cancel", data={"csrf_token": csrf(operator)}).status_code == 403
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.QUEUED
    page = operator.get("/log").text
    assert 'value="delete"' not in page and "/cancel" not in page


def test_open_redirects_through_back_are_refused(admin: TestClient, room: Mailroom) -> None:
    mail_id = send(room, "x")
    for back in ("https://evil.example/log", "//evil.example/log", "/account", "/logout"):
        answer = admin.post(f"/log/{mail_id}/cancel", data={"csrf_token": csrf(admin), "back": back},
                            follow_redirects=False)
        assert answer.headers["location"].startswith("/log?done=cancel")
        room.retry_mail(SYSTEM, mail_id)


def test_users_without_read_mail_get_403(user_with: Callable[..., TestClient], room: Mailroom) -> None:
    mail_id = send(room, "secret")
    editor = user_with("template-editor")
    for path in ("/log", f"/log/{mail_id}", f"/log/{mail_id}/body.html", f"/log/{mail_id}/message.eml",
                 f"/log/{mail_id}/parts/0", "/test"):
        page = editor.get(path)
        assert page.status_code == 403, path
        assert "secret" not in page.text
    assert "Not allowed" in editor.get("/log").text


def test_pages_redirect_to_the_login_when_logged_out(client: TestClient) -> None:
    for path in ("/", "/log", "/test"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


# --- mail detail -----------------------------------------------------------------------------------


@pytest.fixture
def rich_mail(room: Mailroom) -> str:
    return room.send_mail(SYSTEM, Mail(
        to="Ann Lee <ann@example.org>", cc="cc@example.org", bcc="hidden@example.org",
        sender="Shop <shop@example.org>", subject="Your order 42", text="Plain words",
        html='<p style="color:#333">Hi <img src="cid:logo"></p><script>alert(1)</script>', tags=["orders"],
        attachments=[Attachment(filename="report ü.pdf", content=b"%PDF-1.4 data", content_type="application/pdf"),
                     Attachment(filename="logo.png", content=b"\x89PNG fake", content_type="image/png", inline=True,
                                content_id="logo")]))


def test_detail_shows_headers_recipients_attempts_bodies_and_attachments(
        admin: TestClient, room: Mailroom, rich_mail: str, smtp_server: SmtpServerHandle) -> None:
    room.deliver_pending()
    page = admin.get(f"/log/{rich_mail}")
    assert page.status_code == 200
    text = page.text
    assert "Your order 42" in text and "status-sent" in text
    for header in ("Subject", "From", "To", "Cc", "Message-ID", "Date"):
        assert f'<th scope="row">{header}</th>' in text
    assert "Shop &lt;shop@example.org&gt;" in text
    assert "hidden@example.org" in text and "Bcc" in text  # the envelope recipient, not a header
    assert text.count("accepted") >= 3
    attempts = text[text.index("<h2>Attempts</h2>"):]
    assert ">relay<" in attempts and "<code>250</code>" in attempts and " ms</td>" in attempts
    assert f'<iframe class="mail-body" sandbox src="/log/{rich_mail}/body.html"' in text
    assert "allow-scripts" not in text
    assert '<pre data-testid="text-body">Plain words' in text
    assert "report ü.pdf" in text and "application/pdf" in text and "13 bytes" in text
    assert f'href="/log/{rich_mail}/message.eml"' in text


def test_body_endpoint_has_the_mail_body_csp_and_inlines_cid_images(admin: TestClient, rich_mail: str) -> None:
    body = admin.get(f"/log/{rich_mail}/body.html")
    assert body.status_code == 200
    assert body.headers["content-security-policy"] == MAIL_BODY_CSP
    assert "script-src" not in body.headers["content-security-policy"]
    assert 'src="data:image/png;base64,' in body.text and "cid:logo" not in body.text


def test_eml_and_attachment_downloads(admin: TestClient, room: Mailroom, rich_mail: str) -> None:
    eml = admin.get(f"/log/{rich_mail}/message.eml")
    assert eml.status_code == 200
    assert eml.headers["content-type"].startswith("message/rfc822")
    assert eml.headers["content-disposition"].startswith(f'attachment; filename="{rich_mail}.eml"')
    assert eml.content == room.log.raw_message(SYSTEM, rich_mail)
    message = message_from_bytes(eml.content, policy=default_policy)
    assert message["Subject"] == "Your order 42"
    page = admin.get(f"/log/{rich_mail}").text
    link = re.search(r'href="(/log/[0-9a-f]+/parts/\d+)" download>report ü.pdf', page)
    assert link
    part = admin.get(link.group(1))
    assert part.content == b"%PDF-1.4 data"
    assert part.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''report%20%C3%BC.pdf" in part.headers["content-disposition"]
    assert part.headers["content-security-policy"] == MAIL_BODY_CSP
    assert admin.get(f"/log/{rich_mail}/parts/99").status_code == 404


def test_a_deferred_mail_can_be_retried_now_from_its_page_and_through_the_api(admin: TestClient,
                                                                              room: Mailroom) -> None:
    waiting = [send(room, f"deferred {n}") for n in range(2)]
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    with room.database.write() as conn:
        conn.execute(update(mails).where(mails.c.id.in_(waiting)).values(
            status=MailStatus.DEFERRED.value, attempts=1, next_attempt_at=in_an_hour, last_error="451 later"))
    page = admin.get(f"/log/{waiting[0]}").text
    assert f'formaction="/log/{waiting[0]}/retry"' in page
    admin.post(f"/log/{waiting[0]}/retry", data={"csrf_token": csrf(admin), "back": f"/log/{waiting[0]}"})
    answer = admin.post(f"/api/v1/mails/{waiting[1]}/retry")
    assert answer.status_code == 200 and answer.json()["status"] == "deferred"
    for mail_id in waiting:
        mail = room.get_mail(SYSTEM, mail_id)
        assert mail.status is MailStatus.DEFERRED and mail.attempts == 1
        assert mail.next_attempt_at is not None and mail.next_attempt_at < in_an_hour - timedelta(minutes=30)


def test_detail_actions_go_back_to_the_right_page(admin: TestClient, room: Mailroom) -> None:
    mail_id = send(room, "act on me")
    page = admin.get(f"/log/{mail_id}").text
    assert f'formaction="/log/{mail_id}/cancel"' in page and f'formaction="/log/{mail_id}/retry"' not in page
    cancelled = admin.post(f"/log/{mail_id}/cancel", data={"csrf_token": csrf(admin), "back": f"/log/{mail_id}"})
    assert cancelled.url.path == f"/log/{mail_id}" and "1 mail cancelled." in cancelled.text
    assert f'formaction="/log/{mail_id}/retry"' in cancelled.text
    again = admin.post(f"/log/{mail_id}/cancel", data={"csrf_token": csrf(admin), "back": f"/log/{mail_id}"})
    assert "only queued or deferred mails can be cancelled" in again.text
    deleted = admin.post(f"/log/{mail_id}/delete", data={"csrf_token": csrf(admin), "back": f"/log/{mail_id}"})
    assert deleted.url.path == "/log" and "1 mail deleted." in deleted.text
    assert admin.get(f"/log/{mail_id}").status_code == 404


def test_a_mail_whose_content_was_dropped_still_shows_its_entry(admin: TestClient, room: Mailroom) -> None:
    from mailroom.adapters.storage.tables import mail_contents

    mail_id = send(room, "old one")
    with room.database.write() as conn:
        conn.execute(mail_contents.delete().where(mail_contents.c.mail_id == mail_id))
    page = admin.get(f"/log/{mail_id}")
    assert page.status_code == 200 and "Retention dropped the content" in page.text
    assert admin.get(f"/log/{mail_id}/message.eml").status_code == 404


# --- test page -----------------------------------------------------------------------------------


def test_test_mail_is_queued_and_the_banner_follows_it(admin: TestClient, room: Mailroom) -> None:
    page = admin.get("/test")
    assert page.status_code == 200 and f'name="to" value="{ADMIN}"' in page.text
    answer = admin.post("/test/send", data={"csrf_token": csrf(admin), "to": "ann@example.org, Bob <bob@example.org>",
                                            "subject": "Hello from the test page", "message": "Body"},
                        follow_redirects=False)
    assert answer.status_code == 303
    mail_id = answer.headers["location"].removeprefix("/test?sent=")
    mail = room.get_mail(SYSTEM, mail_id)
    assert mail.subject == "Hello from the test page"
    assert [r.email for r in mail.recipients] == ["ann@example.org", "bob@example.org"]
    banner = admin.get(answer.headers["location"]).text
    assert f'data-mail-status="{mail_id}"' in banner and f'href="/log/{mail_id}"' in banner
    assert 'data-label-sent="sent"' in banner


def test_test_mail_errors_are_shown_and_nothing_is_queued(admin: TestClient, room: Mailroom) -> None:
    page = admin.post("/test/send", data={"csrf_token": csrf(admin), "to": "not an address", "subject": "s",
                                          "message": "m"})
    assert page.status_code == 422 and "invalid e-mail address" in page.text
    assert 'value="not an address"' in page.text
    assert room.search_mail_log(SYSTEM).total == 0


NOTIFICATION_MODEL = ('{"application_name": "Acme", "first_name": "Ann", "notification_title": "Report ready",'
                      ' "message": "Your report is ready.", "action_url": "https://acme.example/r/1",'
                      ' "action_label": "Open it"}')


def template_form(admin: TestClient, action: str, model: str = NOTIFICATION_MODEL) -> dict[str, str]:
    return {"csrf_token": csrf(admin), "to": "ann@example.org", "set_id": "mailroom.account",
            "name": "notification", "language": "de", "model": model, "action": action}


def test_template_preview_works_without_javascript(admin: TestClient, room: Mailroom) -> None:
    page = admin.get("/test").text
    assert 'data-sample-model="{' in page and "mailroom.account" in page
    preview = admin.post("/test/template", data=template_form(admin, "preview"))
    assert preview.status_code == 200
    assert 'data-testid="preview-subject">' in preview.text and "Report ready" in preview.text
    assert "Your report is ready." in preview.text.split('data-testid="preview-text">')[1]
    frame = re.search(r'<iframe class="mail-body" sandbox src="([^"]+)"', preview.text)
    assert frame
    html = admin.get(frame.group(1).replace("&amp;", "&"))
    assert html.status_code == 200 and html.headers["content-security-policy"] == MAIL_BODY_CSP
    assert "Report ready" in html.text and "https://acme.example/r/1" in html.text
    assert room.search_mail_log(SYSTEM).total == 0  # a preview queues nothing


def test_a_bad_model_is_a_precise_error_and_nothing_is_queued(admin: TestClient, room: Mailroom) -> None:
    broken = admin.post("/test/template", data=template_form(admin, "send", '{"first_name": "Ann",}'))
    assert broken.status_code == 422
    assert "the model is not valid JSON: Expecting property name enclosed in double quotes at line 1" in broken.text
    assert "{&#34;first_name&#34;: &#34;Ann&#34;,}" in broken.text  # the model stays to be fixed
    lacking = admin.post("/test/template", data=template_form(admin, "preview", '{"first_name": "Ann"}'))
    assert lacking.status_code == 422 and "lacks" in lacking.text and "notification_title" in lacking.text
    unknown = admin.post("/test/template", data={**template_form(admin, "send"), "name": "nope"})
    assert unknown.status_code == 422 and "no template &#39;nope&#39;" in unknown.text
    assert room.search_mail_log(SYSTEM).total == 0


def test_template_mail_is_sent(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post("/test/template", data=template_form(admin, "send"), follow_redirects=False)
    assert answer.status_code == 303
    mail = room.get_mail(SYSTEM, answer.headers["location"].removeprefix("/test?sent="))
    assert mail.template == "mailroom.account/notification" and mail.locale == "de"


def test_the_test_page_needs_send_permission(user_with: Callable[..., TestClient]) -> None:
    reader = user_with("template-editor")
    assert reader.post("/test/send", data={"csrf_token": csrf(reader), "to": "a@example.org"}).status_code == 403


# --- language ------------------------------------------------------------------------------------


def test_german_pages(german: TestClient, rich_mail: str) -> None:
    overview = german.get("/").text
    assert "gesendet in den letzten 24 h" in overview and "Gesendet und fehlgeschlagen pro Stunde" in overview
    log = german.get("/log").text
    assert "1 Eintrag" in log and "Suchsyntax" in log and ">in Warteschlange<" in log
    assert "Betreff" in log and "Eingereiht am" in log
    detail = german.get(f"/log/{rich_mail}").text
    assert ".eml herunterladen" in detail and "Anhänge" in detail and "Kopfzeilen" in detail
    test = german.get("/test").text
    assert "Testmail senden" in test and "Vorlagen-Mail senden" in test and "Vorschau" in test


def test_the_browser_language_counts_when_the_user_has_an_unsupported_one(app: FastAPI, room: Mailroom) -> None:
    room.users.create_user(SYSTEM, Profile(email="fred@example.org", preferred_language="fr"), password=PASSWORD,
                           roles=["admin"], verified=True, notify_user=False)
    with TestClient(app, headers=GERMAN) as client:
        assert "Suchsyntax" in log_in(client, "fred@example.org").get("/log").text


def test_every_string_of_the_mail_pages_has_a_german_translation() -> None:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    found: set[str] = set()
    for module in ("log", "overview", "mail_test"):
        found |= {msg if isinstance(msg, str) else msg[0]
                  for _line, msg, _comments, _context in extract_from_file("python", WEB / "ui" / f"{module}.py",
                                                                           keywords=keywords)}
    for template in ("overview", "test_mail", "log", "mail_detail"):
        found |= {msg if isinstance(msg, str) else msg[0]
                  for _line, msg, _comments, _context in extract_from_file(
                      jinja2.ext.babel_extract, WEB / "templates" / f"{template}.html",  # type: ignore[arg-type]
                      options={"extensions": "jinja2.ext.i18n"})}
    catalog = i18n.translations("de")._catalog
    missing = sorted(m for m in found if m not in catalog and (m, 0) not in catalog)
    assert missing == []


# --- the storage queries behind the log, on both databases ---------------------------------------


def test_search_terms_and_excluded_statuses_on_both_databases(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        send(room, "Invoice May", to="ann@example.org", tags=["Billing"])
        send(room, "Invoice June", to="bob@example.org", sender="Shop <SHOP@example.org>")
        send(room, "100%_ done", to="carl@example.org")
        room.cancel_mail(SYSTEM, send(room, "Newsletter", to="ann@example.org"))

        def found(query: LogQuery) -> set[str]:
            return {m.subject for m in room.search_mail_log(SYSTEM, query).items}

        assert found(parse_search("invoice -june")) == {"Invoice May"}
        assert found(parse_search("from:shop@")) == {"Invoice June"}
        assert found(LogQuery(sender="shop")) == {"Invoice June"}
        assert found(parse_search("-from:shop")) == {"Invoice May", "100%_ done", "Newsletter"}
        assert found(parse_search("tag:billing")) == {"Invoice May"}  # tags compare case-insensitively
        assert found(LogQuery(tag="billing")) == {"Invoice May"}
        assert found(parse_search("-tag:billing -server:relay")) == {"Invoice June", "100%_ done", "Newsletter"}
        assert found(parse_search("-status:queued")) == {"Newsletter"}
        assert found(parse_search("status:sent")) == set()
        assert found(parse_search('"100%_"')) == {"100%_ done"} and found(parse_search('"0%_d"')) == set()
        assert found(LogQuery(terms=(SearchTerm(TermField.SUBJECT, "invoice"),
                                     SearchTerm(TermField.RECIPIENT, "ann", negated=True)))) == {"Invoice June"}
        narrowed = parse_search("status:sent", LogQuery(statuses=frozenset({MailStatus.QUEUED})))
        assert room.search_mail_log(SYSTEM, narrowed).total == 0
