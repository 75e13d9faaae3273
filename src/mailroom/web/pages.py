"""Server-rendered pages: one Jinja2 environment (autoescaped, gettext from :mod:`mailroom.web.i18n`)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from babel.dates import format_datetime
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from mailroom.domain.permissions import Subject
from mailroom.web import i18n
from mailroom.web.context import current, web_session
from mailroom.web.security import CSRF_FIELD

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(resources.files("mailroom.web") / "templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)


def _escaped_gettext(message: str) -> Markup:
    return escape(i18n.gettext(message))


def _escaped_ngettext(singular: str, plural: str, count: int) -> Markup:
    return escape(i18n.ngettext(singular, plural, count))


# Escaped before Jinja sees them: with autoescape, newstyle gettext marks whatever the catalogue returns as
# safe HTML, so "Bearer <token>" rendered as a tag and a translator's text could inject markup. Values
# formatted into a translation ({name}, %(n)s) are escaped by Markup's own formatting.
_environment.install_gettext_callables(_escaped_gettext, _escaped_ngettext, newstyle=True)  # type: ignore[attr-defined]


def url(request: Request, path: str) -> str:
    """A path inside the app, also when it is mounted under a prefix."""
    return f"{request.scope.get('root_path', '')}{path}"


def see_other(request: Request, path: str) -> RedirectResponse:
    """After a form post: on to ``path`` inside the app (303, so the browser follows with GET)."""
    return RedirectResponse(url(request, path), status_code=303)


def page_language(request: Request) -> str:
    """The user's preferred language when the UI has it, else the browser's; worked out once per request."""
    if not hasattr(request.state, "language"):
        session = current(request)
        request.state.language = i18n.choose_language(session.user.profile.preferred_language if session else None,
                                                      request.headers.get("accept-language"))
    language: str = request.state.language
    return language


async def activate_page_language(request: Request) -> None:
    """Dependency of the page routers. Async on purpose: the translations it activates live in a context
    variable, and only one set in the request's own task reaches the endpoint's thread (strings that
    endpoints translate before they render)."""
    i18n.activate(await run_in_threadpool(page_language, request))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = current(request)
    language = page_language(request)
    i18n.activate(language)
    subject: Subject | None = session.subject if session else None
    values = {
        "request": request, "user": session.user if session else None, "language": language,
        "language_names": i18n.language_names(),
        "translate": i18n.translate,
        "csrf_field": CSRF_FIELD, "csrf_token": web_session(request).csrf,
        "can": (lambda permission: subject is not None and subject.has(permission)),
        "url": lambda path: url(request, path),
        "when": lambda moment: _when(moment, language),
        "number": lambda value: format_decimal(value, locale=language),
        **context,
    }
    return HTMLResponse(_environment.get_template(template).render(values), status_code=status_code)


def _when(moment: datetime | None, language: str) -> str:
    """In UTC, and saying so: the server cannot know the reader's zone, and the search's dates are UTC too."""
    if moment is None:
        return "\N{EN DASH}"
    return format_datetime(moment, "yyyy-MM-dd HH:mm:ss zzz", tzinfo=UTC, locale=language)
