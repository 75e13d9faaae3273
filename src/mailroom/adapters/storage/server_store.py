"""SMTP servers in the database, their passwords sealed by the SecretBox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import rate_limit_sends, rate_limits, smtp_servers
from mailroom.domain.servers import Security, ServerSettings, SmtpServer
from mailroom.errors import InvalidInput, ServerNotFound
from mailroom.ports import SecretBox


class SqlServerStore:
    def __init__(self, database: Database, secret_box: SecretBox) -> None:
        self._db = database
        self._box = secret_box

    def list(self) -> list[SmtpServer]:
        with self._db.read() as conn:
            rows = conn.execute(select(smtp_servers).order_by(smtp_servers.c.priority.desc(),
                                                              smtp_servers.c.name)).all()
        return [_to_server(row) for row in rows]

    def get(self, name_or_id: str) -> SmtpServer:
        with self._db.read() as conn:
            row = conn.execute(select(smtp_servers).where(
                or_(smtp_servers.c.id == name_or_id, smtp_servers.c.name == name_or_id))).first()
        if row is None:
            raise ServerNotFound(name_or_id)
        return _to_server(row)

    def add(self, settings: ServerSettings, password: str | None) -> SmtpServer:
        now = datetime.now(UTC)
        server_id = uuid.uuid4().hex
        values = _values(settings) | {
            "id": server_id, "created_at": now, "updated_at": now,
            "password_encrypted": self._box.encrypt(password) if password else None,
        }
        try:
            with self._db.write() as conn:
                conn.execute(insert(smtp_servers).values(**values))
        except Exception as exc:
            if isinstance(exc.__cause__, IntegrityError) or isinstance(exc, IntegrityError):
                raise InvalidInput(f"an SMTP server named {settings.name!r} already exists", field="name") from exc
            raise
        return self.get(server_id)

    def update(self, server_id: str, settings: ServerSettings, password: str | None) -> SmtpServer:
        values = _values(settings) | {"updated_at": datetime.now(UTC)}
        if password is not None:
            values["password_encrypted"] = self._box.encrypt(password) if password else None
        try:
            with self._db.write() as conn:
                changed = conn.execute(update(smtp_servers).where(smtp_servers.c.id == server_id)
                                       .values(**values)).rowcount
        except Exception as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise InvalidInput(f"an SMTP server named {settings.name!r} already exists", field="name") from exc
            raise
        if not changed:
            raise ServerNotFound(server_id)
        return self.get(server_id)

    def remove(self, server_id: str) -> None:
        with self._db.write() as conn:
            if not conn.execute(delete(smtp_servers).where(smtp_servers.c.id == server_id)).rowcount:
                raise ServerNotFound(server_id)
            # Its rate limits go with it (their counted sends cascade).
            conn.execute(delete(rate_limit_sends).where(rate_limit_sends.c.scope_kind == "server",
                                                        rate_limit_sends.c.scope_target == server_id))
            conn.execute(delete(rate_limits).where(rate_limits.c.scope_kind == "server",
                                                   rate_limits.c.scope_target == server_id))

    def password(self, server_id: str) -> str | None:
        with self._db.read() as conn:
            token = conn.execute(select(smtp_servers.c.password_encrypted)
                                 .where(smtp_servers.c.id == server_id)).scalar()
        return self._box.decrypt(token) if token else None


def _values(settings: ServerSettings) -> dict[str, Any]:
    return {"name": settings.name, "host": settings.host, "port": settings.port,
            "security": settings.security.value, "username": settings.username, "sender": settings.sender,
            "priority": settings.priority, "enabled": settings.enabled,
            "timeout_seconds": settings.timeout_seconds, "helo_name": settings.helo_name}


def _to_server(row: Row[Any]) -> SmtpServer:
    return SmtpServer(id=row.id, name=row.name, host=row.host, port=row.port, security=Security(row.security),
                      username=row.username, sender=row.sender, priority=row.priority, enabled=row.enabled,
                      timeout_seconds=row.timeout_seconds, helo_name=row.helo_name,
                      has_password=row.password_encrypted is not None)
