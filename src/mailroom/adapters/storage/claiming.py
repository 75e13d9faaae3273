"""The queue claim: the one statement where SQLite and PostgreSQL differ.

Per priority, one ``UPDATE ... RETURNING`` selects the due mails (oldest first) and marks them
``sending`` under a lease, all in one transaction. On PostgreSQL the selection takes
``FOR UPDATE SKIP LOCKED``, so concurrent workers each get other rows instead of waiting for (or
double-claiming) the same ones. SQLite has one writer at a time (``BEGIN IMMEDIATE``), so the same
statements are safe there without row locks.

A mail in ``sending`` whose lease (``next_attempt_at``) has passed is claimable again: its worker died.

A claim whose commit went through while its worker lost the connection (so it never saw the answer) is
taken up again under its token by ``resume_claim``; otherwise its mails would sit out their lease.

The statements are built once, with bound parameters: a claim runs several times a second under load,
and building and hashing a statement costs more than running it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, Update, bindparam, select, update

from mailroom.adapters.storage.tables import CLAIMABLE, mails
from mailroom.domain.mail import Priority
from mailroom.domain.outbox import MailStatus

_RANKS = sorted({p.rank for p in Priority}, reverse=True)


def _due(rank: int) -> Select[str]:
    """One range of the partial claim index (priority, next_attempt_at)."""
    return (
        select(mails.c.id)
        .where(CLAIMABLE)  # the index's own predicate, as text, so the planner may use the partial index
        .where(mails.c.priority == rank, mails.c.next_attempt_at <= bindparam("now"))
        .order_by(mails.c.next_attempt_at)
        .limit(bindparam("limit"))
    )


_DUE = {rank: _due(rank) for rank in _RANKS}
_DUE_SKIP_LOCKED = {rank: statement.with_for_update(skip_locked=True) for rank, statement in _DUE.items()}


_CLAIMED_COLUMNS = (mails.c.id, mails.c.attempts, mails.c.envelope_sender, mails.c.smtp_hint,
                    mails.c.expires_at, mails.c.has_from, mails.c.size_bytes)


def _lease(due: Select[str]) -> Update:
    """Mark the due mails ``sending`` under this claim's token until the lease ends, in one statement.

    The due rows are a CTE (``WITH due AS (SELECT ... LIMIT n) UPDATE ... WHERE id IN (SELECT id FROM
    due)``), the form queues on PostgreSQL use: the CTE runs once, so its LIMIT and row locks hold.
    """
    selected = due.cte("due")
    return (
        update(mails)
        .add_cte(selected)
        .where(mails.c.id.in_(select(selected.c.id)))
        .values(status=MailStatus.SENDING.value, claim_token=bindparam("token"), attempts=mails.c.attempts + 1,
                next_attempt_at=bindparam("lease_until", type_=mails.c.next_attempt_at.type),
                updated_at=bindparam("now", type_=mails.c.updated_at.type))
        .returning(*_CLAIMED_COLUMNS)
    )


LEASE = {rank: _lease(due) for rank, due in _DUE.items()}
_LEASE_SKIP_LOCKED = {rank: _lease(due) for rank, due in _DUE_SKIP_LOCKED.items()}


def claim_due(conn: Connection, *, token: str, limit: int, now: datetime, lease_seconds: float) -> list[Row[Any]]:
    """The claimed rows, highest priority and oldest first.

    One small statement per priority, each a range of the partial claim index: the cost follows the
    batch, not the queue. (A single ``ORDER BY priority DESC, next_attempt_at`` cannot be read from that
    index and would sort every claimable row on every claim.)
    """
    lease = _LEASE_SKIP_LOCKED if conn.dialect.name == "postgresql" else LEASE
    params = {"token": token, "now": now, "lease_until": now + timedelta(seconds=lease_seconds)}
    claimed: list[Row[Any]] = []
    for rank in _RANKS:
        if len(claimed) >= limit:
            break
        rows = conn.execute(lease[rank], {**params, "limit": limit - len(claimed)}).all()
        # RETURNING has no order of its own. Mail ids are UUIDv7, so they sort by queue time.
        claimed += sorted(rows, key=lambda row: row.id)
    return claimed


# Rare (after a connection lost in a claim's commit), so a scan of the claim token is fine: no index for it.
_RESUME = (
    update(mails)
    .where(mails.c.claim_token == bindparam("token"), mails.c.status == MailStatus.SENDING.value)
    .values(next_attempt_at=bindparam("lease_until", type_=mails.c.next_attempt_at.type),
            updated_at=bindparam("now", type_=mails.c.updated_at.type))
    .returning(*_CLAIMED_COLUMNS)
)


def resume_claimed(conn: Connection, *, token: str, now: datetime, lease_seconds: float) -> list[Row[Any]]:
    """The rows still held under ``token``, oldest first, their lease renewed from ``now``."""
    rows = conn.execute(_RESUME, {"token": token, "now": now,
                                  "lease_until": now + timedelta(seconds=lease_seconds)}).all()
    return sorted(rows, key=lambda row: row.id)
