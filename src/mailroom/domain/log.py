"""Searching the mail log: the query and one page of its answer."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from datetime import datetime

from mailroom.domain.outbox import MailStatus, OutgoingMail
from mailroom.errors import InvalidInput


class SortKey(enum.StrEnum):
    QUEUED_AT = "queued_at"
    SENT_AT = "sent_at"
    SUBJECT = "subject"
    STATUS = "status"
    RECEIVER = "receiver"
    SERVER = "server"
    ATTEMPTS = "attempts"


MAX_PAGE_SIZE = 500
MAX_OFFSET = 1_000_000_000
"""Paging deeper than this is no longer browsing (and a 64-bit OFFSET would overflow in the database)."""
COUNT_LIMIT = 1_000
"""A filtered search counts its mails up to this many (or to the end of the page asked for, if deeper): past
it the page says "more than" instead of reading the whole log for an exact figure."""


class TermField(enum.StrEnum):
    """What a search term is matched against (case-insensitive substring, except ``tag``: a whole tag)."""

    TEXT = "text"  # the subject or any recipient
    RECIPIENT = "to"
    SENDER = "from"
    SUBJECT = "subject"
    SERVER = "server"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """One condition of a free-form search; ``negated`` keeps the mails that do *not* match."""

    field: TermField
    value: str
    negated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", TermField(self.field))
        if not self.value:
            raise InvalidInput(f"an empty {self.field.value} search term matches everything", field="q")


KEYSET_SORTS = frozenset({SortKey.QUEUED_AT, SortKey.SUBJECT, SortKey.STATUS, SortKey.RECEIVER, SortKey.ATTEMPTS})
"""The orders a page can continue from a cursor: their columns are never NULL (sent_at and the server are)."""


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page of the log ended: the last mail's sort value and id, in that page's order. The next page
    starts right after it, as fast at the millionth mail as at the first (an offset reads every mail before
    it); mails added or removed meanwhile do not shift it."""

    sort: SortKey
    descending: bool
    value: datetime | str | int
    mail_id: str

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        text = json.dumps([self.sort.value, self.descending, value, self.mail_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """Raises InvalidInput (field ``after``) for anything ``encode`` did not make."""
        try:
            sort_name, descending, value, mail_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            sort = SortKey(sort_name)
            if sort not in KEYSET_SORTS or not isinstance(descending, bool) or not isinstance(mail_id, str):
                raise ValueError(sort_name)
            if sort is SortKey.QUEUED_AT:
                value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    raise ValueError(value)
            elif not isinstance(value, int if sort is SortKey.ATTEMPTS else str) or isinstance(value, bool):
                raise ValueError(value)
        except (ValueError, TypeError, UnicodeError, binascii.Error) as exc:
            raise InvalidInput("'after' is not a cursor this log gave out: use the next_after of a page",
                               field="after") from exc
        return cls(sort, descending, value, mail_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    """Filters combine with AND; ``text`` matches subject or any recipient, case-insensitively.

    ``statuses`` keeps mails in any of them, ``excluded_statuses`` drops mails in any of them; each of
    ``terms`` must hold (the search box's words and ``to:``, ``from:``, ... filters).
    """

    statuses: frozenset[MailStatus] = frozenset()
    excluded_statuses: frozenset[MailStatus] = frozenset()
    recipient: str | None = None
    sender: str | None = None
    text: str | None = None
    subject: str | None = None
    server: str | None = None
    tag: str | None = None
    correlation_id: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    terms: tuple[SearchTerm, ...] = ()
    sort: SortKey = SortKey.QUEUED_AT
    descending: bool = True
    offset: int = 0
    limit: int = 50
    with_total: bool = True
    after: str | None = None
    """A page's ``next_after``: continue right after that page's last mail, in the same order (no offset)."""

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"limit must lie between 1 and {MAX_PAGE_SIZE}", field="limit")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise InvalidInput(f"offset must lie between 0 and {MAX_OFFSET}", field="offset")
        for name in ("queued_after", "queued_before"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"{name} must be timezone-aware", field=name)
        try:
            object.__setattr__(self, "sort", SortKey(self.sort))
            object.__setattr__(self, "statuses", frozenset(MailStatus(s) for s in self.statuses))
            object.__setattr__(self, "excluded_statuses", frozenset(MailStatus(s) for s in self.excluded_statuses))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="sort") from exc
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.after is not None:
            cursor = self.cursor
            assert cursor is not None
            if self.offset:
                raise InvalidInput("give either 'after' or an offset, not both", field="after")
            if (cursor.sort, cursor.descending) != (self.sort, self.descending):
                raise InvalidInput("'after' continues another order: keep the sort and direction of the page "
                                   "that gave it", field="after")

    @property
    def cursor(self) -> PageCursor | None:
        return PageCursor.decode(self.after) if self.after is not None else None


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of a search. ``total`` is how many mails match, or, when ``total_exact`` is false, a number
    that more than that many match (the count stopped there); None when the query asked for no total."""

    items: list[OutgoingMail]
    total: int | None
    offset: int
    limit: int
    total_exact: bool = True
    next_after: str | None = None
    """The cursor of the page after this one (LogQuery.after), when the order allows it and more may follow."""


@dataclass(frozen=True, slots=True)
class HourlyCount:
    """Mails that finished as sent or failed within the hour starting at ``hour`` (UTC)."""

    hour: datetime
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class MailActivity:
    """What the overview shows: the queue now and what went out recently."""

    by_status: dict[MailStatus, int]
    sent_last_24h: int
    failed_last_24h: int
    hourly: list[HourlyCount]
    """One entry per hour, oldest first, the current (unfinished) hour last; hours without mail are zero."""
