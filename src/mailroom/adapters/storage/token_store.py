"""API tokens in the database: only the SHA-256 of each secret is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import api_tokens
from mailroom.domain.users import ApiToken


class SqlApiTokenStore:
    """Implements the ``ApiTokenStore`` port."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, token: ApiToken, token_hash: str) -> None:
        with self._db.write() as conn:
            conn.execute(insert(api_tokens).values(
                id=token.id, user_id=token.user_id, name=token.name, hint=token.hint, token_hash=token_hash,
                created_at=token.created_at, last_used_at=token.last_used_at, revoked_at=token.revoked_at,
                expires_at=token.expires_at))

    def find_by_hash(self, token_hash: str) -> ApiToken | None:
        with self._db.read() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash)).first()
        return None if row is None else _to_token(row)

    def for_user(self, user_id: str) -> list[ApiToken]:
        with self._db.read() as conn:
            rows = conn.execute(select(api_tokens).where(api_tokens.c.user_id == user_id)
                                .order_by(api_tokens.c.created_at.desc())).all()
        return [_to_token(row) for row in rows]

    def revoke(self, token_id: str, now: datetime) -> bool:
        with self._db.write() as conn:
            return bool(conn.execute(update(api_tokens).where(
                api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount)

    def touch(self, token_id: str, now: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))

    def revoke_all(self, user_id: str, now: datetime) -> int:
        with self._db.write() as conn:
            return int(conn.execute(update(api_tokens).where(
                api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount)


def _to_token(row: Row[Any]) -> ApiToken:
    return ApiToken(id=row.id, user_id=row.user_id, name=row.name, hint=row.hint, created_at=row.created_at,
                    last_used_at=row.last_used_at, revoked_at=row.revoked_at, expires_at=row.expires_at)
