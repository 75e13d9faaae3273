"""Send mail: validate, render to MIME, store in the queue, wake a worker. Never talks to SMTP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from mailroom.domain.idempotency import IdempotencyKey, IdempotencyRecord, Queued, scope_of
from mailroom.domain.mail import Mail
from mailroom.domain.outbox import RecipientKind, RecipientResult, time_ordered_id
from mailroom.domain.permissions import SEND_MAIL, Subject
from mailroom.domain.staging import StagingPolicy
from mailroom.errors import AttachmentTooLarge, IdempotencyConflict, InvalidInput
from mailroom.ports import Clock, MessageBuilder, NewOutgoing, Outbox, Wakeup


class SendMail:
    def __init__(self, *, outbox: Outbox, builder: MessageBuilder, clock: Clock, wakeup: Wakeup,
                 staging: StagingPolicy, max_attachment_bytes: int, max_message_bytes: int,
                 idempotency_window: timedelta = timedelta(hours=24)) -> None:
        self._outbox = outbox
        self._builder = builder
        self._clock = clock
        self._wakeup = wakeup
        self._staging = staging
        self._max_attachment_bytes = max_attachment_bytes
        self._max_message_bytes = max_message_bytes
        self._idempotency_window = idempotency_window

    def __call__(self, subject: Subject, mail: Mail, *, idempotency_key: str | IdempotencyKey | None = None) -> str:
        """Queue one mail; returns its id. With an idempotency key, a repeat within the key's window returns
        the first mail's id and queues nothing (see ``queue``)."""
        return self.queue(subject, mail, idempotency_key=idempotency_key).mail_id

    def queue(self, subject: Subject, mail: Mail, *,
              idempotency_key: str | IdempotencyKey | None = None) -> Queued:
        """Queue one mail and say whether this call queued it.

        Without a key this is one insert, as ``bulk``. With one, the key and the mail are written in one
        transaction, and the store's unique key decides among concurrent calls: the first queues, the others
        get its id. A key that names a different request raises IdempotencyConflict.
        """
        key = IdempotencyKey.of(idempotency_key)
        if key is None:
            return Queued(self.bulk(subject, [mail])[0])
        subject.require(SEND_MAIL)
        prepared = self.prepare(mail)
        now = prepared.queued_at
        record = IdempotencyRecord(scope=scope_of(subject), key=key.key, request_hash=key.request_hash(mail),
                                   mail_id=prepared.id, created_at=now,
                                   expires_at=now + (key.window or self._idempotency_window))
        held = self._outbox.add_once(prepared, record)
        if held.mail_id == prepared.id:
            self._wakeup.notify()
            return Queued(prepared.id)
        if held.request_hash != record.request_hash:
            raise IdempotencyConflict(key.key, held.mail_id)
        return Queued(held.mail_id, new=False)

    def bulk(self, subject: Subject, mails: Sequence[Mail]) -> list[str]:
        """Queue many mails in one transaction: all are stored, or (on any invalid mail) none."""
        subject.require(SEND_MAIL)
        prepared = [self.prepare(mail) for mail in mails]
        self._outbox.add(prepared)
        self._wakeup.notify()
        return [p.id for p in prepared]

    def prepare(self, mail: Mail) -> NewOutgoing:
        if not isinstance(mail, Mail):
            raise InvalidInput(f"expected a Mail, got {type(mail).__name__}")
        for attachment in mail.attachments:
            if attachment.size > self._max_attachment_bytes:
                raise AttachmentTooLarge(attachment.filename, attachment.size, self._max_attachment_bytes)
        now = self._clock.now()
        message_id = self._builder.make_message_id(mail)
        message = self._builder.build(mail, message_id=message_id, date=now)
        if len(message) > self._max_message_bytes:
            raise InvalidInput(f"the message has {len(message)} bytes, over the limit of "
                               f"{self._max_message_bytes} (MAILROOM_MAX_MESSAGE_BYTES)", field="attachments")
        kinds = {**{a.email: RecipientKind.BCC for a in mail.bcc}, **{a.email: RecipientKind.CC for a in mail.cc},
                 **{a.email: RecipientKind.TO for a in mail.to}}
        envelope = self._staging.envelope(mail.recipients)
        original: tuple[str, ...] = ()
        if envelope != mail.recipients:
            original = tuple(a.email for a in mail.recipients)
            if not envelope:
                raise InvalidInput(f"staging allows none of the recipients ({', '.join(original)}) and no "
                                   "MAILROOM_STAGING_REDIRECT_TO is set", field="to")
        recipients = tuple(
            RecipientResult(email=a.email, name=a.name, kind=kinds.get(a.email, RecipientKind.TO))
            for a in envelope
        )
        return NewOutgoing(id=time_ordered_id(now), mail=mail, message=message, message_id=message_id, queued_at=now,
                           recipients=recipients, original_recipients=original)
