"""Cookies, CSRF and response headers.

The session lives in one signed cookie (itsdangerous, key derived from mailroom's secret key): a CSRF
token for every visitor and, once logged in, the user id. Each request re-reads the user, so disabling a
user or changing their roles takes effect at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "mailroom_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

# Pages load only their own CSS and JS; mail bodies are shown from a separate, script-less document.
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
MAIL_BODY_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


@dataclass
class WebSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user_id: str | None = None
    issued_at: float = field(default_factory=time.time)
    changed: bool = False

    def log_in(self, user_id: str) -> None:
        # A new CSRF token at login: one learnt before cannot be replayed into the session.
        self.user_id, self.csrf, self.issued_at, self.changed = user_id, secrets.token_urlsafe(32), time.time(), True

    def log_out(self) -> None:
        self.user_id, self.csrf, self.changed = None, secrets.token_urlsafe(32), True

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


class SessionCookies:
    def __init__(self, key: bytes, *, max_age_seconds: float, secure: bool) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="mailroom.session")
        self._max_age = max_age_seconds
        self._secure = secure

    def load(self, request: Request) -> WebSession:
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data: dict[str, Any] = self._serializer.loads(raw, max_age=int(self._max_age))
                return WebSession(csrf=str(data["c"]), user_id=data.get("u"), issued_at=float(data["t"]))
            except (BadSignature, KeyError, TypeError, ValueError):
                pass
        return WebSession(changed=True)

    def store(self, request: Request, response: Response, session: WebSession) -> None:
        value = self._serializer.dumps({"c": session.csrf, "u": session.user_id, "t": session.issued_at})
        response.set_cookie(COOKIE, value, max_age=int(self._max_age), httponly=True, samesite="lax",
                            secure=self._secure or request.url.scheme == "https",
                            path=request.scope.get("root_path") or "/")


class SecurityHeaders:
    """Pure ASGI middleware: the CSP and friends on every response that has not set its own CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                defaults = {b"content-security-policy": PAGE_CSP.encode(), b"x-content-type-options": b"nosniff",
                            b"referrer-policy": b"same-origin", b"x-frame-options": b"SAMEORIGIN"}
                headers += [(name, value) for name, value in defaults.items() if name not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
