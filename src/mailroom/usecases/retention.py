"""Retention: drop old content first, then old log rows, one small batch at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from mailroom.domain.outbox import MailStatus
from mailroom.ports import Clock, Retention


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """Days to keep; a negative number keeps forever."""

    keep_sent_days: float
    keep_failed_days: float
    keep_content_days: float
    batch_size: int


class PurgeExpired:
    def __init__(self, *, store: Retention, clock: Clock, policy: RetentionPolicy) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy

    def run_batch(self) -> int:
        """Purge at most one batch of each kind; returns how many rows went. Call again while > 0."""
        now = self._clock.now()
        policy = self._policy
        purged = 0
        if policy.keep_content_days >= 0:
            purged += self._store.purge_contents(
                finished_before=now - timedelta(days=policy.keep_content_days), batch_size=policy.batch_size)
        # Keys past their window answer nothing any more (a new mail may take them): their rows can go.
        purged += self._store.purge_idempotency_keys(expired_before=now, batch_size=policy.batch_size)
        for status, days in ((MailStatus.SENT, policy.keep_sent_days), (MailStatus.FAILED, policy.keep_failed_days),
                             (MailStatus.PARTIALLY_FAILED, policy.keep_failed_days),
                             (MailStatus.CANCELLED, policy.keep_failed_days)):
            if days >= 0:
                purged += self._store.purge_mails(status=status, finished_before=now - timedelta(days=days),
                                                  batch_size=policy.batch_size)
        return purged
