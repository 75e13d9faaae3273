"""API: template sets and their templates: list, show, save a new version, render a preview."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mailroom.domain.permissions import Subject
from mailroom.domain.templates import Template, normalise_locale
from mailroom.errors import InvalidInput, TemplateNotFound
from mailroom.usecases.templates import TemplateUseCases
from mailroom.web.api.schemas import (
    API_TOKEN,
    STATE_CHANGING,
    Caller,
    Key,
    LocaleKey,
    PreviewRequest,
    Rendered,
    TemplateIn,
    TemplateOut,
    TemplateSetDetail,
    TemplateSetOut,
    UnsavedTemplate,
    errors,
)
from mailroom.web.context import room

router = APIRouter(tags=["templates"], dependencies=[API_TOKEN])


@router.get("/templates", response_model=list[TemplateSetOut], summary="List template sets",
            responses=errors(takes_input=False))
def list_sets(request: Request, caller: Caller) -> list[TemplateSetOut]:
    return [TemplateSetOut.of(s) for s in room(request).templates.list_sets(caller)]


@router.get("/templates/{set_id}", response_model=TemplateSetDetail,
            summary="A template set with its templates and partials", responses=errors(404))
def get_set(request: Request, set_id: Key, caller: Caller) -> TemplateSetDetail:
    templates = room(request).templates
    return TemplateSetDetail.of_set(templates.get_set(caller, set_id), templates.list_templates(caller, set_id))


@router.get("/templates/{set_id}/{name}/{locale}", response_model=TemplateOut,
            summary="One template in one locale, with its content", responses=errors(404))
def get_template(request: Request, set_id: Key, name: Key, locale: LocaleKey, caller: Caller) -> TemplateOut:
    return TemplateOut.of(room(request).templates.get_template(caller, set_id, name, locale))


@router.put("/templates/{set_id}/{name}/{locale}", response_model=TemplateOut,
            summary="Save a template (a new version; the previous one is kept)",
            dependencies=STATE_CHANGING, responses=errors(400, 404))
def save_template(request: Request, set_id: Key, name: Key, locale: LocaleKey, body: TemplateIn,
                  caller: Caller) -> TemplateOut:
    """Create the template or store a new version. Refused with 422 when it does not compile or uses a
    variable it does not declare."""
    template = Template(set_id=set_id, name=name, locale=locale, kind=body.kind, subject=body.subject,
                        html=body.html, text=body.text, description=body.description, variables=body.variables)
    return TemplateOut.of(room(request).templates.save_template(caller, template))


@router.post("/templates/{set_id}/{name}/preview", response_model=Rendered, summary="Render a template",
             dependencies=STATE_CHANGING, responses=errors(400, 404))
def preview(request: Request, set_id: Key, name: Key, body: PreviewRequest, caller: Caller) -> Rendered:
    """Render the saved template in the negotiated locale, or the unsaved `template` given, with `model`
    (the declared sample values when missing). Nothing is stored or sent."""
    templates = room(request).templates
    unsaved = None if body.template is None else _unsaved(templates, caller, set_id, name, body.language,
                                                             body.template)
    rendered = templates.preview(caller, set_id, name, language=body.language, model=body.model, template=unsaved)
    return Rendered.of(rendered)


def _unsaved(templates: TemplateUseCases, caller: Subject, set_id: str, name: str, language: str | None,
             edit: UnsavedTemplate) -> Template:
    """The edited content as a template in the wanted locale (the set's default when none is given)."""
    locale = normalise_locale(language) if language else templates.get_set(caller, set_id).default_locale
    variables = edit.variables
    if variables is None:
        try:
            variables = dict(templates.get_template(caller, set_id, name, locale).variables)
        except TemplateNotFound:
            variables = {}  # a template not saved yet: the model must then give every value
    try:
        return Template(set_id=set_id, name=name, locale=locale, subject=edit.subject, html=edit.html,
                        text=edit.text, variables=variables)
    except InvalidInput as exc:
        exc.field = f"template.{exc.field}" if exc.field else "template"
        raise
