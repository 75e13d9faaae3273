"""Per-user API tokens: created by the user (or an administrator), shown once, revocable."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from mailroom.domain.permissions import MANAGE_USERS, Subject
from mailroom.domain.users import ApiToken
from mailroom.errors import AuthenticationFailed, InvalidInput, TokenNotFound
from mailroom.ports import ApiTokenStore, Clock
from mailroom.usecases.users import Session, UserUseCases, hash_code

TOKEN_PREFIX = "mrt_"  # noqa: S105 - marks a token, so a leaked one is recognised by scanners
TOUCH_INTERVAL = timedelta(minutes=1)
MAX_EXPIRES_DAYS = 3650


class ApiTokenUseCases:
    def __init__(self, *, store: ApiTokenStore, users: UserUseCases, clock: Clock) -> None:
        self._store = store
        self._users = users
        self._clock = clock

    def create(self, subject: Subject, user_id: str, name: str, *,
               expires_days: float | None = None) -> tuple[ApiToken, str]:
        """A new token and its secret; the secret is not kept and cannot be shown again. With
        ``expires_days`` the token stops working that many days from now."""
        subject.require_unless_self(user_id, MANAGE_USERS)
        name = name.strip()
        if not name or len(name) > 200 or any(c in name for c in "\r\n"):
            raise InvalidInput("give the token a name of 1 to 200 characters on one line", field="name")
        if expires_days is not None and not 0 < expires_days <= MAX_EXPIRES_DAYS:
            raise InvalidInput(f"expires_days must be between 0 and {MAX_EXPIRES_DAYS}, or left out for a token "
                               "that lasts until revoked", field="expires_days")
        self._users.get_user(subject, user_id)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        token = ApiToken(id=uuid.uuid4().hex, user_id=user_id, name=name, hint=secret[:10], created_at=now,
                         expires_at=None if expires_days is None else now + timedelta(days=expires_days))
        self._store.add(token, hash_code(secret))
        return token, secret

    def list(self, subject: Subject, user_id: str) -> list[ApiToken]:
        subject.require_unless_self(user_id, MANAGE_USERS)
        return self._store.for_user(user_id)

    def revoke(self, subject: Subject, user_id: str, token_id: str) -> None:
        subject.require_unless_self(user_id, MANAGE_USERS)
        if token_id not in {t.id for t in self._store.for_user(user_id) if t.active}:
            raise TokenNotFound(token_id)
        self._store.revoke(token_id, self._clock.now())

    def authenticate(self, secret: str) -> Session:
        """The session of an active token whose user is still enabled."""
        token = self._store.find_by_hash(hash_code(secret.strip())) if secret.startswith(TOKEN_PREFIX) else None
        if token is None or not token.active:
            raise AuthenticationFailed("the API token is unknown or revoked")
        now = self._clock.now()
        if token.expired(now):
            raise AuthenticationFailed("the API token has expired: create a new one")
        session = self._users.session(token.user_id)
        if session is None:
            raise AuthenticationFailed("the API token's user is disabled")
        if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
            self._store.touch(token.id, now)  # at most once a minute: a busy script must not write per call
        return session
