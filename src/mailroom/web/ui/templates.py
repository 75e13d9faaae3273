"""Admin UI: template sets, their templates per locale, and the editor with preview, versions and diff.

The preview of an unsaved edit is the editor form posted into a sandboxed iframe: the frame's document
is the answer of :func:`preview_draft`, with the mail-body CSP instead of the page's, so the mail's inline
styles apply and no script can run. No server-side state is needed, and it works without JavaScript;
``admin.js`` adds the rendered subject and text next to the frame.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, replace
from html import escape
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mailroom.domain.permissions import EDIT_TEMPLATES, READ_USERS, Subject
from mailroom.domain.templates import RenderedTemplate, Template, TemplateKind, TemplateVersion, normalise_locale
from mailroom.errors import InvalidInput, SecretVariableExposed, TemplateSyntaxError
from mailroom.web import context
from mailroom.web.context import csrf_form, room
from mailroom.web.i18n import error_text, translate
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import render, see_other
from mailroom.web.security import MAIL_BODY_CSP, page_csp

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]

_PART = re.compile(r"\((subject|html|text)\)$")

# The code editor (CodeMirror, built from web-editor/ by `make editor`). Not in the repo: a checkout that was
# not built serves the page with its plain textareas, and no script tag that would only 404.
EDITOR_BUNDLE: Traversable = resources.files("mailroom.web") / "static" / "editor.js"


@dataclass(frozen=True, slots=True)
class Draft:
    """The editor's fields: the stored template, or what the admin typed and has not saved."""

    subject: str
    html: str
    text: str
    description: str
    variables: str  # a JSON object: variable name -> sample value

    @classmethod
    def of(cls, template: Template) -> Draft:
        return cls(subject=template.subject, html=template.html or "", text=template.text or "",
                   description=template.description, variables=samples_json(template.variables))


@dataclass(frozen=True, slots=True)
class EditorError:
    """An error to show above the editor; ``part`` and ``line`` point at the offending field and line."""

    message: str
    part: str | None = None
    line: int | None = None


def samples_json(variables: Any) -> str:
    return json.dumps(dict(variables), indent=2, ensure_ascii=False, sort_keys=True)


def draft_form(subject: FormText = "", html: FormText = "", text: FormText = "", description: FormText = "",
               variables: FormText = "{}") -> Draft:
    """The editor form; browsers send textarea lines with CRLF, stored templates use LF."""

    def lf(value: str) -> str:
        return value.replace("\r\n", "\n")

    return Draft(subject=subject.strip(), html=lf(html), text=lf(text), description=description.strip(),
                 variables=lf(variables))


DraftForm = Annotated[Draft, Depends(draft_form)]


def parse_samples(source: str, *, text_only: bool) -> dict[str, Any]:
    """The declared variables; saved samples must be text (export writes them to TOML as strings)."""
    try:
        samples = json.loads(source.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(_("The variables are not valid JSON: {reason} (line {line}, column {column}).").format(
            reason=exc.msg, line=exc.lineno, column=exc.colno), field="variables") from None
    if not isinstance(samples, dict):
        raise InvalidInput(_('The variables must be a JSON object such as {"first_name": "Ann"}.'),
                           field="variables")
    if text_only:
        for name, sample in samples.items():
            if not isinstance(sample, str):
                raise InvalidInput(_("The sample value of {name} must be a text in double quotes.").format(
                    name=name), field="variables")
    return samples


def edited(current: Template, draft: Draft, *, saving: bool) -> Template:
    """The template as the editor has it; an empty body is no body (an empty text is derived from the HTML)."""
    return Template(set_id=current.set_id, name=current.name, locale=current.locale, kind=current.kind,
                    subject=draft.subject, html=draft.html or None, text=draft.text or None,
                    description=draft.description, variables=parse_samples(draft.variables, text_only=saving))


def part_labels() -> dict[str, str]:
    return {"subject": _("the subject"), "html": _("the HTML body"), "text": _("the text body"),
            "variables": _("the variables")}


def describe(exc: InvalidInput) -> EditorError:
    """A syntax error names its field and line, so the editor can point at it."""
    if isinstance(exc, TemplateSyntaxError):
        found = _PART.search(exc.template)
        part = found.group(1) if found else None
        where = part_labels().get(part or "", exc.template)
        if exc.line:
            message = _("Syntax error in {part}, line {line}: {reason}").format(part=where, line=exc.line,
                                                                               reason=translate(exc.reason))
        else:
            message = _("Syntax error in {part}: {reason}").format(part=where, reason=translate(exc.reason))
        return EditorError(message, part=part, line=exc.line)
    if isinstance(exc, SecretVariableExposed):
        found = _PART.search(exc.template)
        return EditorError(error_text(exc), part=found.group(1) if found else "html", line=exc.line)
    field = exc.field if exc.field in part_labels() else None
    return EditorError(error_text(exc), part=field)


def kind_label(kind: TemplateKind) -> str:
    return _("Mail") if kind is TemplateKind.TEMPLATE else _("Partial")


def template_path(set_id: str, name: str, locale: str) -> str:
    return f"/templates/{set_id}/{name}/{locale}"


# --- sets ------------------------------------------------------------------------------------------


@router.get("/templates", response_class=HTMLResponse)
def list_sets(request: Request) -> HTMLResponse:
    caller = context.subject(request)
    templates = room(request).templates
    sets = templates.list_sets(caller)
    counts = {s.id: len(templates.list_templates(caller, s.id)) for s in sets}
    return render(request, "templates_sets.html", sets=sets, counts=counts)


@router.get("/templates/{set_id}", response_class=HTMLResponse)
def show_set(request: Request, set_id: str) -> HTMLResponse:
    caller = context.subject(request)
    templates = room(request).templates
    template_set = templates.get_set(caller, set_id)
    all_templates = templates.list_templates(caller, set_id)
    locales_of: dict[str, list[str]] = {}
    for t in all_templates:
        locales_of.setdefault(t.name, []).append(t.locale)
    # A missing translation starts as a copy of the default locale (or of whichever locale exists).
    missing = [(m, template_set.default_locale if template_set.default_locale in locales_of[m.name]
                else locales_of[m.name][0]) for m in templates.missing_translations(caller, set_id)]
    return render(request, "templates_set.html", template_set=template_set, missing=missing, kind_label=kind_label,
                  mails=[t for t in all_templates if t.kind is TemplateKind.TEMPLATE],
                  partials=[t for t in all_templates if t.kind is TemplateKind.PARTIAL],
                  template_path=template_path)


# --- the editor ------------------------------------------------------------------------------------


def editor_page(request: Request, caller: Subject, current: Template, draft: Draft, *, status_code: int = 200,
                error: EditorError | None = None, notice: str | None = None, old: int | None = None,
                new: int | None = None) -> HTMLResponse:
    templates = room(request).templates
    key = (current.set_id, current.name, current.locale)
    versions = templates.versions(caller, *key)
    diff_lines: list[tuple[str, str]] | None = None
    if old is not None and new is not None:
        try:
            diff_lines = diff_rows(templates.diff(caller, *key, old, new))
        except InvalidInput as exc:
            error = error or EditorError(error_text(exc))
    saved_preview: RenderedTemplate | None = None
    preview_error: str | None = None
    try:
        saved_preview = templates.preview_saved(caller, *key)
    except InvalidInput as exc:
        preview_error = describe(exc).message
    who = saver_names(request, caller)
    # Looked up per request (a stat), so a bundle built while the server runs is used without a restart.
    nonce = secrets.token_urlsafe(18) if EDITOR_BUNDLE.is_file() else None
    page = render(request, "templates_edit.html", status_code=status_code, current=current, draft=draft,
                  template_set=templates.get_set(caller, current.set_id), versions=versions, error=error,
                  notice=notice, diff_lines=diff_lines, diff_old=old if old is not None else _older(versions),
                  diff_new=new if new is not None else (versions[0].version if versions else None),
                  saved_preview=saved_preview, preview_error=preview_error, kind_label=kind_label,
                  has_default=templates.has_default(caller, *key), saved_by=who,
                  path=template_path(*key), csp_nonce=nonce)
    if nonce:
        page.headers["Content-Security-Policy"] = page_csp(nonce)
    return page


def _older(versions: list[TemplateVersion]) -> int | None:
    """The version before the current one: the diff an editor most likely wants."""
    return versions[1].version if len(versions) > 1 else None


def saver_names(request: Request, caller: Subject) -> dict[str, str]:
    """User ids in the version list as e-mail addresses, for whoever may see users."""
    if not caller.has(READ_USERS):
        return {}
    return {u.id: u.email for u in room(request).users.list_users(caller)}


def diff_rows(diff: str) -> list[tuple[str, str]]:
    """Each line of a unified diff with its kind, so the page can colour it."""
    rows = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        rows.append((kind, line))
    return rows


# English msgids of admin.po, translated when shown.
DONE_NOTICES = {"saved": "The template was saved as a new version.",
                "restored": "The version was restored as a new version.",
                "default": "The template is back to what mailroom ships, as a new version.",
                "created": "The new locale was created as a copy. Translate it and save."}


@router.get("/templates/{set_id}/{name}/{locale}", response_class=HTMLResponse)
def show_template(request: Request, set_id: str, name: str, locale: str, done: str = "",
                  old: int | None = None, new: int | None = None) -> HTMLResponse:
    caller = context.subject(request)
    current = room(request).templates.get_template(caller, set_id, name, locale)
    notice = _(DONE_NOTICES[done]) if done in DONE_NOTICES else None
    return editor_page(request, caller, current, Draft.of(current), notice=notice, old=old, new=new)


@router.post("/templates/{set_id}/{name}/{locale}", response_class=HTMLResponse,
             dependencies=[Depends(csrf_form)])
def save_template(request: Request, set_id: str, name: str, locale: str, draft: DraftForm) -> Response:
    caller = context.subject(request)
    caller.require(EDIT_TEMPLATES)  # before any parsing: a reader learns nothing from error messages
    templates = room(request).templates
    current = templates.get_template(caller, set_id, name, locale)
    try:
        templates.save_template(caller, edited(current, draft, saving=True))
    except InvalidInput as exc:
        return editor_page(request, caller, current, draft, status_code=422, error=describe(exc))
    return see_other(request, f"{template_path(set_id, name, current.locale)}?done=saved")


def mail_body_document(body: str, status_code: int = 200) -> HTMLResponse:
    """A document for the preview frame: sandboxed by its own CSP, so a mail's markup cannot run scripts."""
    return HTMLResponse(body, status_code=status_code, headers={"Content-Security-Policy": MAIL_BODY_CSP})


def preview_document(rendered: RenderedTemplate) -> HTMLResponse:
    if rendered.html is not None:
        return mail_body_document(rendered.html)
    return mail_body_document(f'<!DOCTYPE html><meta charset="utf-8"><pre>{escape(rendered.text)}</pre>')


def preview_error_document(message: str) -> HTMLResponse:
    return mail_body_document(
        '<!DOCTYPE html><meta charset="utf-8"><style>body{font:14px system-ui,sans-serif;color:#7f1d1d}</style>'
        f"<p><strong>{escape(_('The preview failed.'))}</strong></p><pre>{escape(message)}</pre>", 422)


@router.get("/templates/{set_id}/{name}/{locale}/preview", response_class=HTMLResponse)
def preview_saved(request: Request, set_id: str, name: str, locale: str) -> HTMLResponse:
    """The stored template's HTML with its sample values: what the preview frame shows at first."""
    caller = context.subject(request)
    templates = room(request).templates
    try:
        return preview_document(templates.preview_saved(caller, set_id, name, locale))
    except InvalidInput as exc:
        return preview_error_document(describe(exc).message)


def render_draft(request: Request, set_id: str, name: str, locale: str, draft: Draft) -> RenderedTemplate:
    caller = context.subject(request)
    caller.require(EDIT_TEMPLATES)  # posted content is template code: rendering it is editing (issue #11)
    templates = room(request).templates
    current = templates.get_template(caller, set_id, name, locale)
    return templates.preview(caller, set_id, name, language=current.locale, model=parse_samples(
        draft.variables, text_only=False), template=edited(current, draft, saving=False))


@router.post("/templates/{set_id}/{name}/{locale}/preview", response_class=HTMLResponse,
             dependencies=[Depends(csrf_form)])
def preview_draft(request: Request, set_id: str, name: str, locale: str, draft: DraftForm) -> HTMLResponse:
    """The unsaved edit rendered with its sample values, as the document of the preview frame."""
    try:
        return preview_document(render_draft(request, set_id, name, locale, draft))
    except InvalidInput as exc:
        return preview_error_document(describe(exc).message)


@router.post("/templates/{set_id}/{name}/{locale}/preview.json", dependencies=[Depends(csrf_form)])
def preview_draft_parts(request: Request, set_id: str, name: str, locale: str, draft: DraftForm) -> JSONResponse:
    """Subject and text of the unsaved edit, for admin.js to show beside the frame."""
    try:
        rendered = render_draft(request, set_id, name, locale, draft)
    except InvalidInput as exc:
        error = describe(exc)
        return JSONResponse({"error": error.message, "part": error.part, "line": error.line}, status_code=422)
    return JSONResponse({"subject": rendered.subject, "text": rendered.text, "locale": rendered.locale})


@router.post("/templates/{set_id}/{name}/{locale}/versions/{version}/restore",
             dependencies=[Depends(csrf_form)])
def restore_version(request: Request, set_id: str, name: str, locale: str, version: int) -> Response:
    restored = room(request).templates.restore_version(context.subject(request), set_id, name, locale, version)
    return see_other(request, f"{template_path(set_id, name, restored.locale)}?done=restored")


@router.post("/templates/{set_id}/{name}/{locale}/restore-default", dependencies=[Depends(csrf_form)])
def restore_default(request: Request, set_id: str, name: str, locale: str) -> Response:
    restored = room(request).templates.restore_default(context.subject(request), set_id, name, locale)
    return see_other(request, f"{template_path(set_id, name, restored.locale)}?done=default")


@router.post("/templates/{set_id}/{name}/{locale}/copy", response_class=HTMLResponse,
             dependencies=[Depends(csrf_form)])
def copy_to_locale(request: Request, set_id: str, name: str, locale: str, new_locale: FormText) -> Response:
    """A new locale variant starts as a copy of this one, so the translator sees what to translate."""
    caller = context.subject(request)
    caller.require(EDIT_TEMPLATES)
    templates = room(request).templates
    source = templates.get_template(caller, set_id, name, locale)
    try:
        target = normalise_locale(new_locale.strip())
        if any((t.name, t.locale) == (name, target) for t in templates.list_templates(caller, set_id)):
            raise InvalidInput(_("{name} already exists in {locale}.").format(name=name, locale=target),
                               field="locale")
        templates.save_template(caller, replace(source, locale=target, version=0, updated_at=None, updated_by=None))
    except InvalidInput as exc:
        return editor_page(request, caller, source, Draft.of(source), status_code=422, error=describe(exc))
    return see_other(request, f"{template_path(set_id, name, target)}?done=created")
