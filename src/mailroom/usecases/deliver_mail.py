"""Deliver one claimed mail: choose servers, reuse pooled connections, judge the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType

from mailroom.domain.delivery import judge
from mailroom.domain.outbox import DeliveryAttempt, MailStatus, RecipientStatus
from mailroom.domain.retry import RetryPolicy
from mailroom.domain.servers import SmtpServer, servers_to_try
from mailroom.errors import (
    DeliveryError,
    NoServerConfigured,
    SecretError,
    SmtpAuthError,
    SmtpPermanentError,
)
from mailroom.ports import ClaimedMail, Clock, DeliveryResult, MessageBuilder, ServerStore, SmtpSession, Transport

log = logging.getLogger(__name__)

# After a login failure a server rests longer than after a connection failure: retrying wrong
# credentials quickly is what gets an IP blocked by the provider.
CONNECT_FAILURE_PAUSE_SECONDS = 30.0
AUTH_FAILURE_PAUSE_SECONDS = 300.0


class _Lane:
    """One server's sessions: at most ``size`` in use at once, the idle ones kept open."""

    def __init__(self, size: int) -> None:
        self.limit = asyncio.Semaphore(size)
        self.idle: list[tuple[SmtpSession, contextlib.AsyncExitStack]] = []


class SessionPool:
    """Open SMTP sessions per server, at most ``size`` at once each, kept open between mails."""

    def __init__(self, transport: Transport, *, size: int) -> None:
        self._transport = transport
        self._size = size
        self._lanes: dict[str, _Lane] = {}
        self._paused_until: dict[str, tuple[float, DeliveryError]] = {}

    @property
    def size(self) -> int:
        """Sessions per server at most."""
        return self._size

    def paused(self, server: SmtpServer) -> DeliveryError | None:
        """The error that paused this server, while the pause lasts."""
        entry = self._paused_until.get(server.id)
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def pause(self, server: SmtpServer, error: DeliveryError) -> None:
        seconds = AUTH_FAILURE_PAUSE_SECONDS if isinstance(error, SmtpAuthError) else CONNECT_FAILURE_PAUSE_SECONDS
        self._paused_until[server.id] = (time.monotonic() + seconds, error)
        log.warning("SMTP server %s paused for %.0f s: %s", server.name, seconds, error)

    def session(self, server: SmtpServer, password: str | None) -> _Checkout:
        """``async with pool.session(server, password) as session``: an idle session or a new one."""
        lane = self._lanes.get(server.id)
        if lane is None:
            lane = self._lanes[server.id] = _Lane(self._size)
        return _Checkout(lane, lambda: self._transport.session(server, password))

    async def close(self) -> None:
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            for _, stack in lane.idle:
                await _close_quietly(stack)


class _Checkout:
    """One use of a pooled session (a class, not a generator-based context manager: it runs per mail)."""

    def __init__(self, lane: _Lane, connect: Callable[[], AbstractAsyncContextManager[SmtpSession]]) -> None:
        self._lane = lane
        self._connect = connect
        self._entry: tuple[SmtpSession, contextlib.AsyncExitStack] | None = None

    async def __aenter__(self) -> SmtpSession:
        await self._lane.limit.acquire()
        try:
            if self._lane.idle:
                self._entry = self._lane.idle.pop()
            else:
                stack = contextlib.AsyncExitStack()
                try:
                    self._entry = (await stack.enter_async_context(self._connect()), stack)
                except BaseException:
                    await stack.aclose()
                    raise
        except BaseException:
            self._lane.limit.release()
            raise
        return self._entry[0]

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        assert self._entry is not None
        try:
            # The transport reconnects a dropped session itself; only a refused login (or a crash) is fatal.
            if exc is None or (isinstance(exc, DeliveryError) and not isinstance(exc, SmtpAuthError)):
                self._lane.idle.append(self._entry)
            else:
                await _close_quietly(self._entry[1])
        finally:
            self._lane.limit.release()


async def _close_quietly(stack: contextlib.AsyncExitStack) -> None:
    with contextlib.suppress(Exception):
        await stack.aclose()


class DeliverMail:
    """Turns one claimed mail into a DeliveryResult; never raises for SMTP trouble."""

    def __init__(self, *, servers: ServerStore, builder: MessageBuilder, clock: Clock, policy: RetryPolicy,
                 pool: SessionPool) -> None:
        self._servers = servers
        self._builder = builder
        self._clock = clock
        self._policy = policy
        self._pool = pool
        # One lookup per server, shared: mails waiting on it resume in claim order, keeping priorities.
        self._passwords: dict[str, asyncio.Future[str | None]] = {}

    def forget_passwords(self) -> None:
        """Read passwords again at the next delivery (after a server was changed)."""
        self._passwords.clear()

    async def __call__(self, claim: ClaimedMail, servers: Sequence[SmtpServer]) -> DeliveryResult:
        started = self._clock.now()
        clock_start = time.perf_counter()
        if claim.expires_at is not None and claim.expires_at <= started:
            return self._result(claim, started, clock_start, None, MailStatus.FAILED,
                                f"expired: not sent before {claim.expires_at.isoformat()}")
        if claim.message is None:
            return self._result(claim, started, clock_start, None, MailStatus.FAILED,
                                "the content was dropped by retention before delivery")
        error: DeliveryError | None = None
        for server in servers_to_try(servers, claim.smtp_hint):
            paused = self._pool.paused(server)
            if paused is not None:
                error = paused
                continue
            try:
                return await self._send_via(server, claim, claim.message, started, clock_start)
            except DeliveryError as exc:
                error = exc
                if exc.try_next_server:
                    self._pool.pause(server, exc)
                    continue
                break
        if error is None:
            error = NoServerConfigured(claim.smtp_hint)
        verdict = judge(error, attempts_made=claim.attempts, policy=self._policy, now=started,
                        expires_at=claim.expires_at)
        recipients: dict[str, tuple[str, int | None, str | None]] = {}
        if isinstance(error, SmtpPermanentError):
            recipients = {r: (RecipientStatus.REFUSED.value, error.code, error.reply) for r in claim.recipients}
        return DeliveryResult(
            mail_id=claim.id, claim_token=claim.claim_token, status=verdict.status,
            next_attempt_at=verdict.next_attempt_at, error=verdict.error, recipients=recipients,
            attempt=DeliveryAttempt(number=claim.attempts, started_at=started, duration_ms=_ms(clock_start),
                                    server_name=error.server, outcome=verdict.status, code=error.code,
                                    reply=error.reply or str(error)),
        )

    async def _send_via(self, server: SmtpServer, claim: ClaimedMail, message: bytes, started: datetime,
                        clock_start: float) -> DeliveryResult:
        sender = claim.envelope_sender or server.from_address
        if sender is None:
            raise SmtpPermanentError(f"server {server.name!r} has no sender address and the mail no From: set "
                                     "the server's sender", server=server.name)
        if not claim.has_from_header:
            message = self._builder.with_from(message, sender)
        if server.id not in self._passwords:
            self._passwords[server.id] = asyncio.ensure_future(asyncio.to_thread(self._servers.password, server.id))
        try:
            password = await asyncio.shield(self._passwords[server.id])
        except SecretError as exc:
            self._passwords.pop(server.id, None)  # read it again once the key is fixed
            raise SmtpAuthError(f"{server.name}: {exc}", server=server.name) from None
        async with self._pool.session(server, password) as session:
            report = await session.send(sender, claim.recipients, message)
        recipients: dict[str, tuple[str, int | None, str | None]] = {
            r: (RecipientStatus.ACCEPTED.value, report.code, report.reply) for r in claim.recipients}
        for email, (code, reply) in report.refused.items():
            recipients[email] = (RecipientStatus.REFUSED.value, code, reply)
        return DeliveryResult(
            mail_id=claim.id, claim_token=claim.claim_token, status=MailStatus.SENT, next_attempt_at=None,
            error=f"{len(report.refused)} recipient(s) refused" if report.refused else None,
            recipients=recipients,
            attempt=DeliveryAttempt(number=claim.attempts, started_at=started, duration_ms=_ms(clock_start),
                                    server_name=server.name, outcome=MailStatus.SENT, code=report.code,
                                    reply=report.reply),
        )

    def _result(self, claim: ClaimedMail, started: datetime, clock_start: float, server: str | None,
                status: MailStatus, error: str) -> DeliveryResult:
        return DeliveryResult(
            mail_id=claim.id, claim_token=claim.claim_token, status=status, next_attempt_at=None, error=error,
            attempt=DeliveryAttempt(number=claim.attempts, started_at=started, duration_ms=_ms(clock_start),
                                    server_name=server, outcome=status, reply=error),
        )


def _ms(clock_start: float) -> int:
    return int((time.perf_counter() - clock_start) * 1000)

