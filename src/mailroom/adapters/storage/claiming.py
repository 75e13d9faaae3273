"""The queue claim: the one statement where SQLite and PostgreSQL differ.

The due ids are selected (per priority, oldest first), then ``UPDATE ... WHERE id IN (...) RETURNING``
marks them ``sending`` and leases them, in one transaction. On PostgreSQL the SELECTs take
``FOR UPDATE SKIP LOCKED``, so concurrent workers each get other rows instead of waiting for (or
double-claiming) the same ones. SQLite has one writer at a time (``BEGIN IMMEDIATE``), so the same
statements are safe there without row locks.

A mail in ``sending`` whose lease (``next_attempt_at``) has passed is claimable again: its worker died.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, select, update

from mailroom.adapters.storage.tables import CLAIMABLE, mails
from mailroom.domain.mail import Priority
from mailroom.domain.outbox import MailStatus


def claim_due(conn: Connection, *, token: str, limit: int, now: datetime, lease_seconds: float) -> list[Row[Any]]:
    """The claimed rows, highest priority and oldest first (RETURNING itself has no order).

    One small query per priority, each a range of the partial claim index (priority, next_attempt_at):
    the cost follows the batch, not the queue. (A single ``ORDER BY priority DESC, next_attempt_at``
    cannot be read from that index and would sort every claimable row on every claim.)
    """
    ids: list[str] = []
    for rank in sorted({p.rank for p in Priority}, reverse=True):
        if len(ids) >= limit:
            break
        due = (
            select(mails.c.id)
            .where(CLAIMABLE)  # the index's own predicate, as text, so the planner may use the partial index
            .where(mails.c.priority == rank, mails.c.next_attempt_at <= now)
            .order_by(mails.c.next_attempt_at)
            .limit(limit - len(ids))
        )
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids += conn.execute(due).scalars().all()
    if not ids:
        return []
    claim = (
        update(mails)
        .where(mails.c.id.in_(ids))
        .values(status=MailStatus.SENDING.value, claim_token=token, attempts=mails.c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(mails.c.id, mails.c.attempts, mails.c.envelope_sender, mails.c.smtp_hint,
                   mails.c.expires_at, mails.c.has_from, mails.c.priority, mails.c.queued_at)
    )
    return sorted(conn.execute(claim), key=lambda row: (-row.priority, row.queued_at))
