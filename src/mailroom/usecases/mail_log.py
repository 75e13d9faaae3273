"""The operator's view of the log: get, search, delete, retry and cancel mails."""

from __future__ import annotations

from collections.abc import Sequence

from mailroom.domain.log import LogPage, LogQuery
from mailroom.domain.outbox import MailStatus, OutgoingMail
from mailroom.domain.permissions import CANCEL_MAIL, DELETE_MAIL, READ_MAIL, RETRY_MAIL, Subject
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

    def delete(self, subject: Subject, mail_ids: Sequence[str]) -> int:
        subject.require(DELETE_MAIL)
        return self._log.delete(mail_ids)

    def retry(self, subject: Subject, mail_id: str) -> OutgoingMail:
        subject.require(RETRY_MAIL)
        mail = self._outbox.requeue(mail_id, self._clock.now())
        self._wakeup.notify()
        return mail

    def cancel(self, subject: Subject, mail_id: str) -> OutgoingMail:
        subject.require(CANCEL_MAIL)
        return self._outbox.cancel(mail_id, self._clock.now())
