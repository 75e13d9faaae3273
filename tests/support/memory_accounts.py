"""Small in-memory stand-ins for the ports the login use cases need: users, sessions, the failed-login
throttle and API tokens, a password "hasher" without the cost, and a clock the test moves."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailroom.domain.sessions import LoginSession, ThrottleKey
from mailroom.domain.users import ApiToken, OneTimeCode, Role, User
from mailroom.errors import DuplicateEmail, UserNotFound


class MovableClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, 12, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


class PlainHasher:
    def hash(self, password: str) -> str:
        return f"plain:{password}"

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == f"plain:{password}"

    def needs_rehash(self, password_hash: str) -> bool:
        return False


class MemoryUserStore:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.hashes: dict[str, str | None] = {}
        self.saved_roles: dict[str, Role] = {}
        self.codes: dict[str, OneTimeCode] = {}

    def add(self, user: User, password_hash: str | None) -> None:
        if self.find_by_email(user.email) is not None:
            raise DuplicateEmail(user.email)
        self.users[user.id], self.hashes[user.id] = user, password_hash

    def get(self, user_id: str) -> User:
        if user_id not in self.users:
            raise UserNotFound(user_id)
        return self.users[user_id]

    def find_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email.lower() == email.strip().lower()), None)

    def all_users(self) -> list[User]:
        return list(self.users.values())

    def count(self) -> int:
        return len(self.users)

    def remove(self, user_id: str) -> None:
        self.users.pop(user_id, None)

    def update(self, user: User) -> None:
        self.users[user.id] = user

    def password_hash(self, user_id: str) -> str | None:
        return self.hashes.get(user_id)

    def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None:
        self.hashes[user_id] = password_hash

    def roles(self) -> list[Role]:
        return list(self.saved_roles.values())

    def save_role(self, role: Role) -> None:
        self.saved_roles[role.id] = role

    def add_code(self, code: OneTimeCode) -> None:
        self.codes[code.code_hash] = code

    def find_code(self, code_hash: str) -> OneTimeCode | None:
        return self.codes.get(code_hash)

    def use_code(self, code_hash: str, now: datetime) -> bool:
        code = self.codes.get(code_hash)
        if code is None or code.used_at is not None:
            return False
        self.codes[code_hash] = replace(code, used_at=now)
        return True

    def invalidate_codes(self, user_id: str, purpose: str, now: datetime, *, keep: str | None = None) -> int:
        hits = [h for h, c in self.codes.items()
                if c.user_id == user_id and c.purpose == purpose and not c.used_at and h != keep]
        for code_hash in hits:
            self.use_code(code_hash, now)
        return len(hits)


class MemorySessionStore:
    def __init__(self) -> None:
        self.sessions: dict[str, LoginSession] = {}

    def add(self, session: LoginSession) -> None:
        self.sessions[session.key_hash] = session

    def find(self, key_hash: str) -> LoginSession | None:
        return self.sessions.get(key_hash)

    def revoke(self, key_hash: str, now: datetime) -> bool:
        found = self.sessions.get(key_hash)
        if found is None or found.revoked_at is not None:
            return False
        self.sessions[key_hash] = replace(found, revoked_at=now)
        return True

    def revoke_for_user(self, user_id: str, now: datetime, *, keep: str | None = None) -> int:
        hits = [h for h, s in self.sessions.items() if s.user_id == user_id and h != keep and s.revoked_at is None]
        for key_hash in hits:
            self.revoke(key_hash, now)
        return len(hits)

    def purge(self, before: datetime) -> int:
        old = [h for h, s in self.sessions.items() if s.expires_at < before]
        for key_hash in old:
            del self.sessions[key_hash]
        return len(old)


@dataclass
class _Counter:
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None = None


class MemoryLoginThrottle:
    """Counts under a lock, as the port demands of every implementation."""

    def __init__(self) -> None:
        self.counters: dict[ThrottleKey, _Counter] = {}
        self._lock = threading.Lock()

    def locked_until(self, keys: Sequence[ThrottleKey], now: datetime) -> datetime | None:
        counters = [self.counters[k] for k in keys if k in self.counters]
        locks = [c.locked_until for c in counters if c.locked_until is not None and c.locked_until > now]
        return max(locks) if locks else None

    def record_failure(self, key: ThrottleKey, now: datetime, *, forget_before: datetime) -> int:
        with self._lock:
            counter = self.counters.get(key)
            if counter is None:
                counter = self.counters[key] = _Counter(0, now)
            counter.failures = 1 if counter.last_failure_at < forget_before else counter.failures + 1
            counter.last_failure_at = now
            return counter.failures

    def lock(self, key: ThrottleKey, until: datetime) -> None:
        with self._lock:
            counter = self.counters[key]
            if counter.locked_until is None or counter.locked_until < until:
                counter.locked_until = until

    def clear(self, key: ThrottleKey) -> None:
        self.counters.pop(key, None)

    def clear_account(self, account: str) -> None:
        for key in [k for k in self.counters if k.account == account.strip().lower()]:
            del self.counters[key]


class MemoryTokenStore:
    def __init__(self) -> None:
        self.tokens: dict[str, tuple[ApiToken, str]] = {}

    def add(self, token: ApiToken, token_hash: str) -> None:
        self.tokens[token.id] = (token, token_hash)

    def find_by_hash(self, token_hash: str) -> ApiToken | None:
        return next((t for t, h in self.tokens.values() if h == token_hash), None)

    def for_user(self, user_id: str) -> list[ApiToken]:
        return [t for t, _ in self.tokens.values() if t.user_id == user_id]

    def revoke(self, token_id: str, now: datetime) -> bool:
        token, token_hash = self.tokens[token_id]
        if token.revoked_at is not None:
            return False
        self.tokens[token_id] = (replace(token, revoked_at=now), token_hash)
        return True

    def touch(self, token_id: str, now: datetime) -> None:
        token, token_hash = self.tokens[token_id]
        self.tokens[token_id] = (replace(token, last_used_at=now), token_hash)

    def revoke_all(self, user_id: str, now: datetime) -> int:
        hits = [t.id for t in self.for_user(user_id) if t.revoked_at is None]
        for token_id in hits:
            self.revoke(token_id, now)
        return len(hits)


def unused(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("not expected in this test")
