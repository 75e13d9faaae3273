"""What every request gets: the facade, the visitor's session, the logged-in user and the language,
and the FastAPI dependencies that demand a login or a permission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from mailroom.app import Mailroom
from mailroom.domain.permissions import Subject
from mailroom.errors import MailroomError
from mailroom.usecases.users import Session
from mailroom.web.security import CSRF_FIELD, CSRF_HEADER, AccountRequestLimits, SessionCookies, WebSession


class LoginRequired(MailroomError):
    """No session: the UI redirects to the login page, the API answers 401."""

    def __init__(self) -> None:
        super().__init__("log in first")


class CsrfRejected(MailroomError):
    def __init__(self) -> None:
        super().__init__("the form expired or came from another site: reload the page and try again")


@dataclass
class WebState:
    room: Mailroom
    cookies: SessionCookies
    limits: AccountRequestLimits


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.mailroom
    return state


def room(request: Request) -> Mailroom:
    return web_state(request).room


def web_session(request: Request) -> WebSession:
    session: WebSession = request.state.web_session
    return session


def client_address(request: Request) -> str:
    """The caller's address (behind a proxy, as the server's proxy-header settings make it)."""
    return request.client.host if request.client else ""


def current(request: Request) -> Session | None:
    """The logged-in user, by API token (``Authorization: Bearer``) or session cookie; cached per request."""
    if hasattr(request.state, "session"):
        cached: Session | None = request.state.session
        return cached
    found: Session | None = None
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        found = room(request).api_tokens.authenticate(authorization[7:])
        request.state.by_token = True
    else:
        key = web_session(request).key
        found = room(request).users.session_by_key(key) if key else None
    request.state.session = found
    return found


def login(request: Request) -> Session:
    session = current(request)
    if session is None:
        raise LoginRequired()
    return session


def subject(request: Request) -> Subject:
    return login(request).subject


def require(permission: str) -> Callable[..., Subject]:
    """A dependency giving the subject, refusing with PermissionDenied when it lacks ``permission``."""

    def dependency(request: Request) -> Subject:
        found = subject(request)
        found.require(permission)
        return found

    return dependency


def check_csrf(request: Request, token: str | None) -> None:
    """State-changing requests carry the session's CSRF token; API-token calls need none (no cookie)."""
    if getattr(request.state, "by_token", False):
        return
    if not web_session(request).csrf_ok(token or request.headers.get(CSRF_HEADER)):
        raise CsrfRejected()


async def csrf_form(request: Request) -> None:
    """Dependency for form posts: the hidden ``csrf_token`` field or the header."""
    current(request)
    form = await request.form()
    value = form.get(CSRF_FIELD)
    check_csrf(request, value if isinstance(value, str) else None)


def csrf_header(request: Request) -> None:
    """Dependency for JSON calls: the ``X-CSRF-Token`` header when authenticated by cookie."""
    current(request)
    check_csrf(request, None)

