"""The small interfaces the core depends on; adapters implement them.

Storage ports are synchronous (SQLAlchemy sessions); the worker calls them from a thread. The SMTP
transport and the wake-up signal are asynchronous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mailroom.domain.idempotency import IdempotencyRecord
from mailroom.domain.log import HourlyCount, LogPage, LogQuery
from mailroom.domain.mail import Mail
from mailroom.domain.outbox import DeliveryAttempt, MailStatus, OutgoingMail, RecipientResult
from mailroom.domain.rate_limits import Denial, LimitScope, LimitUse, RateLimit
from mailroom.domain.servers import ServerSettings, SmtpServer
from mailroom.domain.sessions import LoginSession, ThrottleKey
from mailroom.domain.stored_secrets import SecretBatch, SecretKind
from mailroom.domain.templates import RenderedTemplate, SecretExposure, Template, TemplateSet, TemplateVersion
from mailroom.domain.users import ApiToken, OneTimeCode, Role, User
from mailroom.errors import Text

# --- values that cross the ports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOutgoing:
    """A mail ready to be stored: validated, rendered to MIME, with its envelope decided."""

    id: str
    mail: Mail
    message: bytes
    message_id: str
    queued_at: datetime
    recipients: tuple[RecipientResult, ...]
    original_recipients: tuple[str, ...] = ()
    last_error: Text | None = None
    """Why it cannot go out yet, known when it is queued (no enabled SMTP server)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedMail:
    """What a worker needs to deliver one mail; ``claim_token`` fences its result against a lost lease."""

    id: str
    claim_token: str
    message: bytes | None
    envelope_sender: str | None
    recipients: tuple[str, ...]
    smtp_hint: str | None
    attempts: int
    expires_at: datetime | None
    has_from_header: bool
    accepted_before: int = 0
    """Recipients accepted at earlier attempts; they are not in ``recipients``."""
    refused_before: int = 0
    """Recipients refused for good at earlier attempts; they are not in ``recipients``."""

    @property
    def all_recipients(self) -> bool:
        """Whether ``recipients`` is the whole envelope (no earlier attempt settled any of it)."""
        return not (self.accepted_before or self.refused_before)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """The outcome of one attempt, written back by the worker."""

    mail_id: str
    claim_token: str
    status: MailStatus
    next_attempt_at: datetime | None
    error: Text | None
    """Why the mail is not (yet) sent; the store keeps its English and the Text for the edges to translate."""
    attempt: DeliveryAttempt
    recipients: dict[str, tuple[str, int | None, str | None]] = field(default_factory=dict)
    """Per recipient e-mail of this attempt: (RecipientStatus value, SMTP code, reply text)."""
    all_recipients: bool = True
    """Whether ``recipients`` covers the whole envelope (else only those this attempt went to)."""
    attempted: bool = True
    """False when the mail was settled without being sent (expired, content gone, out of attempts): the
    claim's count is taken back and no attempt is logged, so ``attempts`` never exceeds the limit."""
    lent_from: tuple[str, bytes, str | None] | None = None
    """(From, message, new Message-ID or None) of a mail queued without a From that went out with the
    delivering server's: the log's copy takes that message and Message-ID, so it shows the bytes that were
    sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReport:
    """A server's answer to one message: the reply to DATA, and the recipients it refused at RCPT.

    ``refused`` holds temporary (4xx) and permanent (5xx) refusals alike, each with its own answer;
    ``code`` is None when no recipient was accepted, so no DATA was sent.
    """

    code: int | None
    reply: str
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeStep:
    """One step of a connection test (connect, EHLO, STARTTLS, login)."""

    name: str
    ok: bool
    detail: str
    text: Text | None = None
    """``detail`` as message id and params, for an edge that translates it."""


# --- ports -----------------------------------------------------------------------------------------


class Outbox(Protocol):
    """The queue side of the mail store."""

    def add(self, mails: Sequence[NewOutgoing]) -> None:
        """Store all mails in one transaction and signal waiting workers."""

    def add_once(self, mail: NewOutgoing, record: IdempotencyRecord) -> IdempotencyRecord:
        """Store the mail under an idempotency key, unless the key already names a mail and has not expired.

        Returns the record that holds the key afterwards: ``record`` itself when the mail was stored, else
        the earlier one (and nothing was stored). Atomic against concurrent calls with the same key: one
        stores, the others get its record. An expired record is replaced.
        """

    def claim(self, *, worker_id: str, limit: int, now: datetime, lease_seconds: float,
              max_bytes: int | None = None, token: str | None = None) -> list[ClaimedMail]:
        """Take up to ``limit`` due mails, highest priority first, leasing them until now + lease; with
        ``max_bytes``, stop before the messages add up to more (the first mail comes however large).

        ``token`` names the claim (``new_claim_token``; a new one if not given), so that a caller who never
        heard back can take it up with ``resume_claim``.
        """

    def resume_claim(self, token: str, *, now: datetime, lease_seconds: float) -> list[ClaimedMail]:
        """The mails a claim under ``token`` still holds, their lease renewed until now + lease.

        For a claim whose commit went through while the connection to the database was lost, so that the
        caller saw an error: [] when that claim never happened (or its mails are done).
        """

    def record(self, results: Sequence[DeliveryResult], *, again: bool = False) -> None:
        """Write attempts and statuses; a result whose claim was lost is written as an attempt only.

        ``again``: an earlier call with these results may have been committed unseen (the connection dropped
        during the commit); attempts already written are not written twice.
        """

    def release(self, claims: Sequence[ClaimedMail], *, retry_at: datetime, error: Text | None = None) -> None:
        """Give unsent claims back to the queue without counting an attempt (shutdown, no server)."""

    def extend_leases(self, claims: Sequence[ClaimedMail], *, until: datetime) -> set[str]:
        """Renew the lease of mails this worker still holds (same claim token); returns their ids.

        A mail missing from the answer was taken over by another worker (or finished): do not send it.
        """

    def next_due_at(self) -> datetime | None:
        """When the earliest claimable mail becomes due, or None when the queue is empty."""

    def requeue(self, mail_id: str, now: datetime) -> OutgoingMail:
        """Queue a failed or cancelled mail again; make a deferred one due now (attempts and answers kept)."""

    def cancel(self, mail_id: str, now: datetime) -> OutgoingMail:
        """Stop a queued or deferred mail."""


class MailLog(Protocol):
    """The reading side of the mail store."""

    def get(self, mail_id: str) -> OutgoingMail:
        """One mail with its recipients and attempts; raises MailNotFound."""

    def raw_message(self, mail_id: str) -> bytes | None:
        """The stored MIME message, or None once retention dropped the content; raises
        ConfidentialContent for a confidential mail, whatever is stored."""

    def search(self, query: LogQuery) -> LogPage:
        """One page of mails matching the query."""

    def delete(self, mail_ids: Sequence[str]) -> int:
        """Remove mails with their recipients, attempts and content; returns how many existed."""

    def counts_by_status(self) -> dict[MailStatus, int]:
        """How many mails are in each status."""

    def statuses(self, mail_ids: Sequence[str]) -> dict[str, MailStatus]:
        """The status of each of these mails that exists; the others are left out."""

    def hourly_counts(self, since: datetime) -> list[HourlyCount]:
        """Sent and failed mails per UTC hour among those finished at or after ``since``, oldest first;
        hours without such mails are left out. The first hour counts only mails from ``since`` on."""


class Retention(Protocol):
    def purge_mails(self, *, status: MailStatus, finished_before: datetime, batch_size: int) -> int:
        """Delete one batch of finished mails older than the cut-off; returns how many."""

    def purge_contents(self, *, finished_before: datetime, batch_size: int) -> int:
        """Drop bodies and attachments of one batch of finished mails, keeping their log rows."""

    def purge_idempotency_keys(self, *, expired_before: datetime, batch_size: int) -> int:
        """Delete one batch of idempotency keys whose window ended before the cut-off."""


class SearchIndex(Protocol):
    """An index of the log the worker keeps up to date off the enqueue path (SQLite's word index)."""

    def index_for_search(self, limit: int) -> int:
        """Index up to ``limit`` mails not indexed yet; returns how many (0: nothing left to do)."""


class RateLimits(Protocol):
    """Rate limits per server and per recipient domain, held in storage so every worker shares them."""

    def rules(self) -> dict[LimitScope, tuple[RateLimit, ...]]: ...

    def set_limits(self, scope: LimitScope, limits: Sequence[RateLimit]) -> None:
        """Replace the scope's limits (none: remove them); the sends already counted are kept."""
        ...

    def reserve(self, scopes: Sequence[LimitScope], now: datetime) -> Denial | None:
        """Count one mail against every limit of ``scopes`` at ``now``, all or none: None when it may go,
        else the denial of the limit that frees up last."""
        ...

    def sent(self, scopes: Sequence[LimitScope], reserved_at: datetime, now: datetime) -> None:
        """The mail reserved at ``reserved_at`` is out: its count moves to ``now``, when the server had it, so
        that the next mail on that count waits a full window after this one arrived, not after it started."""
        ...

    def usage(self, now: datetime) -> list[LimitUse]: ...


class ServerStore(Protocol):
    def list(self) -> list[SmtpServer]: ...

    def get(self, name_or_id: str) -> SmtpServer:
        """Raises ServerNotFound."""

    def add(self, settings: ServerSettings, password: str | None) -> SmtpServer: ...

    def update(self, server_id: str, settings: ServerSettings, password: str | None) -> SmtpServer:
        """A ``None`` password keeps the stored one; an empty string removes it."""

    def remove(self, server_id: str) -> None: ...

    def password(self, server_id: str) -> str | None:
        """The decrypted password; only the transport ever sees it."""


class SecretBox(Protocol):
    def encrypt(self, plaintext: str) -> bytes: ...

    def decrypt(self, token: bytes) -> str:
        """Raises SecretError when no configured key opens the token."""


class ContentSealer(Protocol):
    """Encrypts the messages of confidential mails at rest (the same keys as the SMTP passwords)."""

    def seal(self, content: bytes) -> bytes: ...

    def open(self, sealed: bytes) -> bytes:
        """Raises SecretError when no configured key opens it."""


class KeyRing(Protocol):
    """The configured secret keys, for re-encrypting what was sealed with an older one."""

    def rotate(self, token: bytes) -> bytes | None:
        """The token encrypted under the first key, or None when it already is; raises SecretError when no
        configured key opens it."""

    def can_open(self, token: bytes) -> bool: ...


class StoredSecrets(Protocol):
    """Every encrypted value in storage (SMTP passwords, confidential mail contents), walked in batches of
    one short transaction each, so that workers using them are never held up for long."""

    def rotate_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        """Re-encrypt up to ``limit`` secrets of ``kind`` (ids after ``after``) under the first key. A value
        changed meanwhile (a new password) is left to its writer."""

    def check_batch(self, kind: SecretKind, *, after: str | None, limit: int) -> SecretBatch:
        """Look at up to ``limit`` secrets of ``kind`` (ids after ``after``) and report those no key opens."""


class SmtpSession(Protocol):
    """One open, logged-in connection; its owner (one sender task) reconnects when it is gone."""

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        """Send one message; raises DeliveryError subclasses for what concerns the whole mail."""

    async def ensure_alive(self) -> bool:
        """Whether the connection can take the next mail (checked with NOOP after an idle spell)."""

    async def close(self) -> None:
        """QUIT and close; never raises. Cancelled while waiting for QUIT's answer, it still closes the
        connection (the worker cuts it so at the end of its grace period)."""


class Transport(Protocol):
    async def connect(self, server: SmtpServer, password: str | None, *, sender: str | None = None) -> SmtpSession:
        """Open and log in; raises SmtpConnectError or SmtpAuthError. ``sender`` helps choose the EHLO name."""

    async def probe(self, server: SmtpServer, password: str | None) -> list[ProbeStep]:
        """Connect, EHLO, STARTTLS and log in, reporting each step; never raises for SMTP trouble."""


class MessageBuilder(Protocol):
    def build(self, mail: Mail, *, message_id: str, date: datetime) -> bytes:
        """The MIME message (without Bcc) in SMTP wire form."""

    def with_from(self, message: bytes, sender: str) -> tuple[bytes, str | None]:
        """Add a From header to a message that has none; returns the message and, when its Message-ID had to
        change with it (one made while no domain was known takes the sender's), the new Message-ID."""

    def make_message_id(self, mail: Mail) -> str: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware current time."""


class Wakeup(Protocol):
    def notify(self) -> None:
        """Tell waiting workers that mail is due; callable from any thread."""

    async def wait(self, timeout: float | None) -> bool:
        """Wait until notified or the timeout passes; True when notified."""


class TemplateStore(Protocol):
    """Template sets, their templates per locale, and every saved version."""

    def list_sets(self) -> list[TemplateSet]: ...

    def get_set(self, set_id: str) -> TemplateSet:
        """Raises TemplateSetNotFound."""

    def save_set(self, template_set: TemplateSet) -> None:
        """Create or update the set's name, description, tags and default locale."""

    def delete_set(self, set_id: str) -> None:
        """Remove the set with its templates and versions."""

    def list_templates(self, set_id: str) -> list[Template]: ...

    def get_template(self, set_id: str, name: str, locale: str) -> Template:
        """Raises TemplateNotFound."""

    def save_template(self, template: Template, *, saved_by: str | None, now: datetime,
                      only_if_missing: bool = False) -> Template:
        """Store a new version (the previous one stays in the history); returns it with its version number.

        With ``only_if_missing`` nothing is written when the template exists (for built-in defaults).
        """

    def delete_template(self, set_id: str, name: str, locale: str | None) -> int:
        """Remove one locale (or all, with None); returns how many were removed."""

    def versions(self, set_id: str, name: str, locale: str) -> list[TemplateVersion]:
        """Newest first; the current state is the first."""


class TemplateRenderer(Protocol):
    def check(self, template: Template) -> None:
        """Raise TemplateSyntaxError (with the line) when the template does not compile."""

    def variables_used(self, template: Template, partials: Sequence[Template]) -> set[str]:
        """The model variables the template (with the partials it uses) refers to."""

    def render(self, template: Template, partials: Sequence[Template], model: dict[str, object]) -> RenderedTemplate:
        """Subject, HTML and text; text derived from HTML when the template has none."""

    def exposed_secrets(self, template: Template, partials: Sequence[Template],
                        secrets: frozenset[str]) -> list[SecretExposure]:
        """Where the HTML puts one of ``secrets`` into something a mail client loads by itself."""

    def choose_locale(self, requested: str | None, available: Sequence[str], default: str) -> str:
        """The best available locale for a requested one (de_DE → de-DE → de → default)."""


class UserStore(Protocol):
    """Users, their roles and password hashes, login failures, and the workflows' one-time codes."""

    def add(self, user: User, password_hash: str | None) -> None:
        """Raises DuplicateEmail when the address (compared case-insensitively) is taken."""

    def get(self, user_id: str) -> User:
        """Raises UserNotFound."""

    def find_by_email(self, email: str) -> User | None: ...

    def all_users(self) -> list[User]: ...

    def count(self) -> int: ...

    def remove(self, user_id: str) -> None: ...

    def update(self, user: User) -> None:
        """Write profile, flags, roles and login counters; raises DuplicateEmail."""

    def password_hash(self, user_id: str) -> str | None: ...

    def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None: ...

    def roles(self) -> list[Role]: ...

    def save_role(self, role: Role) -> None: ...

    def add_code(self, code: OneTimeCode) -> None: ...

    def find_code(self, code_hash: str) -> OneTimeCode | None: ...

    def use_code(self, code_hash: str, now: datetime) -> bool:
        """Mark the code used; False when it already was (two requests racing with one link)."""

    def invalidate_codes(self, user_id: str, purpose: str, now: datetime, *, keep: str | None = None) -> int:
        """Mark every unused code of this purpose used, but the one whose hash is ``keep``; returns how many."""


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool:
        """False on a mismatch or a hash that cannot be read; never raises for a wrong password."""

    def needs_rehash(self, password_hash: str) -> bool: ...


class ApiTokenStore(Protocol):
    def add(self, token: ApiToken, token_hash: str) -> None: ...

    def find_by_hash(self, token_hash: str) -> ApiToken | None: ...

    def for_user(self, user_id: str) -> list[ApiToken]: ...

    def revoke(self, token_id: str, now: datetime) -> bool:
        """False when there is no such active token."""

    def touch(self, token_id: str, now: datetime) -> None:
        """Record a use (the list shows when a token was last used)."""

    def revoke_all(self, user_id: str, now: datetime) -> int:
        """Revoke every active token of the user; returns how many."""


class SessionStore(Protocol):
    """Web login sessions, found by the hash of the key their cookie carries."""

    def add(self, session: LoginSession) -> None: ...

    def find(self, key_hash: str) -> LoginSession | None: ...

    def revoke(self, key_hash: str, now: datetime) -> bool:
        """False when there is no such unrevoked session."""

    def revoke_for_user(self, user_id: str, now: datetime, *, keep: str | None = None) -> int:
        """Revoke every session of the user but the one whose hash is ``keep``; returns how many."""

    def purge(self, before: datetime) -> int:
        """Delete sessions that expired before ``before``."""


class LoginThrottle(Protocol):
    """Failed-login counters; ``record_failure`` must count atomically (parallel guesses all count)."""

    def locked_until(self, keys: Sequence[ThrottleKey], now: datetime) -> datetime | None:
        """The latest lock of these counters still running at ``now``, or None."""

    def record_failure(self, key: ThrottleKey, now: datetime, *, forget_before: datetime) -> int:
        """Add one failure and return the count; a counter whose last failure is older than
        ``forget_before`` starts again from one."""

    def lock(self, key: ThrottleKey, until: datetime) -> None: ...

    def clear(self, key: ThrottleKey) -> None: ...

    def clear_account(self, account: str) -> None:
        """Forget the account's counters from every client (a password reset proved the owner)."""
