"""Templates against real databases: editing with versions, sandboxed rendering, locales, template mail."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings, Subject
from mailroom.adapters.storage.tables import mails
from mailroom.adapters.templates.folder import read_folder, read_zip, write_folder, write_zip
from mailroom.domain.permissions import READ_TEMPLATES, SEND_MAIL
from mailroom.domain.servers import Security
from mailroom.domain.templates import Template, TemplateKind, TemplateSet
from mailroom.errors import (
    InvalidInput,
    InvalidModel,
    PermissionDenied,
    SandboxViolation,
    TemplateNotFound,
    TemplateRenderError,
    TemplateSetNotFound,
    TemplateSyntaxError,
)
from tests.support.smtp_servers import SmtpServerHandle

SET = "shop.orders"


@pytest.fixture
def room(database_url: str, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        room.templates.save_set(SYSTEM, TemplateSet(id=SET, name="Orders", default_locale="en"))
        for locale, html, body in (("en", "<h1>{{ shop }}</h1>{% block content %}{% endblock %}", "Hello"),
                                   ("de", "<h1>{{ shop }} (de)</h1>{% block content %}{% endblock %}", "Hallo")):
            room.templates.save_template(SYSTEM, Template(set_id=SET, name="layout", locale=locale,
                                                          kind=TemplateKind.PARTIAL, html=html))
            room.templates.save_template(SYSTEM, Template(
                set_id=SET, name="shipped", locale=locale, subject=f"{body} {{{{ name }}}}: order {{{{ order }}}}",
                html='{% extends "layout.html" %}{% block content %}<p>' + body
                     + ' {{ name }}</p><a href="{{ url }}">track</a>{% endblock %}',
                variables={"shop": "Shop", "name": "Ann", "order": "42", "url": "https://shop.example/42"}))
        room.templates.save_template(SYSTEM, Template(
            set_id=SET, name="shipped", locale="de-CH", subject="Grüezi {{ name }}", text="Grüezi {{ name }}",
            variables={"name": "Ann"}))
        yield room


def count_mails(room: Mailroom) -> int:
    with room.database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(mails)).scalar_one())


def test_html_is_escaped_text_is_not_and_text_is_derived(room: Mailroom) -> None:
    model = {"shop": "Shop", "name": "<script>alert(1)</script>", "order": "42", "url": "https://x.example/t"}
    rendered = room.templates.preview(SYSTEM, SET, "shipped", language="en", model=model)
    assert rendered.subject == "Hello <script>alert(1)</script>: order 42"
    assert rendered.html is not None and "&lt;script&gt;" in rendered.html and "<script>" not in rendered.html
    assert "<script>alert(1)</script>" in rendered.text, "text is derived from HTML and not escaped"
    assert "https://x.example/t" in rendered.text
    assert rendered.locale == "en" and rendered.template == f"{SET}/shipped"


@pytest.mark.parametrize(("language", "expected"), [
    ("de_DE", "de"), ("de-DE", "de"), ("de", "de"), ("de_ch", "de-CH"), ("de-CH", "de-CH"), ("fr", "en"),
    (None, "en"), ("not a locale!", "en"),
])
def test_locale_fallback_chain(room: Mailroom, language: str | None, expected: str) -> None:
    model = {"shop": "S", "name": "N", "order": "1", "url": "https://x.example"}
    assert room.templates.preview(SYSTEM, SET, "shipped", language=language, model=model).locale == expected


def test_template_mail_is_delivered_with_its_locale_recorded(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                            security=Security.NONE, sender="shop@example.org"))
    mail_id = room.send_template_mail(SYSTEM, to="ann@example.org", set_id=SET, name="shipped", language="de_AT",
                                      model='{"shop": "Laden", "name": "Ann", "order": "7", "url": "https://l.example"}')
    stored = room.get_mail(SYSTEM, mail_id)
    assert (stored.template, stored.locale, stored.subject) == (f"{SET}/shipped", "de", "Hallo Ann: order 7")
    room.deliver_pending()
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT
    message = smtp_server.wait_for(1)[0].message()
    assert message["Subject"] == "Hallo Ann: order 7"
    html = message.get_body(("html",))
    assert html is not None and "<h1>Laden (de)</h1>" in html.get_content()


@pytest.mark.parametrize(("call", "error"), [
    (lambda r: r.send_template_mail(SYSTEM, to="a@example.org", set_id="nope", name="x", model={}),
     TemplateSetNotFound),
    (lambda r: r.send_template_mail(SYSTEM, to="a@example.org", set_id=SET, name="nope", model={}), TemplateNotFound),
    (lambda r: r.send_template_mail(SYSTEM, to="a@example.org", set_id=SET, name="shipped", model="[1, 2]"),
     InvalidModel),
    (lambda r: r.send_template_mail(SYSTEM, to="a@example.org", set_id=SET, name="shipped", model='{"a": '),
     InvalidModel),
    (lambda r: r.send_template_mail(SYSTEM, to="a@example.org", set_id=SET, name="shipped", model={"name": "A"}),
     InvalidModel),
    (lambda r: r.send_template_mail(SYSTEM, to="not-an-address", set_id=SET, name="shipped",
                                    model={"shop": "S", "name": "N", "order": "1", "url": "u"}), InvalidInput),
])
def test_bad_template_mail_input_is_refused_and_nothing_is_queued(room: Mailroom, call: object,
                                                                  error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        call(room)  # type: ignore[operator]
    assert str(caught.value)
    assert count_mails(room) == 0


def test_missing_model_variable_error_names_it(room: Mailroom) -> None:
    with pytest.raises(InvalidModel, match="lacks order, shop, url"):
        room.templates.preview(SYSTEM, SET, "shipped", language="en", model={"name": "x"})


def test_syntax_errors_and_undeclared_variables_are_refused_on_save(room: Mailroom) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        room.templates.save_template(SYSTEM, Template(set_id=SET, name="broken", locale="en", subject="s",
                                                      html="<p>\n{{ x }\n</p>\n", variables={"x": "1"}))
    assert caught.value.line == 2 and "broken" in str(caught.value) and "line 2" in str(caught.value)
    with pytest.raises(InvalidInput, match="undeclared variables: secret"):
        room.templates.save_template(SYSTEM, Template(set_id=SET, name="t", locale="en", subject="{{ secret }}",
                                                      text="x"))
    with pytest.raises(TemplateNotFound):
        room.templates.get_template(SYSTEM, SET, "broken", "en")


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ name.__class__ }}",
    "{{ namespace.__init__.__globals__['os'] }}",
    "{{ range.__self__ }}",
    "{{ (name|attr('__class__')) }}",
    "{{ config.items() }}",
    "{{ os.popen('id').read() }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("payload", SANDBOX_ESCAPES)
def test_sandbox_escapes_are_refused(room: Mailroom, payload: str) -> None:
    attempt = Template(set_id=SET, name="attack", locale="en", subject="s", text=payload, variables={"name": "x"})
    with pytest.raises(TemplateRenderError) as caught:
        room.templates.preview(SYSTEM, SET, "attack", model={"name": "x"}, template=attempt)
    assert "attack" in str(caught.value)


def test_sandbox_violations_are_reported_as_such(room: Mailroom) -> None:
    attempt = Template(set_id=SET, name="attack", locale="en", subject="s", text="{{ name.__class__.__mro__ }}",
                       variables={"name": "x"})
    with pytest.raises(SandboxViolation):
        room.templates.preview(SYSTEM, SET, "attack", model={"name": "x"}, template=attempt)


def test_versions_diff_and_restore(room: Mailroom) -> None:
    first = room.templates.get_template(SYSTEM, SET, "shipped", "de-CH")
    for n in (2, 3):
        room.templates.save_template(SYSTEM, Template(set_id=SET, name="shipped", locale="de-CH",
                                                      subject=f"Grüezi v{n} {{{{ name }}}}", text="Grüezi {{ name }}",
                                                      variables={"name": "Ann"}))
    versions = room.templates.versions(SYSTEM, SET, "shipped", "de-CH")
    assert [v.version for v in versions] == [3, 2, 1]
    diff = room.templates.diff(SYSTEM, SET, "shipped", "de-CH", 1, 3)
    assert "-Grüezi {{ name }}" in diff and "+Grüezi v3 {{ name }}" in diff
    restored = room.templates.restore_version(SYSTEM, SET, "shipped", "de-CH", 1)
    assert restored.version == 4 and restored.subject == first.subject
    with pytest.raises(InvalidInput, match="no version 9"):
        room.templates.diff(SYSTEM, SET, "shipped", "de-CH", 1, 9)


def test_missing_translations_report(room: Mailroom) -> None:
    missing = room.templates.missing_translations(SYSTEM, SET)
    assert [(m.name, m.locale) for m in missing] == [("layout", "de-CH")]


def test_permissions(room: Mailroom) -> None:
    reader = Subject.user("u1", [READ_TEMPLATES])
    assert room.templates.list_sets(reader)
    with pytest.raises(PermissionDenied):
        room.templates.save_set(reader, TemplateSet(id="x", name="x"))
    with pytest.raises(PermissionDenied):
        room.send_template_mail(reader, to="a@example.org", set_id=SET, name="shipped", model={})
    sender = Subject.user("u2", [SEND_MAIL])
    with pytest.raises(PermissionDenied):
        room.templates.preview(sender, SET, "shipped")


def test_export_and_import_as_folder_and_zip(room: Mailroom, tmp_path: Path) -> None:
    template_set, templates = room.templates.export_set(SYSTEM, SET)
    write_folder(template_set, templates, tmp_path / SET)
    again_set, again = read_folder(tmp_path / SET)
    assert again_set == template_set
    assert {(t.key, t.subject, t.html, t.text, tuple(sorted(t.variables.items()))) for t in again} == \
        {(t.key, t.subject, t.html, t.text, tuple(sorted(t.variables.items()))) for t in templates}
    assert room.templates.import_set(SYSTEM, again_set, again) == 0, "unchanged templates keep their version"

    data = write_zip(template_set, templates)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist()[0].startswith(f"{SET}/")
    zipped_set, zipped = read_zip(data)
    changed = [t if t.name != "layout" or t.locale != "en" else
               Template(set_id=SET, name="layout", locale="en", kind=TemplateKind.PARTIAL, html="<b>{{ shop }}</b>"
                        "{% block content %}{% endblock %}") for t in zipped]
    assert room.templates.import_set(SYSTEM, zipped_set, changed) == 1
    assert room.templates.get_template(SYSTEM, SET, "layout", "en").version == 2


def test_builtin_templates_render_in_both_languages(room: Mailroom) -> None:
    builtin = {s.id for s in room.templates.list_sets(SYSTEM)} - {SET}
    assert "mailroom.account" in builtin
    templates = [t for t in room.templates.list_templates(SYSTEM, "mailroom.account")
                 if t.kind is TemplateKind.TEMPLATE]
    names = {t.name for t in templates}
    assert names >= {"registration_confirmation", "email_verification", "password_reset", "password_changed",
                     "notification"}
    assert {t.locale for t in templates} == {"en", "de"}
    for template in templates:
        mail_id = room.send_template_mail(SYSTEM, to="ann@example.org", set_id="mailroom.account",
                                          name=template.name, language=template.locale,
                                          model=dict(template.variables))
        raw = room.log.raw_message(SYSTEM, mail_id)
        assert raw is not None
        message = message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        assert message["Subject"] and "{{" not in message["Subject"]
        html, text = message.get_body(("html",)), message.get_body(("plain",))
        assert html is not None and text is not None
        app_name = template.variables["application_name"]
        assert app_name in html.get_content() and app_name in text.get_content()
        assert room.get_mail(SYSTEM, mail_id).locale == template.locale


def test_admin_edits_survive_a_restart_and_restore_default(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        shipped = room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en")
        edited = Template(set_id=shipped.set_id, name=shipped.name, locale="en", subject="Custom reset",
                          html=shipped.html, text=shipped.text, variables=shipped.variables)
        room.templates.save_template(SYSTEM, edited)
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        assert room.templates.get_template(SYSTEM, "mailroom.account", "password_reset", "en").subject == \
            "Custom reset"
        restored = room.templates.restore_default(SYSTEM, "mailroom.account", "password_reset", "en")
        assert restored.subject == shipped.subject and restored.version == 3


def test_mail_without_template_has_no_locale(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, Mail(to="a@example.org", subject="s", text="t"))
    assert room.get_mail(SYSTEM, mail_id).template is None
