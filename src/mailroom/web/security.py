"""Cookies, CSRF, response headers, rate limits of the account requests and the access-log filter.

The cookie is signed (itsdangerous, key derived from mailroom's secret key) and holds a CSRF token for
every visitor, a one-time notice (the "flash") and, once logged in, the key of a server-side login
session. The session row is what makes a login count: logging out, a password change or reset and
disabling the user revoke rows, and a copied cookie stops working with them. Each request re-reads the
session and its user, so disabling a user or changing their roles takes effect at once.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailroom.errors import ConfigurationError, RateLimited

COOKIE = "mailroom_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

# Pages load only their own CSS and JS; mail bodies are shown from a separate, script-less document.
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
MAIL_BODY_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def page_csp(style_nonce: str) -> str:
    """PAGE_CSP that also allows the ``<style>`` elements carrying ``style_nonce``: the template editor's
    CodeMirror writes its styles into such elements, and a nonce admits them without 'unsafe-inline'."""
    return PAGE_CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{style_nonce}'", 1)


@dataclass
class WebSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str | None = None
    """The login session's key; the server keeps its hash, and whether it still counts."""
    issued_at: float = field(default_factory=time.time)
    changed: bool = False
    notice: tuple[str, str] | None = None
    """A notice id and its one value, set by the server after an action and shown once: pages never take
    notice text from the URL, where anyone could put words into our mouth."""

    def log_in(self, key: str) -> None:
        # A new CSRF token at login: one learnt before cannot be replayed into the session.
        self.key, self.csrf, self.issued_at, self.changed = key, secrets.token_urlsafe(32), time.time(), True

    def log_out(self) -> str | None:
        """Forget the login; returns its key, for the caller to revoke on the server."""
        key = self.key
        self.key, self.csrf, self.changed = None, secrets.token_urlsafe(32), True
        return key

    def flash(self, notice: str, value: str = "") -> None:
        self.notice, self.changed = (notice, value), True

    def take_notice(self) -> tuple[str, str] | None:
        notice = self.notice
        if notice is not None:
            self.notice, self.changed = None, True
        return notice

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
                notice = data.get("n")
                return WebSession(csrf=str(data["c"]), key=data.get("k"), issued_at=float(data["t"]),
                                  notice=(str(notice[0]), str(notice[1])) if notice else None)
            except (BadSignature, KeyError, TypeError, ValueError):
                pass
        return WebSession(changed=True)

    def store(self, request: Request, response: Response, session: WebSession) -> None:
        value = self._serializer.dumps({"c": session.csrf, "k": session.key, "t": session.issued_at,
                                        "n": list(session.notice) if session.notice else None})
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


class AccountRequestLimits:
    """How often registrations and password-reset requests may be made, per e-mail address and per client
    address (moving windows, ``limits``).

    The counts live in this process's memory: right for one web process (``mailroom serve``); with several,
    each counts on its own, so the effective limit is that many times higher.
    """

    def __init__(self, *, per_address: str, per_client: str) -> None:
        self._per_address = _limit("account_requests_per_address", per_address)
        self._per_client = _limit("account_requests_per_client", per_client)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, action: str, *, email: str, client: str) -> None:
        """Count one request; raises RateLimited when either limit is reached.

        Each ``hit`` counts and checks in one step under the storage's lock, so parallel requests cannot
        all slip through. The client's limit comes first: a flood from one place is refused before it
        uses up the budget of the address it names.
        """
        checks = ((self._per_client, ("client", action, client)),
                  (self._per_address, ("address", action, email.strip().lower())))
        for item, keys in checks:
            if not self._limiter.hit(item, *keys):
                reset_at = self._limiter.get_window_stats(item, *keys).reset_time
                raise RateLimited(max(1.0, reset_at - time.time()))


def _limit(name: str, value: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigurationError(f"MAILROOM_{name.upper()}: {value!r} is not a rate like \"5/hour\"",
                                 field=name) from exc


SECRET_QUERY = re.compile(r"(?i)([?&](?:code|token)=)[^&#\s\"]*")


def redact_secrets(text: str) -> str:
    """``/reset-password?code=abc`` → ``/reset-password?code=[redacted]``."""
    return SECRET_QUERY.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """Keeps reset and verification codes (and tokens) out of logs: uvicorn's access log writes every
    request line, and a code in a log file is a password reset for whoever reads it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secrets(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`RedactSecrets` on the access logger once (create_app calls it)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
