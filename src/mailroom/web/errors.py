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
)
from mailroom.web.context import CsrfRejected, LoginRequired, current
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import render, see_other

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
        message = _permission_message(request, exc) if type(exc) is PermissionDenied else str(exc)
        return render(request, "error.html", status_code=status, status=status, message=message)

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, exc: Exception) -> Response:
        # A bug: the answer says only that, with an id; the traceback (and whatever data it shows) stays in
        # the server log under that id.
        error_id = uuid.uuid4().hex[:12]
        logger.error("unexpected error %s in %s %s", error_id, request.method, request.url.path, exc_info=exc)
        message = f"an unexpected error happened (error id {error_id}; the server log has the details)"
        if is_api(request):
            return JSONResponse(error_body("internal_error", message, error_id=error_id), status_code=500)
        return render(request, "error.html", status_code=500, status=500, message=message)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form")]
        field = ".".join(location) or None
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg", "invalid"))
        if is_api(request):
            return JSONResponse(error_body("invalid_input", message, field), status_code=422)
        return render(request, "error.html", status_code=422, status=422, message=message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_api(request):
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        return render(request, "error.html", status_code=exc.status_code, status=exc.status_code,
                      message=str(exc.detail))


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
