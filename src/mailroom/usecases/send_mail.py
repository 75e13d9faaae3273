"""Send mail: validate, render to MIME, store in the queue, wake a worker. Never talks to SMTP.

What is stored is what goes out: a mail without a From gets the sender address of the SMTP server it
will go through (the hinted one, else the first by priority that has one) when it is queued, and its
Message-ID the domain of that From. A mail that no server could give a From is refused (NoSenderAddress);
one queued while no server is enabled at all waits, and says so in its last error from the start.

The enabled servers are read through ``SendingServers``, a copy at most a couple of seconds old, so that
``send_mail`` costs no extra database round trip: the enqueue path is measured in thousands per second.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from mailroom.domain.addresses import Address
from mailroom.domain.idempotency import IdempotencyKey, IdempotencyRecord, Queued, scope_of
from mailroom.domain.mail import Mail
from mailroom.domain.outbox import RecipientKind, RecipientResult, time_ordered_id
from mailroom.domain.permissions import READ_MAIL, SEND_MAIL, Subject
from mailroom.domain.servers import ServerSettings, SmtpServer, servers_to_try
from mailroom.domain.staging import StagingPolicy
from mailroom.errors import (
    AttachmentTooLarge,
    IdempotencyConflict,
    InvalidInput,
    NoSenderAddress,
    NoServerConfigured,
    PermissionDenied,
    Text,
)
from mailroom.ports import Clock, MessageBuilder, NewOutgoing, Outbox, ServerStore, Wakeup

# How old the copy of the enabled servers may be. A server enabled in another process within this time
# may leave a mail marked "no enabled SMTP server" until the worker takes it (which it does anyway); one
# whose sender changed may lend its old sender to a mail. Changes made in this process apply at once.
SERVERS_MAX_AGE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class SendingReadiness:
    """Whether mails queued now can go out: the enabled servers, and the From a mail without one gets."""

    enabled_servers: tuple[str, ...]
    default_sender: str | None

    @property
    def can_deliver(self) -> bool:
        """Whether a server is enabled: else mails wait in the queue."""
        return bool(self.enabled_servers)

    @property
    def fills_missing_from(self) -> bool:
        """Whether a mail without a From is accepted (a server lends it its sender address)."""
        return self.default_sender is not None or not self.enabled_servers


class SendingServers:
    """The enabled SMTP servers as ``send_mail`` sees them: read from the store at most every
    ``max_age_seconds``, and at once after a change through this object.

    It is a ServerStore itself: the SMTP server use cases of the same process write through it, so their
    changes are never served stale here.
    """

    def __init__(self, store: ServerStore, *, max_age_seconds: float = SERVERS_MAX_AGE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._enabled: tuple[SmtpServer, ...] = ()
        self._senders: dict[str, Address] = {}
        self._read_at: float | None = None

    def enabled(self, *, fresh: bool = False) -> tuple[SmtpServer, ...]:
        """The enabled servers; ``fresh`` reads them from the store whatever the age of the copy."""
        read_at = self._read_at
        if fresh or read_at is None or self._monotonic() - read_at > self._max_age:
            with self._lock:
                if fresh or self._read_at is None or self._read_at == read_at:
                    self._refresh()
        return self._enabled

    def sender_for(self, hint: str | None, *, fresh: bool = False) -> Address | None:
        """The From of a mail that names none: the sender address of the first server it may go through that
        has one (the hinted server first, then by priority, as the worker tries them)."""
        for server in servers_to_try(self.enabled(fresh=fresh), hint):
            found = self._senders.get(server.id)
            if found is not None:
                return found
        return None

    def invalidate(self) -> None:
        self._read_at = None

    def _refresh(self) -> None:
        enabled = tuple(server for server in self._store.list() if server.enabled)
        senders: dict[str, Address] = {}
        for server in enabled:
            address = server.from_address
            if address:
                try:
                    senders[server.id] = Address.parse(address, field="sender")
                except InvalidInput:
                    continue  # a username that only looks like an address; the worker says so if it matters
        self._enabled, self._senders = enabled, senders
        self._read_at = self._monotonic()

    # --- ServerStore, writing through -----------------------------------------------------------

    def list(self) -> builtins.list[SmtpServer]:
        return self._store.list()

    def get(self, name_or_id: str) -> SmtpServer:
        return self._store.get(name_or_id)

    def add(self, settings: ServerSettings, password: str | None) -> SmtpServer:
        try:
            return self._store.add(settings, password)
        finally:
            self.invalidate()

    def update(self, server_id: str, settings: ServerSettings, password: str | None) -> SmtpServer:
        try:
            return self._store.update(server_id, settings, password)
        finally:
            self.invalidate()

    def remove(self, server_id: str) -> None:
        try:
            self._store.remove(server_id)
        finally:
            self.invalidate()

    def password(self, server_id: str) -> str | None:
        return self._store.password(server_id)


class SendMail:
    def __init__(self, *, outbox: Outbox, builder: MessageBuilder, clock: Clock, wakeup: Wakeup,
                 staging: StagingPolicy, max_attachment_bytes: int, max_message_bytes: int,
                 idempotency_window: timedelta = timedelta(hours=24), servers: SendingServers | None = None) -> None:
        """Without ``servers`` mails are stored as given: a missing From is left to the delivering server."""
        self._servers = servers
        self._outbox = outbox
        self._builder = builder
        self._clock = clock
        self._wakeup = wakeup
        self._staging = staging
        self._max_attachment_bytes = max_attachment_bytes
        self._max_message_bytes = max_message_bytes
        self._idempotency_window = idempotency_window
        self._no_server_texts: dict[str | None, Text] = {}

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

    def readiness(self, subject: Subject) -> SendingReadiness | None:
        """Whether a mail queued now can go out, for pages that warn before sending (the servers as of a
        moment ago, as ``send_mail`` sees them); None when this use case does not look at the servers."""
        if not (subject.has(SEND_MAIL) or subject.has(READ_MAIL)):
            raise PermissionDenied(SEND_MAIL, subject.user_id)
        if self._servers is None:
            return None
        enabled = self._servers.enabled()
        sender = self._servers.sender_for(None)
        return SendingReadiness(enabled_servers=tuple(s.name for s in enabled),
                                default_sender=str(sender) if sender else None)

    def prepare(self, mail: Mail) -> NewOutgoing:
        if not isinstance(mail, Mail):
            raise InvalidInput(f"expected a Mail, got {type(mail).__name__}")
        for attachment in mail.attachments:
            if attachment.size > self._max_attachment_bytes:
                raise AttachmentTooLarge(attachment.filename, attachment.size, self._max_attachment_bytes)
        waiting_for: Text | None = None
        if self._servers is not None:
            if mail.sender is None:
                mail = self._with_server_sender(mail)
            if not self._servers.enabled():
                waiting_for = self._waiting_for_a_server(mail.smtp_hint)
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
                           recipients=recipients, original_recipients=original, last_error=waiting_for)

    def _waiting_for_a_server(self, hint: str | None) -> Text:
        """Why a mail queued now waits: one Text per hint, so that a batch shares it and the store renders
        and encodes it once (per mail it was a fifth of send_mails' CPU while no server exists)."""
        found = self._no_server_texts.get(hint)
        if found is None:
            if len(self._no_server_texts) >= 64:  # hints are server names; a caller inventing them stays bounded
                self._no_server_texts.clear()
            found = self._no_server_texts[hint] = NoServerConfigured(hint).text
        return found

    def _with_server_sender(self, mail: Mail) -> Mail:
        """The mail with the From its server will give it; as it is while no server is enabled at all."""
        assert self._servers is not None
        sender = self._servers.sender_for(mail.smtp_hint)
        if sender is None:  # the copy may predate a server's sender: look again before refusing
            sender = self._servers.sender_for(mail.smtp_hint, fresh=True)
        if sender is not None:
            return mail.with_changes(sender=sender)
        enabled = self._servers.enabled()
        if enabled:
            raise NoSenderAddress([server.name for server in enabled])
        return mail  # it waits for a server (its last error says so), and takes that server's sender
