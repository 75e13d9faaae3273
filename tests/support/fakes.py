"""Small in-memory fakes of the worker's ports, for tests of its logic without a database or a network.

``FakeOutbox`` keeps the rules the SQL store keeps (claim token fences, leases, attempts given back on
release); tests/integration/test_outbox_contract.py runs the same checks against both, so the fake cannot
drift from the real store.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from mailroom.domain.idempotency import IdempotencyRecord
from mailroom.domain.outbox import (
    CLAIMABLE_STATUSES,
    DeliveryAttempt,
    MailStatus,
    RecipientStatus,
    new_claim_token,
)
from mailroom.domain.rate_limits import Denial, LimitScope, LimitUse, RateLimit, Window, oldest_allows
from mailroom.domain.servers import SmtpServer
from mailroom.errors import ServerNotFound, SmtpConnectError, SmtpTemporaryError, StorageUnavailable, Text
from mailroom.ports import ClaimedMail, DeliveryResult, NewOutgoing, SendReport


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FakeMail:
    id: str
    recipients: tuple[str, ...]
    status: MailStatus = MailStatus.QUEUED
    attempts: int = 0
    next_attempt_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    claim_token: str | None = None
    last_error: str | None = None
    smtp_hint: str | None = None
    recipient_status: dict[str, str] = field(default_factory=dict)
    attempt_log: list[DeliveryAttempt] = field(default_factory=list)


class Failures:
    """``fail["claim"] = 2``: the next two claims raise StorageUnavailable (a database blip).

    ``fail.lose_answer["claim"] = 1``: the next claim does its work, then raises (the commit went through,
    and the connection dropped before its answer came back).
    """

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}
        self.lose_answer: dict[str, int] = {}
        self.raised: dict[str, int] = {}

    def __setitem__(self, method: str, times: int) -> None:
        self.pending[method] = times

    def check(self, method: str) -> None:
        self._raise_if(self.pending, method)

    def check_answer(self, method: str) -> None:
        """Called after the work is done."""
        self._raise_if(self.lose_answer, method)

    def _raise_if(self, planned: dict[str, int], method: str) -> None:
        if planned.get(method, 0) > 0:
            planned[method] -= 1
            self.raised[method] = self.raised.get(method, 0) + 1
            raise StorageUnavailable(f"the database is unavailable (fake {method} failure)")


class FakeOutbox:
    """Implements the Outbox port in memory (only what the worker uses)."""

    def __init__(self, clock: FakeClock | RealClock | None = None) -> None:
        self.mails: dict[str, FakeMail] = {}
        self.clock = clock or RealClock()
        self.fail = Failures()
        self.extended = 0
        self.claim_seconds = 0.0
        """How long a claim takes after its lease was set (a database under load, a storage process starting)."""

    def put(self, mail_id: str, recipients: Sequence[str] = (), *, smtp_hint: str | None = None) -> None:
        """A queued mail; its one recipient is ``<mail_id>@example.org`` unless given, so a send names its mail."""
        recipients = tuple(recipients) or (f"{mail_id}@example.org",)
        self.mails[mail_id] = FakeMail(id=mail_id, recipients=recipients, smtp_hint=smtp_hint,
                                       next_attempt_at=self.clock.now())

    def claim(self, *, worker_id: str, limit: int, now: datetime, lease_seconds: float,
              max_bytes: int | None = None, token: str | None = None) -> list[ClaimedMail]:
        self.fail.check("claim")
        token = token or new_claim_token(worker_id)
        due = sorted((m for m in self.mails.values()
                      if m.status in CLAIMABLE_STATUSES and m.next_attempt_at <= now), key=lambda m: m.id)[:limit]
        for mail in due:
            mail.status, mail.claim_token = MailStatus.SENDING, token
            mail.attempts += 1
            mail.next_attempt_at = now + timedelta(seconds=lease_seconds)
        claims = [self._claimed(mail) for mail in due]
        self.fail.check_answer("claim")
        time.sleep(self.claim_seconds)
        return claims

    def resume_claim(self, token: str, *, now: datetime, lease_seconds: float) -> list[ClaimedMail]:
        self.fail.check("resume_claim")
        held = sorted((m for m in self.mails.values() if m.claim_token == token and m.status is MailStatus.SENDING),
                      key=lambda m: m.id)
        for mail in held:
            mail.next_attempt_at = now + timedelta(seconds=lease_seconds)
        return [self._claimed(mail) for mail in held]

    @staticmethod
    def _claimed(mail: FakeMail) -> ClaimedMail:
        assert mail.claim_token is not None
        done = {r: s for r, s in mail.recipient_status.items()
                if s in (RecipientStatus.ACCEPTED.value, RecipientStatus.REFUSED.value)}
        return ClaimedMail(
            id=mail.id, claim_token=mail.claim_token, message=b"Subject: hi\r\n\r\nhello\r\n",
            envelope_sender="me@example.org",
            recipients=tuple(r for r in mail.recipients if r not in done), smtp_hint=mail.smtp_hint,
            attempts=mail.attempts, expires_at=None, has_from_header=True,
            accepted_before=list(done.values()).count(RecipientStatus.ACCEPTED.value),
            refused_before=list(done.values()).count(RecipientStatus.REFUSED.value))

    def record(self, results: Sequence[DeliveryResult], *, again: bool = False) -> None:
        self.fail.check("record")
        for result in results:
            mail = self.mails[result.mail_id]
            written = again and any(a.number == result.attempt.number for a in mail.attempt_log)
            if result.attempted and not written:
                mail.attempt_log.append(result.attempt)
            if mail.claim_token != result.claim_token:
                continue
            mail.attempts = result.attempt.number if result.attempted else result.attempt.number - 1
            # Like the store: the English for last_error (the SQL store keeps the Text beside it).
            mail.status, mail.claim_token = result.status, None
            mail.last_error = None if result.error is None else str(result.error)
            if result.next_attempt_at is not None:
                mail.next_attempt_at = result.next_attempt_at
            for email, (status, _code, _reply) in result.recipients.items():
                mail.recipient_status[email] = status
        self.fail.check_answer("record")

    def release(self, claims: Sequence[ClaimedMail], *, retry_at: datetime, error: Text | None = None) -> None:
        self.fail.check("release")
        for claim in claims:
            mail = self.mails[claim.id]
            if mail.claim_token != claim.claim_token:
                continue
            mail.claim_token, mail.next_attempt_at = None, retry_at
            mail.attempts = claim.attempts - 1
            mail.status = MailStatus.QUEUED if mail.attempts == 0 else MailStatus.DEFERRED
            if error is not None:
                mail.last_error = str(error)

    def extend_leases(self, claims: Sequence[ClaimedMail], *, until: datetime) -> set[str]:
        self.fail.check("extend_leases")
        self.extended += 1
        still = set()
        for claim in claims:
            mail = self.mails[claim.id]
            if mail.claim_token == claim.claim_token and mail.status is MailStatus.SENDING:
                mail.next_attempt_at = until
                still.add(claim.id)
        return still

    def next_due_at(self) -> datetime | None:
        self.fail.check("next_due_at")
        due = [m.next_attempt_at for m in self.mails.values() if m.status in CLAIMABLE_STATUSES]
        return min(due, default=None)

    def steal(self, mail_id: str, *, by: str = "another-worker") -> None:
        """Another worker takes the mail over (its lease ran out here) and holds it for the next hour."""
        self.mails[mail_id].claim_token = f"{by}:{secrets.token_hex(4)}"
        self.mails[mail_id].status = MailStatus.SENDING
        self.mails[mail_id].next_attempt_at = self.clock.now() + timedelta(hours=1)


class MemoryEnqueue:
    """The enqueue side of the Outbox: keeps what was added, and idempotency keys under one lock (the
    store's unique key), counting calls so tests see how many round trips a send costs."""

    def __init__(self) -> None:
        self.mails: dict[str, NewOutgoing] = {}
        self.keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def add(self, mails: Sequence[NewOutgoing]) -> None:
        self.calls.append("add")
        with self._lock:
            self.mails.update((m.id, m) for m in mails)

    def add_once(self, mail: NewOutgoing, record: IdempotencyRecord) -> IdempotencyRecord:
        self.calls.append("add_once")
        with self._lock:
            held = self.keys.get((record.scope, record.key))
            if held is not None and held.expires_at > record.created_at:
                return held
            self.keys[(record.scope, record.key)] = record
            self.mails[mail.id] = mail
            return record


class FakeServerStore:
    def __init__(self, *servers: SmtpServer, password: str | None = "secret-1") -> None:
        self.servers = list(servers)
        self.password_value = password
        self.password_reads = 0
        self.fail = Failures()

    def list(self) -> list[SmtpServer]:
        self.fail.check("list")
        return list(self.servers)

    def get(self, name_or_id: str) -> SmtpServer:
        for server in self.servers:
            if name_or_id in (server.id, server.name):
                return server
        raise ServerNotFound(name_or_id)

    def password(self, server_id: str) -> str | None:
        self.fail.check("password")
        self.password_reads += 1
        return self.password_value


def server(name: str = "relay", **settings: object) -> SmtpServer:
    return SmtpServer(id=f"id-{name}", name=name, host="127.0.0.1", port=2525, **settings)  # type: ignore[arg-type]


@dataclass
class Sent:
    server: str
    recipients: tuple[str, ...]
    password: str | None


class FakeSession:
    def __init__(self, transport: FakeTransport, server: SmtpServer, password: str | None) -> None:
        self.transport = transport
        self.server = server
        self.password = password
        self.open = True

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        script = self.transport
        if script.send_delay:
            await asyncio.sleep(script.send_delay)
        if not self.open:
            raise SmtpTemporaryError("closed", server=self.server.name)
        refused = {r: script.rcpt_answers[r] for r in recipients if r in script.rcpt_answers}
        script.sent.append(Sent(self.server.name, tuple(r for r in recipients if r not in refused), self.password))
        if len(refused) == len(recipients):
            return SendReport(code=None, reply="no recipient was accepted", refused=refused)
        return SendReport(code=250, reply="2.0.0 queued", refused=refused)

    async def ensure_alive(self) -> bool:
        return self.open and not self.transport.drop_all

    async def close(self) -> None:
        if self.open:
            self.open = False
            self.transport.open_now[self.server.name] -= 1


class FakeTransport:
    """Scripted servers: connection limits, refused connects, answers per recipient, a delay per mail."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.connects: list[tuple[str, str | None]] = []
        self.refuse_connects: dict[str, int] = {}  # server name -> how many connects to refuse
        self.max_connections: dict[str, int] = {}
        self.open_now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.rcpt_answers: dict[str, tuple[int, str]] = {}
        self.send_delay = 0.0
        self.drop_all = False

    async def connect(self, server: SmtpServer, password: str | None, *, sender: str | None = None) -> FakeSession:
        await asyncio.sleep(0)
        self.connects.append((server.name, password))
        if self.refuse_connects.get(server.name, 0) > 0:
            self.refuse_connects[server.name] -= 1
            raise SmtpConnectError(f"{server.name}: 421 try later", code=421, server=server.name)
        if self.open_now.get(server.name, 0) >= self.max_connections.get(server.name, 1_000):
            raise SmtpConnectError(f"{server.name}: 421 too many connections", code=421, server=server.name)
        self.open_now[server.name] = self.open_now.get(server.name, 0) + 1
        self.peak[server.name] = max(self.peak.get(server.name, 0), self.open_now[server.name])
        return FakeSession(self, server, password)

    async def probe(self, server: SmtpServer, password: str | None) -> list[object]:
        return []


def sent_ids(outbox: FakeOutbox) -> dict[str, MailStatus]:
    return {mail_id: mail.status for mail_id, mail in outbox.mails.items()}


def replace_server(server: SmtpServer, **changes: object) -> SmtpServer:
    return replace(server, **changes)  # type: ignore[arg-type]


class FakeRateLimits:
    """Implements the RateLimits port in memory: per limit, the times of its last N sends."""

    def __init__(self) -> None:
        self.limits: dict[LimitScope, tuple[RateLimit, ...]] = {}
        self.sends: dict[tuple[LimitScope, Window], list[datetime]] = {}
        self.fail = Failures()
        self.granted = 0

    def rules(self) -> dict[LimitScope, tuple[RateLimit, ...]]:
        self.fail.check("rules")
        return dict(self.limits)

    def set_limits(self, scope: LimitScope, limits: Sequence[RateLimit]) -> None:
        kept = {limit.window for limit in limits}
        for window in Window:
            if window not in kept:
                self.sends.pop((scope, window), None)
        if limits:
            self.limits[scope] = tuple(limits)
        else:
            self.limits.pop(scope, None)

    def reserve(self, scopes: Sequence[LimitScope], now: datetime) -> Denial | None:
        self.fail.check("reserve")
        denials = []
        for scope in scopes:
            for limit in self.limits.get(scope, ()):
                sends = self.sends.setdefault((scope, limit.window), [])
                if len(sends) >= limit.count:
                    until = oldest_allows(sends[-limit.count], limit, now)
                    if until is not None:
                        denials.append(Denial(scope, limit, until))
        if denials:
            return max(denials, key=lambda d: d.until)
        for scope in scopes:
            for limit in self.limits.get(scope, ()):
                self.sends[(scope, limit.window)].append(now)
        self.granted += 1
        return None

    def sent(self, scopes: Sequence[LimitScope], reserved_at: datetime, now: datetime) -> None:
        for scope in scopes:
            for limit in self.limits.get(scope, ()):
                sends = self.sends.get((scope, limit.window), [])
                self.sends[(scope, limit.window)] = sorted(now if t == reserved_at else t for t in sends)

    def usage(self, now: datetime) -> list[LimitUse]:
        return [LimitUse(scope, limit, sum(1 for t in self.sends.get((scope, limit.window), [])
                                           if t > now - timedelta(seconds=limit.window.seconds)))
                for scope, limits in sorted(self.limits.items()) for limit in limits]
