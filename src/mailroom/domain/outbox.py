"""The outgoing record: a mail's life in the queue and the log.

::

    queued ──claim──▶ sending ──2xx──▶ sent  (or partially_failed: some recipients refused for good)
      ▲                 │  └──5xx / attempts used up / expired──▶ failed
      │                 └──4xx, timeout, dropped──▶ deferred ──due──▶ sending
      └──────────── retry (failed) ◀──────────────────────────────┘
    failed / cancelled ──retry──▶ queued;  deferred ──retry──▶ deferred, due now
    queued / deferred ──cancel──▶ cancelled
"""

from __future__ import annotations

import enum
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mailroom.errors import Text


class MailStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    PARTIALLY_FAILED = "partially_failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


# A "sending" mail whose lease ran out is due again: its worker died.
CLAIMABLE_STATUSES = (MailStatus.QUEUED, MailStatus.DEFERRED, MailStatus.SENDING)
FINAL_STATUSES = frozenset({MailStatus.SENT, MailStatus.FAILED, MailStatus.PARTIALLY_FAILED, MailStatus.CANCELLED})
# Retrying a deferred mail means "now" rather than at its next attempt time.
RETRYABLE_STATUSES = frozenset({MailStatus.FAILED, MailStatus.CANCELLED, MailStatus.DEFERRED})
CANCELLABLE_STATUSES = frozenset({MailStatus.QUEUED, MailStatus.DEFERRED})


def new_claim_token(worker_id: str) -> str:
    """A claim's name: its worker, and a part of its own (a worker claims many times)."""
    return f"{worker_id}:{secrets.token_hex(6)}"


class RecipientKind(enum.StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DEFERRED = "deferred"  # refused for now (4xx at RCPT): the next attempt goes to it again
    REFUSED = "refused"  # refused for good (5xx), or still deferred when the attempts ran out

    @property
    def is_done(self) -> bool:
        """Whether later attempts leave this recipient out."""
        return self in (RecipientStatus.ACCEPTED, RecipientStatus.REFUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    """One envelope recipient and what the server said of it at the last attempt."""

    email: str
    kind: RecipientKind
    name: str = ""
    status: RecipientStatus = RecipientStatus.PENDING
    code: int | None = None
    reply: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    """One try to hand the mail to an SMTP server; kept so an operator sees why a mail failed."""

    number: int
    started_at: datetime
    duration_ms: int
    server_name: str | None
    outcome: MailStatus  # sent, partially_failed, deferred or failed
    code: int | None = None
    reply: str | None = None
    uncertain: bool = False
    """The server went silent after the whole message: it may have arrived (it is sent again by default)."""
    reply_text: Text | None = None
    """``reply`` as words to translate when they are mailroom's own (a dropped connection), not the server's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMail:
    """A mail in the queue or the log, as use cases return it."""

    id: str
    status: MailStatus
    subject: str
    sender: str | None
    recipients: tuple[RecipientResult, ...]
    priority: str
    queued_at: datetime
    next_attempt_at: datetime | None
    attempts: int
    last_error: str | None
    server_name: str | None
    message_id: str
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    smtp_hint: str | None = None
    tags: tuple[str, ...] = ()
    correlation_id: str | None = None
    template: str | None = None
    locale: str | None = None
    original_recipients: tuple[str, ...] = ()
    size_bytes: int = 0
    has_content: bool = True
    confidential: bool = False
    """Its content is never shown (see ``Mail.confidential``); everything else is."""
    attempt_log: tuple[DeliveryAttempt, ...] = field(default=())
    last_error_text: Text | None = None
    """``last_error`` as words to translate (template and values); None for errors stored before they were."""

    @property
    def receiver_summary(self) -> str:
        return ", ".join(r.email for r in self.recipients)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def time_ordered_id(at: datetime) -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: milliseconds since the epoch, then random bits.

    Mails are stored in the order they are queued, so ids that grow with time keep every index on them
    (mail rows, recipients, attempts, contents) appended at one end instead of written all over.
    (Python 3.14 has ``uuid.uuid7``; this is the same layout for 3.11.) The 12 bits after the version
    are the fraction of the millisecond (RFC 9562, 6.2 method 3), not random: an enqueue takes well under
    a millisecond, and a claim orders its batch by id.
    """
    millis, micros = divmod((at - _EPOCH) // _MICROSECOND, 1000)  # integers: a float would round across ms
    value = ((millis & (1 << 48) - 1) << 80 | (micros * 4096 // 1000) << 64
             | int.from_bytes(os.urandom(8), "big"))
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return f"{value:032x}"

