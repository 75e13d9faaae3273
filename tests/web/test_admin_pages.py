"""Admin pages for templates, SMTP servers and users: rendering, permissions, forms and their errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailroom import SYSTEM, Mailroom
from mailroom.adapters.storage.tables import smtp_servers
from mailroom.domain.users import Profile
from mailroom.web.security import MAIL_BODY_CSP
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, csrf_of

RESET = "/templates/mailroom.account/password_reset/en"
SMTP_PASSWORD = "s3cret-Smtp-Pa55"  # a test value that must never reach a page


def form(client: TestClient, **fields: object) -> dict[str, object]:
    """Form data with the session's CSRF token, as the pages post it."""
    return {"csrf_token": client.headers["X-CSRF-Token"], **fields}


def template_form(client: TestClient, room: Mailroom, **changes: str) -> dict[str, object]:
    current = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    fields: dict[str, object] = {"subject": current.subject, "html": current.html or "", "text": current.text or "",
                                 "description": current.description,
                                 "variables": '{"application_name": "Acme", "confirm_url": "https://x.example/r",'
                                              ' "email": "ann@example.org", "first_name": "Ann"}'}
    return form(client, **(fields | changes))


def server_id(room: Mailroom, name: str) -> str:
    return room.servers.get(SYSTEM, name).id


# --- every page renders -----------------------------------------------------------------------------


def test_every_admin_page_renders_for_the_admin(admin: TestClient, room: Mailroom) -> None:
    user = room.users.find_user(SYSTEM, ADMIN)
    assert user is not None
    pages = {"/templates": "mailroom.account", "/templates/mailroom.account": "password_reset",
             RESET: "Choose a new password", "/smtp": "relay", "/smtp/new": "Add SMTP server",
             f"/smtp/{server_id(room, 'relay')}/edit": "relay", "/users": ADMIN, "/users/new": "Create user",
             "/users/roles": "Mail operator", f"/users/{user.id}": ADMIN}
    for path, expected in pages.items():
        page = admin.get(path)
        assert page.status_code == 200, (path, page.text)
        assert expected in page.text, path
        # The page CSP allows neither inline scripts nor style attributes.
        assert not re.search(r"<script(?![^>]*\ssrc=)|<[a-z][^<>]*\sstyle=", page.text), path


def test_the_preview_frame_is_a_script_less_document(admin: TestClient) -> None:
    saved = admin.get(f"{RESET}/preview")
    assert saved.status_code == 200
    assert saved.headers["content-security-policy"] == MAIL_BODY_CSP
    assert "Hello Ann," in saved.text  # the declared sample values

    forged = admin.post(f"{RESET}/preview", data={"subject": "x", "html": "<p>x</p>"}, headers={"X-CSRF-Token": ""})
    assert forged.status_code == 403  # no CSRF token, no preview


def test_preview_renders_the_unsaved_edit(admin: TestClient, room: Mailroom) -> None:
    edit = template_form(admin, room, subject="Reset for {{ first_name }}", html="<p>Hi {{ first_name }}!</p>",
                         text="")  # the text is then derived from the HTML
    frame = admin.post(f"{RESET}/preview", data=edit)
    assert frame.status_code == 200 and frame.text == "<p>Hi Ann!</p>"
    assert frame.headers["content-security-policy"] == MAIL_BODY_CSP
    parts = admin.post(f"{RESET}/preview.json", data=edit).json()
    assert parts["subject"] == "Reset for Ann" and "Hi Ann!" in parts["text"]
    assert room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en").version == 1

    broken = admin.post(f"{RESET}/preview.json", data=template_form(admin, room, html="<p>\n{{ first_name }\n</p>"))
    assert broken.status_code == 422 and broken.json()["line"] == 2 and broken.json()["part"] == "html"
    assert "line 1" in admin.post(f"{RESET}/preview", data=template_form(admin, room, html="{% if %}")).text


# --- templates: save, syntax errors, versions --------------------------------------------------------


def test_saving_a_template_keeps_versions_to_compare_and_restore(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post(RESET, data=template_form(admin, room, subject="New password for {{ application_name }}"),
                        follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"{RESET}?done=saved"
    assert "saved as a new version" in admin.get(answer.headers["location"]).text
    current = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    assert (current.version, current.subject) == (2, "New password for {{ application_name }}")

    page = admin.get(f"{RESET}?old=1&new=2")
    assert 'class="diff-add">+New password for {{ application_name }}</span>' in page.text
    assert 'class="diff-del">-' in page.text

    admin.post(f"{RESET}/versions/1/restore", data=form(admin))
    restored = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    assert restored.version == 3 and restored.subject != current.subject

    admin.post(RESET, data=template_form(admin, room, subject="Changed again"))
    admin.post(f"{RESET}/restore-default", data=form(admin))
    shipped = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
    assert shipped.version == 5 and shipped.subject == restored.subject


def test_a_syntax_error_is_shown_with_its_line_and_nothing_is_saved(admin: TestClient, room: Mailroom) -> None:
    html = "<p>Hello {{ first_name }},</p>\n<p>fine</p>\n{% if confirm_url %}<a>link</a>\n"
    answer = admin.post(RESET, data=template_form(admin, room, html=html))
    assert answer.status_code == 422
    assert "Syntax error in the HTML body, line 3" in answer.text
    assert 'data-error-part="html" data-error-line="3"' in answer.text
    assert "{% if confirm_url %}&lt;a&gt;link&lt;/a&gt;" in answer.text  # the edit is kept, escaped, for fixing
    assert room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en").version == 1


def test_undeclared_variables_and_bad_json_are_refused(admin: TestClient, room: Mailroom) -> None:
    undeclared = admin.post(RESET, data=template_form(admin, room, text="{{ nickname }}"))
    assert undeclared.status_code == 422 and "undeclared variables: nickname" in undeclared.text
    bad_json = admin.post(RESET, data=template_form(admin, room, variables='{"first_name": "Ann",}'))
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.text
    number = admin.post(RESET, data=template_form(admin, room, variables='{"first_name": 3}'))
    assert number.status_code == 422 and "must be a text in double quotes" in number.text


def test_a_new_locale_starts_as_a_copy(admin: TestClient, room: Mailroom) -> None:
    answer = admin.post(f"{RESET}/copy", data=form(admin, new_locale="fr_ch"), follow_redirects=False)
    assert answer.headers["location"] == "/templates/mailroom.account/password_reset/fr-CH?done=created"
    copy = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "fr-CH")
    assert copy.subject == room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en").subject
    assert "Restore default" not in admin.get(answer.headers["location"]).text  # mailroom ships no fr-CH
    assert "Restore default" in admin.get(RESET).text
    again = admin.post(f"{RESET}/copy", data=form(admin, new_locale="fr-CH"))
    assert again.status_code == 422 and "already exists in fr-CH" in again.text
    set_page = admin.get("/templates/mailroom.account")
    assert "Missing translations" in set_page.text and "fr-CH" in set_page.text


# --- permissions --------------------------------------------------------------------------------------


def test_a_mail_operator_may_look_but_not_change(user_with: Callable[..., TestClient], room: Mailroom) -> None:
    operator = user_with("mail-operator")
    view = operator.get(RESET)
    assert view.status_code == 200 and "readonly" in view.text and ">Save<" not in view.text
    assert operator.post(RESET, data=template_form(operator, room, subject="Hijacked")).status_code == 403
    assert operator.post(f"{RESET}/versions/1/restore", data=form(operator)).status_code == 403
    assert operator.post(f"{RESET}/copy", data=form(operator, new_locale="fr")).status_code == 403
    assert room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en").version == 1

    smtp = operator.get("/smtp")
    assert smtp.status_code == 200 and "Add SMTP server" not in smtp.text and "Test connection" not in smtp.text
    new = operator.get("/smtp/new")
    assert new.status_code == 403 and "Not allowed" in new.text
    created = operator.post("/smtp", data=form(operator, name="mine", host="smtp.example.org", port="587",
                                                security="starttls"))
    assert created.status_code == 403 and [s.name for s in room.servers.list(SYSTEM)] == ["relay"]
    assert operator.post(f"/smtp/{server_id(room, 'relay')}/delete", data=form(operator)).status_code == 403

    for path in ("/users", "/users/new", "/users/roles"):
        assert operator.get(path).status_code == 403, path
    assert operator.post("/users", data=form(operator, email="x@example.org")).status_code == 403


def test_a_user_without_roles_sees_no_admin_page(user_with: Callable[..., TestClient]) -> None:
    nobody = user_with()
    for path in ("/templates", RESET, "/smtp", "/smtp/new", "/users", "/users/roles"):
        assert nobody.get(path).status_code == 403, path


def test_anonymous_visitors_are_sent_to_the_login(client: TestClient) -> None:
    answer = client.get("/smtp", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/smtp"


# --- SMTP servers -------------------------------------------------------------------------------------


def test_the_smtp_password_never_reaches_a_page(admin: TestClient, room: Mailroom) -> None:
    bad_port = admin.post("/smtp", data=form(admin, name="mail", host="smtp.example.org", port="five",
                                             security="starttls", username="robot", password=SMTP_PASSWORD))
    assert bad_port.status_code == 422 and "Port must be a whole number" in bad_port.text
    assert SMTP_PASSWORD not in bad_port.text and "enter it again" in bad_port.text

    added = admin.post("/smtp", data=form(admin, name="mail", host="smtp.example.org", port="587",
                                          security="starttls", username="robot", password=SMTP_PASSWORD,
                                          sender="robot@example.org", priority="5", enabled="1"),
                       follow_redirects=False)
    assert added.status_code == 303
    mail_id = server_id(room, "mail")
    assert room.server_store.password(mail_id) == SMTP_PASSWORD
    with room.database.read() as conn:
        sealed = conn.execute(select(smtp_servers.c.password_encrypted)
                              .where(smtp_servers.c.id == mail_id)).scalar_one()
    pages = [admin.get("/smtp"), admin.get(added.headers["location"]), admin.get(f"/smtp/{mail_id}/edit"),
             admin.post(f"/smtp/{mail_id}", data=form(admin, name="mail", host="", port="587",
                                                      security="starttls", password=SMTP_PASSWORD)),
             admin.post(f"/smtp/{mail_id}/test", data=form(admin))]
    for page in pages:
        assert SMTP_PASSWORD not in page.text
        assert sealed.decode() not in page.text and sealed.decode()[:24] not in page.text
        assert not re.search(r'name="password"[^>]*value="[^"]', page.text)
    listing = pages[0].text
    assert "smtp.example.org" in listing and "robot@example.org" in listing and ">yes<" in listing


def test_editing_with_a_blank_password_keeps_it(admin: TestClient, room: Mailroom,
                                                smtp_server_factory: Callable[..., SmtpServerHandle]) -> None:
    guarded = smtp_server_factory(auth=("user", "secret"))
    settings = {"name": "guarded", "host": guarded.host, "port": str(guarded.port), "security": "none",
                "username": "user", "priority": "1", "enabled": "1"}
    admin.post("/smtp", data=form(admin, **settings, password="secret"))
    guarded_id = server_id(room, "guarded")

    answer = admin.post(f"/smtp/{guarded_id}", data=form(admin, **(settings | {"priority": "7"}), password=""),
                        follow_redirects=False)
    assert answer.status_code == 303
    assert room.server_store.password(guarded_id) == "secret"
    assert room.servers.get(SYSTEM, guarded_id).priority == 7
    probe = admin.post(f"/smtp/{guarded_id}/test", data=form(admin))
    assert 'data-step="login" data-ok="true"' in probe.text and "The connection works." in probe.text
    assert guarded.logins == [("user", "secret")]

    admin.post(f"/smtp/{guarded_id}", data=form(admin, **settings, password="wrong"))
    probe = admin.post(f"/smtp/{guarded_id}/test", data=form(admin))
    assert 'data-step="login" data-ok="false"' in probe.text and "The test failed at: Login." in probe.text

    admin.post(f"/smtp/{guarded_id}", data=form(admin, **settings, password="ignored", remove_password="1"))
    assert room.server_store.password(guarded_id) is None
    assert not room.servers.get(SYSTEM, guarded_id).has_password


def test_enable_priority_and_delete(admin: TestClient, room: Mailroom) -> None:
    relay = server_id(room, "relay")
    admin.post(f"/smtp/{relay}/enabled", data=form(admin, enabled="false"))
    assert not room.servers.get(SYSTEM, relay).enabled
    page = admin.post(f"/smtp/{relay}/enabled", data=form(admin, enabled="true"))
    assert room.servers.get(SYSTEM, relay).enabled and "The SMTP server relay is enabled." in page.text
    admin.post(f"/smtp/{relay}/priority", data=form(admin, priority="9"))
    assert room.servers.get(SYSTEM, relay).priority == 9
    assert admin.post(f"/smtp/{relay}/priority", data=form(admin, priority="high")).status_code == 422
    deleted = admin.post(f"/smtp/{relay}/delete", data=form(admin))
    assert "The SMTP server relay was deleted." in deleted.text and room.servers.list(SYSTEM) == []


def test_the_connection_test_shows_each_step(admin: TestClient, room: Mailroom) -> None:
    page = admin.post(f"/smtp/{server_id(room, 'relay')}/test", data=form(admin))
    assert page.status_code == 200
    assert re.findall(r'data-step="(\w+)" data-ok="true"', page.text) == ["connect", "ehlo", "login"]
    assert "skipped: no username configured" in page.text


# --- users --------------------------------------------------------------------------------------------


def test_create_a_user_who_gets_a_verification_mail(admin: TestClient, room: Mailroom,
                                                    smtp_server: SmtpServerHandle) -> None:
    answer = admin.post("/users", data=form(admin, email="bea@example.org", first_name="Bea", last_name="Berg",
                                            language="de", roles=["mail-operator", "template-editor"], notify="1"))
    assert answer.status_code == 200 and "A mail with a link to confirm the address is on its way." in answer.text
    bea = room.users.find_user(SYSTEM, "bea@example.org")
    assert bea is not None and not bea.verified and bea.profile.preferred_language == "de"
    assert bea.roles == ("mail-operator", "template-editor")
    room.deliver_pending()
    assert smtp_server.wait_for(1)[0].rcpt_tos == ["bea@example.org"]

    listing = admin.get("/users").text
    assert "bea@example.org" in listing and "Mail operator" in listing and "not verified" in listing

    admin.post(f"/users/{bea.id}/resend-verification", data=form(admin))
    room.deliver_pending()
    assert len(smtp_server.wait_for(2)) == 2

    duplicate = admin.post("/users", data=form(admin, email="bea@example.org", language="en"))
    assert duplicate.status_code == 422 and "already exists" in duplicate.text


def test_roles_and_enabling(admin: TestClient, room: Mailroom) -> None:
    carl = room.users.create_user(SYSTEM, Profile(email="carl@example.org"), password="a long passphrase",
                                  roles=["mail-operator"], verified=True, notify_user=False)
    page = admin.post(f"/users/{carl.id}/roles", data=form(admin, roles=["template-editor"]))
    assert "The roles of carl@example.org were saved." in page.text
    assert room.users.get_user(SYSTEM, carl.id).roles == ("template-editor",)
    admin.post(f"/users/{carl.id}/roles", data=form(admin))
    assert room.users.get_user(SYSTEM, carl.id).roles == ()

    admin.post(f"/users/{carl.id}/enabled", data=form(admin, enabled="false"))
    assert not room.users.get_user(SYSTEM, carl.id).enabled
    admin.post(f"/users/{carl.id}/enabled", data=form(admin, enabled="true"))
    assert room.users.get_user(SYSTEM, carl.id).enabled

    me = room.users.find_user(SYSTEM, ADMIN)
    assert me is not None
    refused = admin.post(f"/users/{me.id}/enabled", data=form(admin, enabled="false"))
    assert refused.status_code == 422 and "cannot disable your own account" in refused.text


def test_roles_page_lists_permission_labels(admin: TestClient) -> None:
    page = admin.get("/users/roles").text
    assert "Every permission, including ones added later" in page
    assert "Send mail" in page and "See SMTP servers" in page and "mailroom.user.manage" in page


# --- German -------------------------------------------------------------------------------------------


def test_german_admins_get_german_pages(admin: TestClient, room: Mailroom) -> None:
    me = room.users.find_user(SYSTEM, ADMIN)
    assert me is not None
    room.users.update_profile(SYSTEM, me.id, replace(me.profile, preferred_language="de"))
    german = {"Accept-Language": "de-DE,de;q=0.9"}
    expected = {"/templates": "Vorlagensatz", RESET: "Versionen", "/smtp": "Verbindung testen",
                "/smtp/new": "SMTP-Server hinzufügen", "/users": "Benutzer anlegen",
                "/users/roles": "Rollen und Rechte"}
    for path, text in expected.items():
        page = admin.get(path, headers=german)
        assert page.status_code == 200 and text in page.text, path
    assert "E-Mail senden" in admin.get("/users/roles", headers=german).text
    error = admin.post(RESET, data=template_form(admin, room, html="{% if %}"), headers=german)
    assert "Syntaxfehler im HTML-Text, Zeile 1" in error.text


def test_the_csrf_meta_and_field_agree(admin: TestClient) -> None:
    page = admin.get("/smtp/new").text
    assert f'name="csrf_token" value="{csrf_of(page)}"' in page


def test_the_403_page_names_the_user_and_the_permission_as_people_know_them(
        user_with: Callable[..., TestClient], room: Mailroom) -> None:
    """It showed the internal user id and the raw permission id ('user '3f…' lacks mailroom.smtp.manage')."""
    operator = user_with("mail-operator")
    page = operator.get("/smtp/new")
    assert page.status_code == 403
    assert "user0@example.org may not do this" in page.text and "“Manage SMTP servers”" in page.text
    user_id = room.users.find_user(SYSTEM, "user0@example.org").id
    assert user_id not in page.text and "mailroom.smtp.manage" not in page.text
