"""Web login sessions and the failed-login counters in the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import login_throttle, web_sessions
from mailroom.domain.sessions import LoginSession, ThrottleKey


class SqlSessionStore:
    """Implements the ``SessionStore`` port."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, session: LoginSession) -> None:
        with self._db.write() as conn:
            conn.execute(insert(web_sessions).values(
                key_hash=session.key_hash, user_id=session.user_id, created_at=session.created_at,
                expires_at=session.expires_at, revoked_at=session.revoked_at))

    def find(self, key_hash: str) -> LoginSession | None:
        with self._db.read() as conn:
            row = conn.execute(select(web_sessions).where(web_sessions.c.key_hash == key_hash)).first()
        return None if row is None else _to_session(row)

    def revoke(self, key_hash: str, now: datetime) -> bool:
        with self._db.write() as conn:
            return bool(conn.execute(update(web_sessions).where(
                web_sessions.c.key_hash == key_hash, web_sessions.c.revoked_at.is_(None)).values(
                revoked_at=now)).rowcount)

    def revoke_for_user(self, user_id: str, now: datetime, *, keep: str | None = None) -> int:
        condition = and_(web_sessions.c.user_id == user_id, web_sessions.c.revoked_at.is_(None))
        if keep is not None:
            condition = and_(condition, web_sessions.c.key_hash != keep)
        with self._db.write() as conn:
            return int(conn.execute(update(web_sessions).where(condition).values(revoked_at=now)).rowcount)

    def purge(self, before: datetime) -> int:
        with self._db.write() as conn:
            return int(conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < before)).rowcount)


class SqlLoginThrottle:
    """Implements the ``LoginThrottle`` port.

    A failure is one ``INSERT ... ON CONFLICT DO UPDATE SET failures = failures + 1 RETURNING failures``:
    the database adds, so guesses sent in parallel are all counted (a read, then a write of the read
    value plus one, lost most of them).
    """

    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = postgresql.insert if database.is_postgres else sqlite.insert

    def locked_until(self, keys: Sequence[ThrottleKey], now: datetime) -> datetime | None:
        if not keys:
            return None
        wanted = or_(*(and_(login_throttle.c.account == k.account, login_throttle.c.client == k.client)
                       for k in keys))
        with self._db.read() as conn:
            value = conn.execute(select(func.max(login_throttle.c.locked_until)).where(
                wanted, login_throttle.c.locked_until > now)).scalar_one_or_none()
        return value if isinstance(value, datetime) else None

    def record_failure(self, key: ThrottleKey, now: datetime, *, forget_before: datetime) -> int:
        t = login_throttle
        insert = self._insert(t).values(account=key.account, client=key.client, failures=1, last_failure_at=now)
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.account, t.c.client],
            set_={"failures": case((t.c.last_failure_at < forget_before, 1), else_=t.c.failures + 1),
                  "last_failure_at": now},
        ).returning(t.c.failures)
        with self._db.write() as conn:
            return int(conn.execute(statement).scalar_one())

    def lock(self, key: ThrottleKey, until: datetime) -> None:
        t = login_throttle
        # Never shorten a lock: of two racing failures, the one that counted fewer may write last.
        later = case((or_(t.c.locked_until.is_(None), t.c.locked_until < until), until), else_=t.c.locked_until)
        with self._db.write() as conn:
            conn.execute(update(t).where(t.c.account == key.account, t.c.client == key.client).values(
                locked_until=later))

    def clear(self, key: ThrottleKey) -> None:
        with self._db.write() as conn:
            conn.execute(delete(login_throttle).where(
                login_throttle.c.account == key.account, login_throttle.c.client == key.client))

    def clear_account(self, account: str) -> None:
        with self._db.write() as conn:
            conn.execute(delete(login_throttle).where(login_throttle.c.account == account.strip().lower()))


def _to_session(row: Row[Any]) -> LoginSession:
    return LoginSession(key_hash=row.key_hash, user_id=row.user_id, created_at=row.created_at,
                        expires_at=row.expires_at, revoked_at=row.revoked_at)
