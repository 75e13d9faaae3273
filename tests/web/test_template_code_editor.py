"""The template editor's code editor (CodeMirror 6, bundled from web-editor/ into static/editor.js): line
numbers and Jinja/HTML highlighting, the hidden textarea kept in sync for saving, the error line marked, no CSP
violation under a per-response style nonce, accessible and phone-wide, and the plain textarea without
JavaScript or without the bundle."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from mailroom import SYSTEM, Mailroom
from mailroom.domain.users import Profile
from mailroom.web.security import PAGE_CSP
from mailroom.web.ui import templates as template_pages
from tests.web.conftest import PASSWORD, browser_login
from tests.web.test_a11y_pages import BLOCKING, axe_violations
from tests.web.test_layout_widths import overflow

RESET = "/templates/mailroom.account/password_reset/en"
KEY = ("mailroom.account", "password_reset", "en")
PARTS = ("html", "text", "variables")


def bundle_built() -> bool:
    return template_pages.EDITOR_BUNDLE.is_file()


@pytest.fixture
def bundle() -> None:
    """The browser tests of the editor need the built bundle; in CI its absence is a failure, not a skip."""
    if not bundle_built():
        message = (f"{template_pages.EDITOR_BUNDLE} is not built: run `make editor` (npm ci and esbuild in "
                   "web-editor/)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def code_editor(page: Any, part: str) -> Any:
    return page.locator(f'.cm-editor[data-editor-for="{part}"]')


def fill_code(page: Any, part: str, text: str) -> None:
    """Replace a code field's text the way a person would: in the code editor when the page has one (typed in,
    not set from outside), else in the textarea."""
    editor = code_editor(page, part)
    if editor.count():
        content = editor.locator(".cm-content")
        content.click()
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.press("Delete")
        page.keyboard.insert_text(text)
        expect(page.locator(f"textarea[name={part}]")).to_have_value(text)
    else:
        page.locator(f"textarea[name={part}]").fill(text)


def code_field(page: Any, part: str) -> Any:
    """What holds the focus and the error state of a code field: the editor's content, else the textarea."""
    editor = code_editor(page, part)
    return editor.locator(".cm-content") if editor.count() else page.locator(f"textarea[name={part}]")


def watch_problems(page: Any) -> list[str]:
    """Console errors and CSP violations (the latter reported by the page itself, whatever the console says)."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.add_init_script("""document.addEventListener('securitypolicyviolation', event => {
        console.error('CSP violation: ' + event.violatedDirective + ' ' + (event.blockedURI || 'inline'));
    });""")
    return problems


# --- without a browser: the script tag and the CSP nonce follow the bundle ---------------------------


def test_without_the_bundle_the_page_has_no_editor_script_and_the_plain_csp(
        admin: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_pages, "EDITOR_BUNDLE", tmp_path / "editor.js")
    page = admin.get(RESET)
    assert page.status_code == 200
    assert "/static/editor.js" not in page.text
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert 'class="code" name="html"' in page.text


def test_with_the_bundle_the_page_loads_it_with_a_fresh_style_nonce(
        admin: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = tmp_path / "editor.js"
    built.write_text("// built\n")
    monkeypatch.setattr(template_pages, "EDITOR_BUNDLE", built)
    nonces = []
    for _ in range(2):
        page = admin.get(RESET)
        match = re.search(r'<script src="/static/editor.js" nonce="([A-Za-z0-9_-]{20,})" defer>', page.text)
        assert match, "no editor script with a nonce"
        csp = page.headers["content-security-policy"]
        style_src = next(d for d in csp.split(";") if d.strip().startswith("style-src")).split()
        assert style_src == ["style-src", "'self'", f"'nonce-{match.group(1)}'"]
        assert "unsafe" not in csp and "script-src 'self';" in csp
        nonces.append(match.group(1))
    assert nonces[0] != nonces[1]
    # A refused save renders the editor page too: with the editor and its nonce.
    refused = admin.post(RESET, data={"subject": "x", "html": "{% if %}", "text": "", "variables": "{}",
                                      "csrf_token": admin.headers["X-CSRF-Token"]})
    assert refused.status_code == 422
    assert "'nonce-" in refused.headers["content-security-policy"] and "/static/editor.js" in refused.text
    # Other pages keep the policy without a nonce.
    assert admin.get("/templates").headers["content-security-policy"] == PAGE_CSP


# --- in chromium ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bundle")
def test_the_code_fields_become_editors_with_line_numbers_and_highlighting(page: Any) -> None:
    problems = watch_problems(page)
    browser_login(page)
    page.goto(RESET)
    for part in PARTS:
        editor = code_editor(page, part)
        expect(editor).to_be_visible()
        expect(page.locator(f"textarea[name={part}]")).to_be_hidden()
        expect(editor.locator(".cm-lineNumbers .cm-gutterElement", has_text=re.compile(r"^1$"))).to_have_count(1)
        expect(editor.locator(".cm-content")).to_have_attribute("aria-labelledby", f"label-{part}")
    html = code_editor(page, "html")
    stored = page.locator("textarea[name=html]").input_value()
    assert html.locator(".cm-line").count() == stored.count("\n") + 1
    assert html.locator(".cm-content").inner_text().rstrip("\n") == stored.rstrip("\n")
    # Jinja delimiters, HTML tags and plain text are drawn in different colours.
    colours = page.evaluate("""() => {
        const editor = document.querySelector('.cm-editor[data-editor-for="html"]');
        const colour = text => [...editor.querySelectorAll('.cm-line span:not(:has(span))')]
            .filter(s => s.textContent.trim() === text).map(s => getComputedStyle(s).color)[0] ?? null;
        return {jinja: colour('{%'), tag: colour('p') ?? colour('a'),
                text: getComputedStyle(editor.querySelector('.cm-line')).color};
    }""")
    assert colours["jinja"] and colours["tag"], colours
    assert len({colours["jinja"], colours["tag"], colours["text"]}) == 3, colours
    # CodeMirror's own styles arrived (its <style> elements carry the nonce): a flex box with a gutter.
    assert html.evaluate("e => getComputedStyle(e).display") == "flex"
    assert page.evaluate("""() => [...document.querySelectorAll('style')]
        .every(s => s.nonce && s.nonce.length >= 20)""")
    assert page.locator("style").count() >= 1
    assert problems == []


@pytest.mark.usefixtures("bundle")
def test_typing_in_the_editor_and_saving_stores_the_new_text(page: Any, room: Mailroom) -> None:
    problems = watch_problems(page)
    browser_login(page)
    page.goto(RESET)
    html = '{% extends "layout.html" %}{% block content %}Dear {{ first_name }}, pick a password.{% endblock %}'
    text = "Dear {{ first_name }},\n\npick a new password: {{ confirm_url }}\n"
    fill_code(page, "html", html)
    code_editor(page, "text").locator(".cm-content").click()
    page.keyboard.press("ControlOrMeta+Home")
    page.keyboard.type("Dear {{ first_name }},")  # typed key by key, as a person does
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.type("pick a new password: {{ confirm_url }}")
    page.keyboard.press("Enter")
    # The text editor held the stored text before: drop it, keep what was typed.
    page.keyboard.press("ControlOrMeta+Shift+End")
    page.keyboard.press("Delete")

    page.get_by_role("button", name="Preview").click()
    preview = page.frame_locator("iframe[name=preview-frame]")
    expect(preview.get_by_text("Dear Ann, pick a password.")).to_be_visible()

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("The template was saved as a new version.")
    saved = room.templates.get_template(SYSTEM, *KEY)
    assert saved.html == html
    assert saved.text is not None and saved.text.startswith(text)
    assert saved.text.strip() == text.strip()
    expect(code_editor(page, "html").locator(".cm-content")).to_have_text(html)
    assert problems == []


@pytest.mark.usefixtures("bundle")
def test_a_syntax_error_marks_its_line_in_the_editor_and_scrolls_there(page: Any, room: Mailroom) -> None:
    problems = watch_problems(page)
    browser_login(page)
    page.goto(RESET)
    lines = [f"Line {n}: {{{{ first_name }}}}" for n in range(1, 41)]
    lines[33] = "{% if %}"  # line 34, far below the editor's height
    fill_code(page, "text", "\n".join(lines))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("editor-error")).to_contain_text("Syntax error in the text body, line 34")

    editor = code_editor(page, "text")
    marked = editor.locator(".cm-line.cm-error-line")
    expect(marked).to_have_count(1)
    expect(marked).to_have_text("{% if %}")
    expect(editor.locator(".cm-gutterElement.cm-error-line-number")).to_have_text("34")
    expect(editor.locator(".cm-content")).to_be_focused()
    expect(editor.locator(".cm-content")).to_have_attribute("aria-invalid", "true")
    assert editor.evaluate("""e => {
        const line = e.querySelector('.cm-error-line').getBoundingClientRect();
        const box = e.querySelector('.cm-scroller').getBoundingClientRect();
        return line.top >= box.top && line.bottom <= box.bottom;
    }"""), "the marked line is scrolled into the editor's view"
    assert marked.evaluate("e => getComputedStyle(e).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    assert room.templates.get_template(SYSTEM, *KEY).version == 1, "nothing was saved"

    # A preview that fails points the same way, in the HTML editor this time; a clean preview clears it.
    fill_code(page, "text", "")
    fill_code(page, "html", "<p>Hello</p>\n<p>{{ first_name }</p>\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-preview-error]")).to_contain_text("line 2")
    expect(code_editor(page, "html").locator(".cm-error-line")).to_have_text("<p>{{ first_name }</p>")
    expect(editor.locator(".cm-error-line")).to_have_count(0)
    expect(page.locator(".cm-content[aria-invalid=true]")).to_have_count(1)
    expect(code_editor(page, "html").locator(".cm-content")).to_have_attribute("aria-invalid", "true")
    fill_code(page, "html", "<p>Hello {{ first_name }}</p>\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("[data-preview-error]")).to_be_hidden()
    expect(page.locator(".cm-error-line")).to_have_count(0)
    expect(page.locator(".cm-content[aria-invalid]")).to_have_count(0)
    assert [p for p in problems if "422" not in p] == []  # the failed preview's answer is a 422, on purpose


@pytest.mark.usefixtures("bundle")
@pytest.mark.parametrize("width", [390, 1366])
def test_axe_finds_nothing_serious_and_the_phone_does_not_scroll_sideways(
        browser: Any, live_server: str, width: int) -> None:
    context = browser.new_context(base_url=live_server, locale="en-US", viewport={"width": width, "height": 844})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        problems = watch_problems(page)
        browser_login(page)
        page.goto(RESET)
        expect(code_editor(page, "html")).to_be_visible()
        # A long line without a place to break: it scrolls inside the editor, not the page.
        fill_code(page, "html", "<p>" + "x" * 400 + "</p>")
        page.keyboard.press("ControlOrMeta+Home")
        blocking = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
                    for v in axe_violations(page) if v["impact"] in BLOCKING]
        assert blocking == []
        found = overflow(page)
        assert found["scroll"] <= found["inner"], found
        assert problems == []
    finally:
        context.close()


@pytest.mark.usefixtures("bundle")
def test_a_reader_gets_read_only_editors(page: Any, room: Mailroom) -> None:
    room.users.create_user(SYSTEM, Profile(email="reader@example.org"), password=PASSWORD,
                           roles=["mail-operator"], verified=True, notify_user=False)
    browser_login(page, "reader@example.org")
    page.goto(RESET)
    before = page.locator("textarea[name=html]").input_value()
    content = code_editor(page, "html").locator(".cm-content")
    expect(content).to_have_attribute("aria-readonly", "true")
    content.click()
    page.keyboard.type("XYZZY")
    expect(content).not_to_contain_text("XYZZY")
    assert page.locator("textarea[name=html]").input_value() == before
    expect(page.get_by_role("button", name="Save")).to_have_count(0)


def test_without_javascript_the_textarea_works_as_before(browser: Any, live_server: str, room: Mailroom) -> None:
    """Also when the bundle is built: the script is never run, the textareas are the editor."""
    context = browser.new_context(base_url=live_server, locale="en-US", java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        browser_login(page)
        page.goto(RESET)
        expect(page.locator(".cm-editor")).to_have_count(0)
        for part in PARTS:
            expect(page.locator(f"textarea[name={part}]")).to_be_visible()
        html = '{% extends "layout.html" %}{% block content %}<p>No script, {{ first_name }}.</p>{% endblock %}'
        page.get_by_label("HTML body").fill(html)
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_have_text("The template was saved as a new version.")
        assert room.templates.get_template(SYSTEM, *KEY).html == html

        page.locator("textarea[name=text]").fill("Hello,\n{% if %}\n")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_test_id("editor-error")).to_contain_text("Syntax error in the text body, line 2")
        expect(page.locator("textarea[name=text]")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("textarea[name=text]")).to_have_value("Hello,\n{% if %}\n")
    finally:
        context.close()



@pytest.mark.usefixtures("bundle")
def test_the_editor_speaks_the_pages_language(page: Any, room: Mailroom) -> None:
    """CodeMirror's own words come from the page's catalogs: a German user hears "Auswahl gelöscht"."""
    room.users.create_user(SYSTEM, Profile(email="greta@example.org", preferred_language="de"), password=PASSWORD,
                           roles=["admin"], verified=True, notify_user=False)
    browser_login(page, "greta@example.org")
    page.goto(RESET)
    code_editor(page, "text").locator(".cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    expect(code_editor(page, "text").locator(".cm-announced")).to_have_text("Auswahl gelöscht")
    expect(page.locator("textarea[name=text]")).to_have_value("")
