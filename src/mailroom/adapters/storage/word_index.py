"""SQLite's word index for the log search: an FTS5 table of the trigrams of each mail's subject, recipients,
sender and tags, so that a substring search (``invoice``, ``from:shop@``, ``tag:billing``) reads an index
instead of every mail.

send_mail does not write it: indexing a mail's trigrams as it is queued would cost more than the rest of
send_mail. The worker adds new mails in batches (:func:`index_new_mails`); a mail not indexed yet has
``search_key`` NULL and is found by a LIKE over the partial index of those mails, so a search never misses
one. PostgreSQL needs none of this: its trigram GIN indexes are on the searched columns (migration 0015).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    table,
    union_all,
    update,
)

from mailroom.adapters.storage.tables import WORD_INDEX, mails
from mailroom.domain.log import TermField

MIN_LENGTH = 3
"""Trigrams: a shorter value has none to look up, and is searched by a scan."""

words = table(WORD_INDEX, column("rowid"), column("mail_id"), column("subject"), column("receiver"),
              column("sender"), column("tags"))
_INDEXED = ("subject", "receiver", "sender", "tags")
_COLUMNS = {TermField.TEXT: "{subject receiver}", TermField.SUBJECT: "subject", TermField.SENDER: "sender",
            TermField.RECIPIENT: "receiver", TermField.TAG: "tags"}


def match_expression(field: TermField, needle: str) -> str | None:
    """The FTS5 query for mails whose ``field`` contains ``needle`` (any case), or None when the index cannot
    answer it (a field it does not hold, a needle under three characters)."""
    if field not in _COLUMNS or len(needle) < MIN_LENGTH:
        return None
    # A quoted phrase is taken literally, a doubled quote being a quote; with the trigram tokenizer a phrase
    # matches where its characters stand in a row: a substring.
    return f'{_COLUMNS[field]} : "{needle.replace(chr(34), chr(34) * 2)}"'


def matching(expression: str) -> ColumnElement[bool]:
    return literal_column(WORD_INDEX).op("MATCH")(expression)


def hits(expression: str, unindexed: ColumnElement[bool]) -> CompoundSelect[Any]:
    """The ids of the mails the index finds, and of those not indexed yet that match ``unindexed`` (the same
    test as a LIKE), as one column ``mail_id``."""
    return union_all(select(words.c.mail_id).where(matching(expression)),
                     select(mails.c.id).where(mails.c.search_key.is_(None), unindexed))


def count_up_to(conn: Connection, expression: str, limit: int) -> int:
    """How many indexed mails match, counted up to ``limit``: the index alone, which stops at the limit."""
    found = select(words.c.rowid).where(matching(expression)).limit(limit).subquery()
    counted: int = conn.execute(select(func.count()).select_from(found)).scalar_one()
    return counted


_BACKLOG = (select(mails.c.id, *(mails.c[name] for name in _INDEXED))
            .where(mails.c.search_key.is_(None)).order_by(mails.c.queued_at).limit(bindparam("limit")))
_LAST_KEY = select(words.c.rowid).order_by(words.c.rowid.desc()).limit(1)
_ADD = insert(words)
_MARK = update(mails).where(mails.c.id == bindparam("b_id")).values(search_key=bindparam("b_key"))


def index_new_mails(conn: Connection, limit: int) -> int:
    """Index up to ``limit`` mails not in the index yet, oldest first; returns how many. Call within a write
    transaction (SQLite's one writer at a time makes the next free key safe to take)."""
    rows = conn.execute(_BACKLOG, {"limit": limit}).all()
    if not rows:
        return 0
    start = (conn.execute(_LAST_KEY).scalar() or 0) + 1
    conn.execute(_ADD, [{"rowid": start + n, "mail_id": row.id, **{name: getattr(row, name) for name in _INDEXED}}
                        for n, row in enumerate(rows)])
    conn.execute(_MARK, [{"b_id": row.id, "b_key": start + n} for n, row in enumerate(rows)])
    return len(rows)


def forget(conn: Connection, mail_ids: list[str]) -> None:
    """Take these mails out of the index (before they are deleted, or when their sender changed: they are then
    indexed again)."""
    keys = select(mails.c.search_key).where(mails.c.id.in_(mail_ids), mails.c.search_key.is_not(None))
    conn.execute(delete(words).where(words.c.rowid.in_(keys)))
