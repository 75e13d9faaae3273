"""The queue claim: the one statement where SQLite and PostgreSQL differ.

``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` marks due mails as ``sending`` and leases
them in one statement. On PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so concurrent
workers each get other rows instead of waiting for (or double-claiming) the same ones. SQLite has one
writer at a time (``BEGIN IMMEDIATE``), so the same statement is safe there without row locks.

A mail in ``sending`` whose lease (``next_attempt_at``) has passed is claimable again: its worker died.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update

from mailroom.adapters.storage.tables import mails
from mailroom.domain.outbox import CLAIMABLE_STATUSES, MailStatus


def claim_due(conn: Connection, *, token: str, limit: int, now: datetime, lease_seconds: float) -> list[Row[Any]]:
    """The claimed rows, highest priority and oldest first (RETURNING itself has no order)."""
    due = (
        select(mails.c.id)
        .where(mails.c.status.in_([s.value for s in CLAIMABLE_STATUSES]))
        .where(mails.c.next_attempt_at <= now)
        .order_by(mails.c.priority.desc(), mails.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        update(mails)
        .where(mails.c.id.in_(due.scalar_subquery()))
        .values(status=MailStatus.SENDING.value, claim_token=token, attempts=mails.c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(mails.c.id, mails.c.attempts, mails.c.envelope_sender, mails.c.smtp_hint,
                   mails.c.expires_at, mails.c.has_from, mails.c.priority, mails.c.queued_at)
    )
    return sorted(conn.execute(claim), key=lambda row: (-row.priority, row.queued_at))
