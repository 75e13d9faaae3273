"""The operator's view of the log: get, search, delete, retry and cancel mails."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta

from mailroom.domain.log import MAX_PAGE_SIZE, HourlyCount, LogPage, LogQuery, MailActivity
from mailroom.domain.outbox import MailStatus, OutgoingMail
from mailroom.domain.permissions import CANCEL_MAIL, DELETE_MAIL, READ_MAIL, RETRY_MAIL, Subject
from mailroom.errors import InvalidInput
from mailroom.ports import Clock, MailLog, Outbox, Wakeup


class MailLogUseCases:
    def __init__(self, *, log: MailLog, outbox: Outbox, clock: Clock, wakeup: Wakeup) -> None:
        self._log = log
        self._outbox = outbox
        self._clock = clock
        self._wakeup = wakeup

    def get(self, subject: Subject, mail_id: str) -> OutgoingMail:
        subject.require(READ_MAIL)
        return self._log.get(mail_id)

    def raw_message(self, subject: Subject, mail_id: str) -> bytes | None:
        """The message as stored (an .eml), or None once retention dropped it."""
        subject.require(READ_MAIL)
        return self._log.raw_message(mail_id)

    def search(self, subject: Subject, query: LogQuery | None = None) -> LogPage:
        subject.require(READ_MAIL)
        return self._log.search(query or LogQuery())

    def counts(self, subject: Subject) -> dict[MailStatus, int]:
        subject.require(READ_MAIL)
        return self._log.counts_by_status()

    def statuses(self, subject: Subject, mail_ids: Sequence[str]) -> dict[str, MailStatus]:
        """The status of each of these mails that exists (a page of the log follows its mails with it)."""
        subject.require(READ_MAIL)
        if len(mail_ids) > MAX_PAGE_SIZE:
            raise InvalidInput(f"ask for at most {MAX_PAGE_SIZE} mails at a time", field="mail_ids")
        return self._log.statuses(mail_ids)

    def activity(self, subject: Subject, *, hours: int = 48) -> MailActivity:
        """Counts per status, sent and failed in the last 24 hours, and sent / failed per hour for the
        last ``hours`` hours (the current hour included)."""
        subject.require(READ_MAIL)
        if not 1 <= hours <= 24 * 31:
            raise InvalidInput("hours must lie between 1 and 744 (31 days)", field="hours")
        now = self._clock.now().astimezone(UTC)  # the store's hours are UTC hours
        current_hour = now.replace(minute=0, second=0, microsecond=0)
        first_hour = current_hour - timedelta(hours=hours - 1)
        found = {count.hour: count for count in self._log.hourly_counts(first_hour)}
        hourly = [found.get(hour, HourlyCount(hour=hour))
                  for hour in (first_hour + timedelta(hours=n) for n in range(hours))]
        # A second query from exactly 24 h ago: summing whole hours would count up to an hour too much.
        last_day = self._log.hourly_counts(now - timedelta(hours=24))
        return MailActivity(by_status=self._log.counts_by_status(),
                            sent_last_24h=sum(c.sent for c in last_day),
                            failed_last_24h=sum(c.failed for c in last_day),
                            hourly=hourly)

    def delete(self, subject: Subject, mail_ids: Sequence[str]) -> int:
        subject.require(DELETE_MAIL)
        return self._log.delete(mail_ids)

    def retry(self, subject: Subject, mail_id: str) -> OutgoingMail:
        """Queue a failed or cancelled mail again, or try a deferred one now instead of at its next attempt."""
        subject.require(RETRY_MAIL)
        mail = self._outbox.requeue(mail_id, self._clock.now())
        self._wakeup.notify()
        return mail

    def cancel(self, subject: Subject, mail_id: str) -> OutgoingMail:
        subject.require(CANCEL_MAIL)
        return self._outbox.cancel(mail_id, self._clock.now())
