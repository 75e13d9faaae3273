"""What an SMTP attempt's result means for the mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailroom.domain.outbox import MailStatus
from mailroom.domain.retry import RetryPolicy
from mailroom.errors import DeliveryError


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    status: MailStatus
    next_attempt_at: datetime | None
    error: str | None


def judge(error: DeliveryError | None, *, attempts_made: int, policy: RetryPolicy, now: datetime,
          expires_at: datetime | None = None) -> Verdict:
    """Sent on success; failed on a permanent error, used-up attempts or a retry past expiry; else deferred."""
    if error is None:
        return Verdict(status=MailStatus.SENT, next_attempt_at=None, error=None)
    message = str(error)
    if not error.temporary:
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None, error=message)
    if policy.exhausted(attempts_made):
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None,
                       error=f"gave up after {attempts_made} attempts: {message}")
    retry_at = policy.next_attempt_at(attempts_made, now)
    if expires_at is not None and retry_at >= expires_at:
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None,
                       error=f"expired: the next try would come after {expires_at.isoformat()}: {message}")
    return Verdict(status=MailStatus.DEFERRED, next_attempt_at=retry_at, error=message)
