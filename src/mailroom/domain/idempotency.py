"""Idempotent sends: a key the caller chooses names one mail for a while, so a retried request (a timeout,
a double click, a job run twice) queues nothing new and gets the first mail's id back.

A key belongs to its caller (the subject's user id, ``system`` for the application itself): two API users
cannot collide, nor learn of each other's mails through a guessed key. A key names one request: the same key
with a different mail is refused (IdempotencyConflict), as a client bug that would otherwise drop a mail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mailroom.domain.addresses import header_text_problem
from mailroom.domain.mail import Mail
from mailroom.domain.permissions import Subject
from mailroom.errors import InvalidInput

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A caller's key for one send.

    ``window``: how long the key holds (None: the ``idempotency_window_seconds`` setting); after it the
    key may name a new mail. ``request``: what the key stands for, compared when the key comes again; None
    means the mail itself (its fields, as a hash). A workflow whose mails differ by a fresh code each time
    (a password reset) names its request itself.
    """

    key: str
    window: timedelta | None = None
    request: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip():
            raise InvalidInput("an idempotency key must be a non-empty string", field="idempotency_key")
        if len(self.key) > MAX_KEY_LENGTH:
            raise InvalidInput(f"an idempotency key has at most {MAX_KEY_LENGTH} characters, not {len(self.key)}",
                               field="idempotency_key")
        problem = header_text_problem(self.key)
        if problem is not None:
            raise InvalidInput(f"the idempotency key cannot be used: {problem}", field="idempotency_key")
        if self.window is not None and self.window <= timedelta(0):
            raise InvalidInput("an idempotency window must be positive", field="idempotency_key")

    @classmethod
    def of(cls, key: str | IdempotencyKey | None) -> IdempotencyKey | None:
        return key if key is None or isinstance(key, IdempotencyKey) else cls(key)

    def request_hash(self, mail: Mail) -> str:
        """What two sends under this key must agree on."""
        if self.request is not None:
            return hashlib.sha256(b"request\x00" + self.request.encode()).hexdigest()
        return mail_fingerprint(mail)


def scope_of(subject: Subject) -> str:
    """Keys are per caller: the subject's user id (``system`` for the application)."""
    return subject.user_id or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyRecord:
    """A key as stored: which mail it named, for which request, and until when it holds."""

    scope: str
    key: str
    request_hash: str
    mail_id: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Queued:
    """The answer to a send: the mail's id, and whether this call queued it (False: an earlier call with
    the same idempotency key did, and nothing was queued now)."""

    mail_id: str
    new: bool = True


def mail_fingerprint(mail: Mail) -> str:
    """A SHA-256 over every field of the mail that changes what is sent or when (not the message id or
    date, which each send makes anew)."""
    fields: dict[str, Any] = {
        "to": [str(a) for a in mail.to], "cc": [str(a) for a in mail.cc], "bcc": [str(a) for a in mail.bcc],
        "sender": str(mail.sender) if mail.sender else None, "reply_to": [str(a) for a in mail.reply_to],
        "subject": mail.subject, "text": mail.text, "html": mail.html,
        "attachments": [[a.filename, a.content_type, a.inline, a.content_id, hashlib.sha256(a.content).hexdigest()]
                        for a in mail.attachments],
        "headers": sorted(mail.headers.items()), "smtp_hint": mail.smtp_hint, "priority": mail.priority.value,
        "send_at": mail.send_at.isoformat() if mail.send_at else None,
        "expires_at": mail.expires_at.isoformat() if mail.expires_at else None,
        "tags": list(mail.tags), "correlation_id": mail.correlation_id, "template": mail.template,
        "locale": mail.locale, "confidential": mail.confidential,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
