"""The log search in SQL: a LogQuery's conditions, one page in its order and its count, on one connection.

Substring terms (a plain word, ``subject:``, ``from:``, a part of an address in ``to:``, ``tag:``) are a
LIKE '%...%' on the mails' columns. PostgreSQL serves them from trigram GIN indexes on those very expressions
(migration 0015), its planner choosing between them and the queued_at order by what it knows of the values.
SQLite has no such index and no such planner: there each term of three characters or more is first counted in
the word index (word_index.py), up to COMMON. A rare term's page is read from the index; a common one's by
walking the log in its order, where the first page of matches comes at once. The count, bounded, is driven by
the rarest indexed term: it stops after as many matches as it needs whatever the term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    func,
    literal,
    not_,
    or_,
    select,
)

from mailroom.adapters.storage import word_index
from mailroom.adapters.storage.tables import mail_recipients, mails
from mailroom.domain.log import KEYSET_SORTS, LogQuery, PageCursor, SearchTerm, SortKey, TermField

COMMON = 2_000
"""A term the word index finds in at least this many mails is searched by walking the log in order: at a
million mails that is one in 500, and the first page of such a term lies within some 25,000 mails."""

_SORT_COLUMNS = {
    SortKey.QUEUED_AT: mails.c.queued_at,
    SortKey.SENT_AT: mails.c.sent_at,
    SortKey.SUBJECT: mails.c.subject,
    SortKey.STATUS: mails.c.status,
    SortKey.RECEIVER: mails.c.receiver,
    SortKey.SERVER: mails.c.server_name,
    SortKey.ATTEMPTS: mails.c.attempts,
}


@dataclass(frozen=True, slots=True)
class _Indexed:
    """A term the word index answers: its FTS5 query, its condition on a mail's own columns, how many mails
    the index found for it (counted up to COMMON) and its position among the conditions."""

    expression: str
    like: ColumnElement[bool]
    found: int
    position: int


class LogSearch:
    """The statements of one search. ``with_word_index``: look substring terms up in SQLite's word index."""

    def __init__(self, conn: Connection, query: LogQuery, *, with_word_index: bool = False) -> None:
        self._conn = conn
        self.query = query
        self.conditions: list[ColumnElement[bool]] = []
        self._indexed: list[_Indexed] = []
        self._build(with_word_index)

    def count(self, limit: int) -> tuple[int, bool]:
        """(how many match, exactly), or (n, False) when more than n match. The whole log is counted exactly
        (both databases count a table without reading its rows); a filtered search only up to ``limit`` or
        the end of its page, so that a common filter does not read the whole log for a figure."""
        query = self.query
        if not self.conditions:
            return self._conn.execute(select(func.count()).select_from(mails)).scalar_one(), True
        bound = max(limit, query.offset + query.limit)
        counted = 0
        for part in self.count_parts():  # disjoint parts, each counted only as far as still needed
            found = part.limit(bound + 1 - counted).subquery()
            counted += self._conn.execute(select(func.count()).select_from(found)).scalar_one()
            if counted > bound:
                return bound, False
        return counted, True

    def count_parts(self) -> list[Select[Any]]:
        """The matches as disjoint parts to count: the rarest indexed term's mails found by the index (joined to
        the other conditions), then those not indexed yet; or simply every mail matching."""
        if not self._indexed:
            return [select(mails.c.id).where(*self.conditions)]
        rarest = min(self._indexed, key=lambda indexed: indexed.found)
        others = [c for n, c in enumerate(self.conditions) if n != rarest.position]
        words = word_index.words
        return [select(literal(1)).select_from(words.join(mails, mails.c.id == words.c.mail_id))
                .where(word_index.matching(rarest.expression), *others),
                select(literal(1)).where(mails.c.search_key.is_(None), rarest.like, *others)]

    def rows(self, total: int | None) -> list[Row[Any]]:
        """The page's mails; with the exact ``total``, a page in the back half is read from the other end."""
        query = self.query
        if total is None or query.offset <= total // 2:
            return list(self._conn.execute(self.page()).all())
        # An OFFSET is read and thrown away row by row: read backwards, the last page costs what the first
        # does. The order ends on the id, so reversed it is exactly the same sequence backwards.
        end = min(query.offset + query.limit, total)
        if end <= query.offset:
            return []
        backwards = replace(query, offset=total - end, limit=end - query.offset)
        return list(reversed(self._conn.execute(self.page(backwards, reverse=True)).all()))

    def page(self, query: LogQuery | None = None, *, reverse: bool = False) -> Select[Any]:
        """The statement of one page (its EXPLAIN is pinned by the tests)."""
        query = query or self.query
        column = _SORT_COLUMNS[query.sort]
        descending = query.descending != reverse
        order = [column.desc() if descending else column.asc(),
                 mails.c.id.desc() if descending else mails.c.id.asc()]
        return (select(mails).where(*self.conditions, *self._after()).order_by(*order)
                .offset(query.offset).limit(query.limit))

    def next_after(self, rows: list[Row[Any]], total: int | None) -> str | None:
        """The cursor of the page after ``rows``, when the order allows one and the page is full (a full last
        page's cursor leads to an empty page when the total is not known)."""
        query = self.query
        if query.sort not in KEYSET_SORTS or len(rows) < query.limit:
            return None
        if total is not None and query.after is None and query.offset + len(rows) >= total:
            return None
        last = rows[-1]
        value = getattr(last, _SORT_COLUMNS[query.sort].key)
        return PageCursor(query.sort, query.descending, value, last.id).encode()

    def _after(self) -> list[ColumnElement[bool]]:
        """The cursor's condition: after its mail in the page's order. Spelled so that the sort column's own
        index serves it (a row-value comparison would need an index on the column and the id together)."""
        cursor = self.query.cursor
        if cursor is None:
            return []
        column = _SORT_COLUMNS[cursor.sort]
        if cursor.descending:
            return [column <= cursor.value, or_(column < cursor.value, mails.c.id < cursor.mail_id)]
        return [column >= cursor.value, or_(column > cursor.value, mails.c.id > cursor.mail_id)]

    def _build(self, with_word_index: bool) -> None:
        query = self.query
        if query.statuses:
            self.conditions.append(mails.c.status.in_(sorted(s.value for s in query.statuses)))
        if query.excluded_statuses:
            self.conditions.append(mails.c.status.not_in(sorted(s.value for s in query.excluded_statuses)))
        # The single-value filters are search terms too: one piece of SQL per kind of match.
        named = ((TermField.RECIPIENT, query.recipient), (TermField.SENDER, query.sender),
                 (TermField.SUBJECT, query.subject), (TermField.TEXT, query.text), (TermField.TAG, query.tag))
        terms = [SearchTerm(field, value) for field, value in named if value]
        if query.server:
            self.conditions.append(mails.c.server_name == query.server)
        if query.correlation_id:
            self.conditions.append(mails.c.correlation_id == query.correlation_id)
        if query.queued_after:
            self.conditions.append(mails.c.queued_at >= query.queued_after)
        if query.queued_before:
            self.conditions.append(mails.c.queued_at < query.queued_before)
        for term in (*terms, *query.terms):
            expression = _indexable(term) if with_word_index else None
            if expression is None:
                self.conditions.append(term_condition(term))
                continue
            like = term_condition(term)
            found = word_index.count_up_to(self._conn, expression, COMMON)
            self._indexed.append(_Indexed(expression, like, found, len(self.conditions)))
            self.conditions.append(like if found >= COMMON else mails.c.id.in_(word_index.hits(expression, like)))


def _indexable(term: SearchTerm) -> str | None:
    """The word index's query for a term it can answer; a negated term matches most mails, and a whole address
    or domain has the recipients' own indexes."""
    if term.negated or (term.field is TermField.RECIPIENT and _whole_address_or_domain(term.value)):
        return None
    needle = f",{term.value}," if term.field is TermField.TAG else term.value
    return word_index.match_expression(term.field, needle)


# A whole address (name@domain.tld) or a whole domain (@domain.tld), as `to:` takes them to mean that recipient
# or any recipient at that domain: no spaces, one @, a dot after it.
_WHOLE_ADDRESS = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_WHOLE_DOMAIN = re.compile(r"@[^\s@]+\.[^\s@]+")


def _whole_address_or_domain(value: str) -> bool:
    return bool(_WHOLE_ADDRESS.fullmatch(value) or _WHOLE_DOMAIN.fullmatch(value))


def _to_recipient(value: str) -> ColumnElement[bool]:
    """Mails to exactly this address, or to anyone at exactly this domain (any case), from the recipients'
    indexes; a part of an address (``ann``, ``@example``) matches any recipient containing it."""
    if _WHOLE_ADDRESS.fullmatch(value):
        return mails.c.id.in_(select(mail_recipients.c.mail_id)
                              .where(func.lower(mail_recipients.c.email) == value.lower()))
    if _WHOLE_DOMAIN.fullmatch(value):
        return mails.c.id.in_(select(mail_recipients.c.mail_id)
                              .where(mail_recipients.c.domain == value[1:].lower()))
    return _contains(mails.c.receiver, value)


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    """Case-insensitive substring; NULL counts as empty, so that a negated term keeps rows without a value."""
    return func.lower(func.coalesce(column, "")).like(_like(text), escape="\\")


def term_condition(term: SearchTerm) -> ColumnElement[bool]:
    """The term as a condition on the mail's own columns."""
    # Metadata columns only, never mail_contents: the content of a confidential mail must not be found
    # (nor its words guessed one by one) through a search, and the others' contents are not indexed.
    condition: ColumnElement[bool]
    if term.field is TermField.TEXT:
        condition = or_(_contains(mails.c.subject, term.value), _contains(mails.c.receiver, term.value))
    elif term.field is TermField.TAG:
        condition = _contains(mails.c.tags, "," + term.value + ",")
    elif term.field is TermField.RECIPIENT:
        condition = _to_recipient(term.value)
    else:
        column = {TermField.SENDER: mails.c.sender, TermField.SUBJECT: mails.c.subject,
                  TermField.SERVER: mails.c.server_name}[term.field]
        condition = _contains(column, term.value)
    return not_(condition) if term.negated else condition
