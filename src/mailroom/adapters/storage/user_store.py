"""Users, roles and one-time codes in the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import one_time_codes, roles, users
from mailroom.domain.users import CodePurpose, OneTimeCode, Profile, Role, User
from mailroom.errors import DuplicateEmail, StorageError, UserNotFound


class SqlUserStore:
    """Implements the ``UserStore`` port."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, user: User, password_hash: str | None) -> None:
        with self._unique_email(user.email), self._db.write() as conn:
            conn.execute(insert(users).values(id=user.id, password_hash=password_hash, **_values(user)))

    def get(self, user_id: str) -> User:
        with self._db.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        if row is None:
            raise UserNotFound(user_id)
        return _to_user(row)

    def find_by_email(self, email: str) -> User | None:
        with self._db.read() as conn:
            row = conn.execute(select(users).where(users.c.email_key == email.strip().lower())).first()
        return None if row is None else _to_user(row)

    def all_users(self) -> list[User]:
        with self._db.read() as conn:
            rows = conn.execute(select(users).order_by(users.c.email_key)).all()
        return [_to_user(row) for row in rows]

    def count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    def update(self, user: User) -> None:
        with self._unique_email(user.email), self._db.write() as conn:
            changed = conn.execute(update(users).where(users.c.id == user.id).values(**_values(user))).rowcount
        if not changed:
            raise UserNotFound(user.id)

    def remove(self, user_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(delete(one_time_codes).where(one_time_codes.c.user_id == user_id))
            conn.execute(delete(users).where(users.c.id == user_id))

    def password_hash(self, user_id: str) -> str | None:
        with self._db.read() as conn:
            value = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar_one_or_none()
        return None if value is None else str(value)

    def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None:
        with self._db.write() as conn:
            changed = conn.execute(update(users).where(users.c.id == user_id).values(
                password_hash=password_hash, updated_at=now)).rowcount
        if not changed:
            raise UserNotFound(user_id)

    def roles(self) -> list[Role]:
        with self._db.read() as conn:
            rows = conn.execute(select(roles).order_by(roles.c.id)).all()
        return [Role(id=row.id, name=row.name, permissions=frozenset(p for p in row.permissions.split(",") if p),
                     all_permissions=row.all_permissions) for row in rows]

    def save_role(self, role: Role) -> None:
        values = {"name": role.name, "permissions": ",".join(sorted(role.permissions)),
                  "all_permissions": role.all_permissions}
        with self._db.write() as conn:
            if not conn.execute(update(roles).where(roles.c.id == role.id).values(**values)).rowcount:
                conn.execute(insert(roles).values(id=role.id, **values))

    def add_code(self, code: OneTimeCode) -> None:
        with self._db.write() as conn:
            conn.execute(insert(one_time_codes).values(
                code_hash=code.code_hash, user_id=code.user_id, purpose=code.purpose.value, email=code.email,
                created_at=code.created_at, expires_at=code.expires_at, used_at=code.used_at))

    def find_code(self, code_hash: str) -> OneTimeCode | None:
        with self._db.read() as conn:
            row = conn.execute(select(one_time_codes).where(one_time_codes.c.code_hash == code_hash)).first()
        if row is None:
            return None
        return OneTimeCode(code_hash=row.code_hash, user_id=row.user_id, purpose=CodePurpose(row.purpose),
                           email=row.email, created_at=row.created_at, expires_at=row.expires_at,
                           used_at=row.used_at)

    def use_code(self, code_hash: str, now: datetime) -> bool:
        # The guarded UPDATE is the single-use check: of two requests racing with one link, one wins.
        with self._db.write() as conn:
            return bool(conn.execute(update(one_time_codes).where(
                one_time_codes.c.code_hash == code_hash, one_time_codes.c.used_at.is_(None)).values(
                used_at=now)).rowcount)

    def invalidate_codes(self, user_id: str, purpose: str, now: datetime, *, keep: str | None = None) -> int:
        conditions = [one_time_codes.c.user_id == user_id, one_time_codes.c.purpose == purpose,
                      one_time_codes.c.used_at.is_(None)]
        if keep is not None:
            conditions.append(one_time_codes.c.code_hash != keep)
        with self._db.write() as conn:
            return int(conn.execute(update(one_time_codes).where(*conditions).values(used_at=now)).rowcount)

    @contextmanager
    def _unique_email(self, email: str) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise DuplicateEmail(email) from None
            raise


def _values(user: User) -> dict[str, Any]:
    p = user.profile
    return {"email": p.email, "email_key": p.email.lower(), "first_name": p.first_name,
            "last_name": p.last_name, "title": p.title, "salutation": p.salutation,
            "preferred_language": p.preferred_language, "verified": user.verified, "enabled": user.enabled,
            "roles": ",".join(user.roles), "created_at": user.created_at, "updated_at": user.updated_at}


def _to_user(row: Row[Any]) -> User:
    profile = Profile(email=row.email, first_name=row.first_name, last_name=row.last_name, title=row.title,
                      salutation=row.salutation, preferred_language=row.preferred_language)
    return User(id=row.id, profile=profile, verified=row.verified, enabled=row.enabled,
                roles=tuple(r for r in row.roles.split(",") if r), created_at=row.created_at,
                updated_at=row.updated_at)
