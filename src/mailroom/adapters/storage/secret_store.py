"""The encrypted values in storage, for key rotation and its check: SMTP passwords and the sealed contents
of confidential mails. Each batch is one short transaction; a row is rewritten only if it still holds the
value that was read (compare-and-set), so a password changed meanwhile is never overwritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, select, update

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.mail_store import SEALED
from mailroom.adapters.storage.tables import mail_contents, mails, smtp_servers
from mailroom.domain.stored_secrets import SecretBatch, SecretKind, StoredSecret
from mailroom.errors import SecretError
from mailroom.ports import KeyRing


class SqlStoredSecrets:
    def __init__(self, database: Database, keys: KeyRing) -> None:
        self._db = database
        self._keys = keys

    def rotate_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        with self._db.write() as conn:
            return self._walk(conn, kind, after=after, limit=limit, rewrite=True)

    def check_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        with self._db.read() as conn:
            return self._walk(conn, kind, after=after, limit=limit, rewrite=False)

    def _walk(self, conn: Connection, kind: SecretKind, *, after: str | None, limit: int,
              rewrite: bool) -> SecretBatch:
        query, id_column, write = _SOURCES[kind]
        rows = conn.execute(query.where(*([id_column > after] if after else [])).order_by(id_column)
                            .limit(limit)).all()
        if not rows:
            return SecretBatch(last_id=None)
        rotated = current = 0
        unopened: list[StoredSecret] = []
        for row in rows:
            stored: bytes = row.value
            if kind is SecretKind.MAIL_CONTENT and not stored.startswith(SEALED):
                continue  # not sealed (stored before contents were): nothing to rotate
            token = stored[len(SEALED):] if kind is SecretKind.MAIL_CONTENT else stored
            secret = StoredSecret(kind, row.id, row.owner)
            if not rewrite:
                if not self._keys.can_open(token):
                    unopened.append(secret)
                continue
            try:
                renewed = self._keys.rotate(token)
            except SecretError:
                unopened.append(secret)
                continue
            if renewed is None:
                current += 1
                continue
            new_value = SEALED + renewed if kind is SecretKind.MAIL_CONTENT else renewed
            rotated += write(conn, row, new_value)
        return SecretBatch(last_id=rows[-1].id, rotated=rotated, current=current, unopened=unopened)


def _write_password(conn: Connection, row: Row[Any], value: bytes) -> int:
    return int(conn.execute(update(smtp_servers).where(
        smtp_servers.c.id == row.id, smtp_servers.c.password_encrypted == row.value,
    ).values(password_encrypted=value)).rowcount)


def _write_content(conn: Connection, row: Row[Any], value: bytes) -> int:
    # A content dropped meanwhile (the mail was sent) matches nothing: there is nothing left to protect.
    return int(conn.execute(update(mail_contents).where(
        mail_contents.c.mail_id == row.id, mail_contents.c.message == row.value,
    ).values(message=value)).rowcount)


_Writer = Callable[[Connection, Row[Any], bytes], int]
_SOURCES: dict[SecretKind, tuple[Select[Any], ColumnElement[str], _Writer]] = {
    SecretKind.SMTP_PASSWORD: (
        select(smtp_servers.c.id, smtp_servers.c.name.label("owner"), smtp_servers.c.password_encrypted.label("value"))
        .where(smtp_servers.c.password_encrypted.is_not(None)),
        smtp_servers.c.id, _write_password),
    # Only confidential mails have sealed contents; the primary keys of both tables walk them in order.
    SecretKind.MAIL_CONTENT: (
        select(mail_contents.c.mail_id.label("id"), mails.c.subject.label("owner"),
               mail_contents.c.message.label("value"))
        .join(mails, mails.c.id == mail_contents.c.mail_id).where(mails.c.confidential.is_(True)),
        mail_contents.c.mail_id, _write_content),
}
