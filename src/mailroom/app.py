"""The composition root: one ``Mailroom`` object built from settings, giving every use case.

Synchronous methods suit scripts and WSGI apps; each has an ``_async`` twin that runs the same work in
a thread, for asyncio apps. Storage calls are short, so a thread per call is cheap.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from mailroom.adapters.liveness import kept_alive
from mailroom.adapters.passwords import Argon2PasswordHasher
from mailroom.adapters.secrets import FernetSecretBox
from mailroom.adapters.smtp.mime import StdlibMessageBuilder
from mailroom.adapters.smtp.transport import AiosmtplibTransport
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.local_wakeup import local_wakeup_for
from mailroom.adapters.storage.mail_store import SqlMailStore
from mailroom.adapters.storage.outbox_process import OutboxConfig, OutboxProcess
from mailroom.adapters.storage.rate_limit_store import SqlRateLimits
from mailroom.adapters.storage.secret_store import SqlStoredSecrets
from mailroom.adapters.storage.server_store import SqlServerStore
from mailroom.adapters.storage.session_store import SqlLoginThrottle, SqlSessionStore
from mailroom.adapters.storage.template_store import SqlTemplateStore
from mailroom.adapters.storage.token_store import SqlApiTokenStore
from mailroom.adapters.storage.user_store import SqlUserStore
from mailroom.adapters.storage.wakeup import EventWakeup, PostgresWakeup
from mailroom.adapters.templates.builtin import load_builtin_sets
from mailroom.adapters.templates.isolated import IsolatedTemplateRenderer
from mailroom.domain.events import EventBus, SendMailRequested
from mailroom.domain.log import LogPage, LogQuery
from mailroom.domain.mail import Attachment, Mail
from mailroom.domain.outbox import OutgoingMail
from mailroom.domain.permissions import SYSTEM, Subject
from mailroom.ports import Outbox, Transport
from mailroom.settings import Settings
from mailroom.usecases.api_tokens import ApiTokenUseCases
from mailroom.usecases.deliver_mail import DeliverMail
from mailroom.usecases.mail_log import MailLogUseCases
from mailroom.usecases.rate_limits import RateLimitUseCases
from mailroom.usecases.retention import PurgeExpired, RetentionPolicy
from mailroom.usecases.secret_keys import SecretKeyUseCases
from mailroom.usecases.send_mail import SendingReadiness, SendingServers, SendMail
from mailroom.usecases.smtp_servers import SmtpServerUseCases
from mailroom.usecases.templates import TemplateUseCases
from mailroom.usecases.users import UserUseCases
from mailroom.worker import Worker

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Mailroom:
    """Mail management for one application.

    >>> mailroom = Mailroom()                       # settings from MAILROOM_* / MAILROOM_CONFIG
    >>> mail_id = mailroom.send_mail(SYSTEM, Mail(to="a@example.org", subject="Hi", text="Hello"))
    """

    def __init__(self, settings: Settings | None = None, *, migrate: bool = True,
                 transport: Transport | None = None, **overrides: Any) -> None:
        self.settings = settings.replace(**overrides) if settings else Settings.load(**overrides)
        s = self.settings
        self.database = Database(s.database_url)
        if migrate:
            self.database.migrate()
        self.clock = SystemClock()
        self.wakeup: EventWakeup = (
            PostgresWakeup(self.database.url.set(drivername="postgresql").render_as_string(hide_password=False))
            if self.database.is_postgres else local_wakeup_for(self.database.url.database)
        )
        self.secrets = FernetSecretBox.from_settings(s.secret_key, s.secret_key_file)
        self.store = SqlMailStore(self.database, self.secrets, count_limit=s.log_count_limit)
        self.builder = StdlibMessageBuilder(message_id_domain=s.message_id_domain)
        self.transport = transport or AiosmtplibTransport(ca_file=s.smtp_ca_file, helo_name=s.smtp_helo_name)
        self.server_store = SqlServerStore(self.database, self.secrets)
        self.secret_keys = SecretKeyUseCases(store=SqlStoredSecrets(self.database, self.secrets))
        # send_mail fills a missing From from the servers without reading them each time; the server use
        # cases write through this copy, so their changes show at once.
        self.sending_servers = SendingServers(self.server_store)
        self._send = SendMail(outbox=self.store, builder=self.builder, clock=self.clock, wakeup=self.wakeup,
                              staging=s.staging_policy, max_attachment_bytes=s.max_attachment_bytes,
                              max_message_bytes=s.max_message_bytes,
                              idempotency_window=timedelta(seconds=s.idempotency_window_seconds),
                              servers=self.sending_servers)
        self.log = MailLogUseCases(log=self.store, outbox=self.store, clock=self.clock, wakeup=self.wakeup)
        self.servers = SmtpServerUseCases(store=self.sending_servers, transport=self.transport, wakeup=self.wakeup)
        self.rate_limit_store = SqlRateLimits(self.database)
        self.rate_limits = RateLimitUseCases(limits=self.rate_limit_store, servers=self.server_store,
                                             clock=self.clock, wakeup=self.wakeup)
        # Templates are code an editor writes: each render runs in a child process with hard limits.
        self.renderer = IsolatedTemplateRenderer(cpu_seconds=s.template_render_cpu_seconds,
                                                 memory_mb=s.template_render_memory_mb)
        self.templates = TemplateUseCases(store=SqlTemplateStore(self.database), renderer=self.renderer,
                                          send=self._send, clock=self.clock, builtin_sets=load_builtin_sets())
        if migrate:
            self.templates.ensure_builtin()
        self.events = EventBus()
        self.events.subscribe(SendMailRequested, self._on_send_mail_requested)
        token_store = SqlApiTokenStore(self.database)
        self.users = UserUseCases(store=SqlUserStore(self.database), hasher=Argon2PasswordHasher(),
                                  templates=self.templates, events=self.events, clock=self.clock,
                                  policy=s.account_policy, sessions=SqlSessionStore(self.database),
                                  throttle=SqlLoginThrottle(self.database), tokens=token_store)
        if migrate:
            self.users.ensure_builtin_roles()
        self.api_tokens = ApiTokenUseCases(store=token_store, users=self.users,
                                           clock=self.clock)
        self.worker_outbox: OutboxProcess | None = None  # started by the first worker that uses it

    # --- sending -------------------------------------------------------------------------------

    def send_mail(self, subject: Subject, mail: Mail, *, idempotency_key: str | None = None) -> str:
        """Queue a mail and return its id; delivery happens in a worker.

        With ``idempotency_key``, calling again with the same key (by the same subject) within
        ``idempotency_window_seconds`` returns the first mail's id and queues nothing, also when the calls
        race; the same key with a different mail raises IdempotencyConflict.
        """
        return self._send(subject, mail, idempotency_key=idempotency_key)

    async def send_mail_async(self, subject: Subject, mail: Mail, *, idempotency_key: str | None = None) -> str:
        return await _in_thread(self._send, subject, mail, idempotency_key=idempotency_key)

    def send_mails(self, subject: Subject, mails: Sequence[Mail]) -> list[str]:
        """Queue many mails in one transaction: all or none."""
        return self._send.bulk(subject, mails)

    async def send_mails_async(self, subject: Subject, mails: Sequence[Mail]) -> list[str]:
        return await _in_thread(self._send.bulk, subject, mails)

    def send_template_mail(self, subject: Subject, **options: Any) -> str:
        """Render a template (``set_id``, ``name``, ``language``, ``model``, ``to``, ...) and queue it."""
        return self.templates.send_template_mail(subject, **options)

    async def send_template_mail_async(self, subject: Subject, **options: Any) -> str:
        return await _in_thread(self.templates.send_template_mail, subject, **options)

    def sending_readiness(self, subject: Subject) -> SendingReadiness | None:
        """Whether mails queued now can go out (an enabled server; a sender for mails without a From)."""
        return self._send.readiness(subject)

    def _on_send_mail_requested(self, event: SendMailRequested) -> None:
        self._send(SYSTEM, Mail(
            to=list(event.to), cc=list(event.cc), bcc=list(event.bcc), subject=event.subject,
            text=event.text, html=event.html, smtp_hint=event.smtp_hint, confidential=event.confidential,
            attachments=[Attachment(filename=name, content=data) for name, data in event.attachments.items()],
        ))

    # --- the log -------------------------------------------------------------------------------

    def get_mail(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return self.log.get(subject, mail_id)

    async def get_mail_async(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return await _in_thread(self.log.get, subject, mail_id)

    def search_mail_log(self, subject: Subject, query: LogQuery | None = None, /, **filters: Any) -> LogPage:
        """Search by a LogQuery or its fields as keywords (``statuses``, ``recipient``, ``text``, ...)."""
        return self.log.search(subject, query or LogQuery(**filters))

    async def search_mail_log_async(self, subject: Subject, query: LogQuery | None = None, /,
                                    **filters: Any) -> LogPage:
        return await _in_thread(self.log.search, subject, query or LogQuery(**filters))

    def retry_mail(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return self.log.retry(subject, mail_id)

    async def retry_mail_async(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return await _in_thread(self.log.retry, subject, mail_id)

    def cancel_mail(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return self.log.cancel(subject, mail_id)

    async def cancel_mail_async(self, subject: Subject, mail_id: str) -> OutgoingMail:
        return await _in_thread(self.log.cancel, subject, mail_id)

    def delete_mails(self, subject: Subject, mail_ids: Sequence[str]) -> int:
        return self.log.delete(subject, mail_ids)

    async def delete_mails_async(self, subject: Subject, mail_ids: Sequence[str]) -> int:
        return await _in_thread(self.log.delete, subject, mail_ids)

    # --- the worker ----------------------------------------------------------------------------

    def create_worker(self, **overrides: Any) -> Worker:
        s = self.settings
        deliver = DeliverMail(builder=self.builder, clock=self.clock, policy=s.retry_policy,
                              uncertain=s.uncertain_delivery)
        purge = PurgeExpired(store=self.store, clock=self.clock, policy=RetentionPolicy(
            keep_sent_days=s.keep_sent_days, keep_failed_days=s.keep_failed_days,
            keep_content_days=s.keep_content_days, batch_size=s.retention_batch_size))
        options: dict[str, Any] = {
            "purge": purge, "batch_size": s.worker_batch_size, "batch_bytes": s.worker_batch_bytes,
            "lease_seconds": s.lease_seconds, "connections_per_server": s.smtp_connections_per_server,
            "server_cooldown_seconds": s.server_cooldown_seconds,
            "poll_interval_seconds": s.poll_interval_seconds,
            "retention_interval_seconds": s.retention_interval_seconds,
            "search_index": self.store, "search_index_interval_seconds": s.search_index_interval_seconds,
            "shutdown_grace_seconds": s.shutdown_grace_seconds,
        } | overrides
        return Worker(outbox=self.outbox_for_workers(), servers=self.server_store, deliver=deliver,
                      transport=self.transport, wakeup=self.wakeup, clock=self.clock,
                      rate_limits=self.rate_limit_store, **options)

    def outbox_for_workers(self) -> Outbox:
        s = self.settings
        in_memory = not self.database.is_postgres and self.database.url.database in (None, "", ":memory:")
        if not s.worker_storage_process or in_memory:
            return self.store
        if self.worker_outbox is None:
            self.worker_outbox = OutboxProcess(OutboxConfig(
                database_url=self.database.url.render_as_string(hide_password=False),
                secret_key=s.secret_key, secret_key_file=s.secret_key_file))
        return self.worker_outbox

    async def run_worker(self, *, until_idle: bool = False, handle_signals: bool = False,
                         worker: Worker | None = None) -> Worker:
        """Deliver mail until stopped (SIGTERM/SIGINT with ``handle_signals``) or, with ``until_idle``,
        until nothing is due."""
        worker = worker or self.create_worker()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.stop)
        await self.wakeup.start()  # LISTEN (PostgreSQL) or a local socket (SQLite): other processes wake it
        try:
            async with kept_alive(self.settings.worker_liveness_file, self.settings.worker_liveness_interval_seconds):
                await worker.run(until_idle=until_idle)
        finally:
            await self.wakeup.stop()
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
        return worker

    def deliver_pending(self) -> int:
        """Deliver everything due now and return (for scripts and tests); returns the number handled."""
        return asyncio.run(self.run_worker(until_idle=True)).delivered

    def close(self) -> None:
        if self.worker_outbox is not None:
            self.worker_outbox.close()
        self.renderer.close()
        self.database.dispose()

    def __enter__(self) -> Mailroom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)
