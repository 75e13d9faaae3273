"""Searching the mail log: the query and one page of its answer."""

from __future__ import annotations

import enum
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


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    """Filters combine with AND; ``text`` matches subject or any recipient, case-insensitively."""

    statuses: frozenset[MailStatus] = frozenset()
    recipient: str | None = None
    text: str | None = None
    subject: str | None = None
    server: str | None = None
    tag: str | None = None
    correlation_id: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None
    sort: SortKey = SortKey.QUEUED_AT
    descending: bool = True
    offset: int = 0
    limit: int = 50
    with_total: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"limit must lie between 1 and {MAX_PAGE_SIZE}", field="limit")
        if self.offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        for name in ("queued_after", "queued_before"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"{name} must be timezone-aware", field=name)
        try:
            object.__setattr__(self, "sort", SortKey(self.sort))
            object.__setattr__(self, "statuses", frozenset(MailStatus(s) for s in self.statuses))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="sort") from exc


@dataclass(frozen=True, slots=True)
class LogPage:
    items: list[OutgoingMail]
    total: int | None
    offset: int
    limit: int
