"""Admin UI: the test page. Send a plain test mail, or render a template with a JSON model, preview it and
send it.

The preview works without JavaScript: the form posts and the page comes back with subject, HTML and text.
The HTML cannot be inlined (``srcdoc`` would inherit the page's CSP, which blocks the inline styles mails
are made of), so the iframe loads it from ``/test/preview.html`` with the mail body CSP instead. A sent
mail's id travels in the redirect; the banner's badge follows its status through the JSON API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailroom.domain.mail import Mail
from mailroom.domain.outbox import OutgoingMail
from mailroom.domain.permissions import READ_MAIL, READ_TEMPLATES, SEND_MAIL, Subject
from mailroom.domain.templates import RenderedTemplate, Template, TemplateKind
from mailroom.errors import InvalidInput, MailNotFound, NotFound
from mailroom.web.context import csrf_form, login, require, room
from mailroom.web.i18n import error_text
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import see_other, url
from mailroom.web.security import MAIL_BODY_CSP
from mailroom.web.ui.log import mail_page

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form()]


@dataclass(frozen=True)
class TemplateChoice:
    name: str
    description: str
    locales: tuple[str, ...]
    sample_model: str  # the declared variables with their sample values, as indented JSON


@dataclass(frozen=True)
class SetChoice:
    id: str
    name: str
    templates: tuple[TemplateChoice, ...]


@dataclass(frozen=True)
class TestForm:
    to: str
    subject: str
    message: str


@dataclass(frozen=True)
class TemplateForm:
    to: str
    set_id: str
    name: str
    language: str
    model: str


@dataclass
class TestPage:
    test: TestForm
    template: TemplateForm | None
    choices: list[SetChoice] = field(default_factory=list)
    test_error: str | None = None
    template_error: str | None = None
    preview: RenderedTemplate | None = None
    preview_url: str | None = None
    sent: OutgoingMail | None = None
    sent_id: str | None = None


def template_choices(request: Request, subject: Subject) -> list[SetChoice]:
    """Every template of every set, with its locales and the sample model of the set's default locale."""
    templates = room(request).templates
    choices: list[SetChoice] = []
    for template_set in templates.list_sets(subject):
        by_name: dict[str, list[Template]] = {}
        for template in templates.list_templates(subject, template_set.id):
            if template.kind is TemplateKind.TEMPLATE:
                by_name.setdefault(template.name, []).append(template)
        entries = []
        for name, versions in sorted(by_name.items()):
            main = next((t for t in versions if t.locale == template_set.default_locale), versions[0])
            entries.append(TemplateChoice(name=name, description=main.description,
                                          locales=tuple(sorted(t.locale for t in versions)),
                                          sample_model=json.dumps(dict(main.variables), indent=2, ensure_ascii=False)))
        if entries:
            choices.append(SetChoice(id=template_set.id, name=template_set.name, templates=tuple(entries)))
    return choices


def addresses(text: str) -> list[str]:
    """A comma-separated address list as typed (names with commas in quotes survive)."""
    return [formataddr((name, address)) for name, address in getaddresses([text]) if address]


def page(request: Request, subject: Subject, *, status_code: int = 200, test: TestForm | None = None,
         template: TemplateForm | None = None, test_error: str | None = None, template_error: str | None = None,
         preview: RenderedTemplate | None = None, preview_url: str | None = None, sent: OutgoingMail | None = None,
         sent_id: str | None = None) -> HTMLResponse:
    """The test page; forms not given start with the user's address and sample content."""
    user = login(request).user
    choices = template_choices(request, subject) if subject.has(READ_TEMPLATES) else []
    if template is None and subject.has(READ_TEMPLATES):
        first = choices[0] if choices else None
        template = TemplateForm(
            to=user.email, set_id=first.id if first else "", name=first.templates[0].name if first else "",
            language=user.profile.preferred_language, model=first.templates[0].sample_model if first else "{}")
    content = TestPage(
        test=test or TestForm(to=user.email, subject=_("Test mail from mailroom"),
                              message=_("This is a test mail sent from the mailroom admin UI.")),
        template=template, choices=choices, test_error=test_error, template_error=template_error, preview=preview,
        preview_url=preview_url, sent=sent, sent_id=sent_id)
    locales = sorted({locale for s in choices for t in s.templates for locale in t.locales})
    return mail_page(request, "test_mail.html", status_code=status_code, page=content, locales=locales,
                     can_read_log=subject.has(READ_MAIL))


@router.get("/test", response_class=HTMLResponse)
def show_test(request: Request, subject: Annotated[Subject, Depends(require(SEND_MAIL))],
              sent: str = "") -> HTMLResponse:
    found = None
    if sent and subject.has(READ_MAIL):
        try:
            found = room(request).log.get(subject, sent)
        except MailNotFound:
            sent = ""
    return page(request, subject, sent=found, sent_id=sent or None)


def after_sending(request: Request, mail_id: str) -> RedirectResponse:
    # Post/redirect/get: reloading the page must not send the mail again.
    return see_other(request, f"/test?{urlencode({'sent': mail_id})}")


@router.post("/test/send", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def send_test(request: Request, subject: Annotated[Subject, Depends(require(SEND_MAIL))], to: Text,
              message: Annotated[str, Form()] = "", subject_line: Annotated[str, Form(alias="subject")] = "",
              ) -> Response:
    form = TestForm(to=to, subject=subject_line, message=message)
    try:
        mail_id = room(request).send_mail(subject, Mail(to=addresses(to), subject=subject_line, text=message))
    except InvalidInput as exc:
        return page(request, subject, status_code=422, test=form, test_error=error_text(exc))
    return after_sending(request, mail_id)


@router.post("/test/template", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def send_template(request: Request, subject: Annotated[Subject, Depends(require(SEND_MAIL))], to: Text,
                  set_id: Text, name: Text, action: Annotated[Literal["preview", "send"], Form()] = "send",
                  language: Annotated[str, Form()] = "", model: Annotated[str, Form()] = "") -> Response:
    form = TemplateForm(to=to, set_id=set_id, name=name, language=language, model=model)
    templates = room(request).templates
    try:
        if action == "preview":
            rendered = templates.preview(subject, set_id, name, language=language or None, model=model)
            return page(request, subject, template=form, preview=rendered,
                        preview_url=preview_url(request, form) if rendered.html is not None else None)
        mail_id = templates.send_template_mail(subject, to=addresses(to), set_id=set_id, name=name, model=model,
                                               language=language or None)
    except (InvalidInput, NotFound) as exc:
        return page(request, subject, status_code=422, template=form, template_error=error_text(exc))
    return after_sending(request, mail_id)


def preview_url(request: Request, form: TemplateForm) -> str:
    """The address of the rendered HTML; the model goes compact, as URLs have a length limit."""
    model = json.dumps(json.loads(form.model), separators=(",", ":"), ensure_ascii=False)
    query = urlencode({"set_id": form.set_id, "name": form.name, "language": form.language, "model": model})
    return url(request, f"/test/preview.html?{query}")


@router.get("/test/preview.html")
def preview_html(request: Request, subject: Annotated[Subject, Depends(require(READ_TEMPLATES))], set_id: str,
                 name: str, language: str = "", model: str = "{}") -> Response:
    rendered = room(request).templates.preview(subject, set_id, name, language=language or None, model=model)
    if rendered.html is None:
        raise NotFound(f"{set_id}/{name} has no HTML body")
    return HTMLResponse(rendered.html, headers={"Content-Security-Policy": MAIL_BODY_CSP,
                                                "Cache-Control": "private, no-store"})

