"""Errors as HTTP answers: JSON with a stable ``code`` under ``/api``, a readable page elsewhere."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailroom.domain.permissions import PERMISSIONS
from mailroom.errors import (
    AccountLocked,
    AuthenticationFailed,
    InvalidInput,
    InvalidTransition,
    MailroomError,
    NotFound,
    PermissionDenied,
    RateLimited,
    StorageError,
    Text,
)
from mailroom.web.context import CsrfRejected, LoginRequired, current
from mailroom.web.i18n import error_text, translate
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import activate_page_language, render, see_other

logger = logging.getLogger("mailroom.web")

# First match wins: subclasses before their bases.
STATUS: tuple[tuple[type[MailroomError], int], ...] = (
    (LoginRequired, 401),
    (AccountLocked, 429),
    (RateLimited, 429),
    (AuthenticationFailed, 401),
    (CsrfRejected, 403),
    (PermissionDenied, 403),
    (NotFound, 404),
    (InvalidTransition, 409),
    (InvalidInput, 422),
    (StorageError, 503),
)


def error_code(exc: BaseException) -> str:
    """The class name in snake case: ``MailNotFound`` → ``mail_not_found``. Stable: clients rely on it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def status_of(exc: MailroomError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 500)


def is_api(request: Request) -> bool:
    return request.url.path.removeprefix(request.scope.get("root_path", "")).startswith("/api/")


def error_body(code: str, message: str, field: str | None = None, error_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    if error_id:
        body["error_id"] = error_id
    return body


def install(app: FastAPI) -> None:
    @app.exception_handler(MailroomError)
    async def on_mailroom_error(request: Request, exc: MailroomError) -> Response:
        status = status_of(exc)
        await _speak_the_page_language(request)
        if is_api(request):
            headers = {"Retry-After": str(max(1, round(exc.retry_after_seconds)))} \
                if isinstance(exc, AccountLocked | RateLimited) else None
            return JSONResponse(error_body(error_code(exc), str(exc), getattr(exc, "field", None),
                                           getattr(exc, "error_id", None)),
                                status_code=status, headers=headers)
        if isinstance(exc, LoginRequired):
            inside = request.url.path.removeprefix(request.scope.get("root_path", ""))  # url() adds it back
            target = inside + (f"?{request.url.query}" if request.url.query else "")
            return see_other(request, f"/login?next={quote(target, safe='/')}")
        message = _permission_message(request, exc) if type(exc) is PermissionDenied else error_text(exc)
        return render(request, "error.html", status_code=status, status=status, message=message)

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, exc: Exception) -> Response:
        # A bug: the answer says only that, with an id; the traceback (and whatever data it shows) stays in
        # the server log under that id.
        error_id = uuid.uuid4().hex[:12]
        logger.error("unexpected error %s in %s %s", error_id, request.method, request.url.path, exc_info=exc)
        await _speak_the_page_language(request)
        message = Text("an unexpected error happened (error id {error_id}; the server log has the details)",
                       {"error_id": error_id})
        if is_api(request):
            return JSONResponse(error_body("internal_error", str(message), error_id=error_id), status_code=500)
        return render(request, "error.html", status_code=500, status=500, message=translate(message))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        await _speak_the_page_language(request)
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        field = ".".join(location) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg", "invalid"))
        if is_api(request):
            return JSONResponse(error_body("invalid_input", message, field), status_code=422)
        return render(request, "error.html", status_code=422, status=422,
                      message=_validation_message(field, first.get("type"), message))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        await _speak_the_page_language(request)
        if is_api(request):
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        return render(request, "error.html", status_code=exc.status_code, status=exc.status_code,
                      message=_http_message(exc))


def _permission_message(request: Request, exc: PermissionDenied) -> str:
    """Who is refused and what they lack, as a person reads it: the e-mail and the permission's label (the
    API keeps the ids, for scripts)."""
    labels = {permission.id: permission.label for permission in PERMISSIONS.all()}
    label = _(labels.get(exc.permission, exc.permission))
    session = current(request)
    if session is None:
        return _("Log in with an account that may “{permission}”.").format(permission=label)
    return _("{email} may not do this: it needs the permission “{permission}”. Ask an administrator for a role "
             "that has it.").format(email=session.user.email, permission=label)


async def _speak_the_page_language(request: Request) -> None:
    """Pages of errors raised before a router's dependencies ran (no such route, a failed dependency) are in
    the visitor's language too; API answers stay English."""
    if not is_api(request):
        await activate_page_language(request)


def _http_message(exc: StarletteHTTPException) -> str:
    """Starlette's reason phrases ("Not Found") as a sentence in the page's language."""
    sentences = {404: Text("There is no page at this address. It may have moved, or the link is mistyped."),
                 405: Text("This page cannot be used that way (method not allowed).")}
    known = sentences.get(exc.status_code)
    return translate(known) if known else _(str(exc.detail))


def _validation_message(field: str | None, kind: object, english: str) -> str:
    """A form or query value the page could not read, named in the page's language; Pydantic's own English
    sentence only for the kinds not listed."""
    reasons = {"missing": Text("a value is needed"),
               "int_parsing": Text("enter a whole number"), "float_parsing": Text("enter a number"),
               "bool_parsing": Text("enter yes or no"), "string_too_long": Text("the value is too long"),
               "greater_than_equal": Text("the number is too small"), "greater_than": Text("the number is too small"),
               "less_than_equal": Text("the number is too large"), "less_than": Text("the number is too large")}
    reason = reasons.get(str(kind))
    if reason is None:
        return english
    if field:
        return translate(Text("{field}: {reason}", {"field": field, "reason": reason}))
    return translate(reason)
