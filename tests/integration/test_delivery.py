"""The worker delivering into real aiosmtpd servers: every outcome the issue lists, judged from the log."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.domain.outbox import RecipientStatus
from mailroom.domain.servers import Security
from tests.support.smtp_servers import Behaviour, SmtpServerHandle

PASSWORD = "s3cret-Pa55-word"
MakeServer = Callable[..., SmtpServerHandle]
MakeRoom = Callable[..., Mailroom]


@pytest.fixture
def make_room(sqlite_url: str, secret_key: str, ca_file: str) -> Iterator[MakeRoom]:
    rooms: list[Mailroom] = []

    def make(**overrides: Any) -> Mailroom:
        settings: dict[str, Any] = {"database_url": sqlite_url, "secret_key": secret_key, "smtp_ca_file": ca_file,
                                    "retry_jitter": 0.0} | overrides
        room = Mailroom(**settings)
        rooms.append(room)
        return room

    yield make
    for room in rooms:
        room.close()


@pytest.fixture
def ca_file(smtp_server_factory: MakeServer) -> str:
    """The test CA that signs every TLS test server's certificate."""
    handle = smtp_server_factory(tls="starttls")
    assert handle.ca_file is not None
    return handle.ca_file


def add_server(room: Mailroom, handle: SmtpServerHandle, *, name: str = "relay", security: Security = Security.NONE,
               username: str = "", password: str | None = None, priority: int = 0,
               timeout_seconds: float = 10.0) -> None:
    room.servers.add(SYSTEM, ServerSettings(name=name, host=handle.host, port=handle.port, security=security,
                                            username=username, sender="app@example.org", priority=priority,
                                            timeout_seconds=timeout_seconds), password)


def mail(**changes: Any) -> Mail:
    fields: dict[str, Any] = {"to": "ann@example.org", "subject": "Hello", "text": "Hi Ann"} | changes
    return Mail(**fields)


def test_accepted_mail_is_sent_with_from_and_without_bcc(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room()
    add_server(room, smtp_server)
    mail_id = room.send_mail(SYSTEM, mail(cc="cc@example.org", bcc="hidden@example.org"))
    assert room.deliver_pending() == 1
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.SENT and stored.sent_at is not None
    assert stored.server_name == "relay" and stored.attempts == 1 and stored.last_error is None
    assert [(a.outcome, a.code, a.server_name) for a in stored.attempt_log] == [(MailStatus.SENT, 250, "relay")]
    assert {r.status for r in stored.recipients} == {RecipientStatus.ACCEPTED}
    [received] = smtp_server.wait_for(1)
    assert received.mail_from == "app@example.org"
    assert sorted(received.rcpt_tos) == ["ann@example.org", "cc@example.org", "hidden@example.org"]
    assert received.message()["From"] == "app@example.org"
    assert b"hidden@example.org" not in received.data
    assert received.message()["Message-ID"] == stored.message_id


def test_a_utf8_local_part_goes_out_on_a_new_connection(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    # The session greets before its first mail: SMTPUTF8 is known then, not only after a MAIL command.
    room = make_room()
    add_server(room, smtp_server)
    mail_id = room.send_mail(SYSTEM, mail(to="jürgen@example.org"))
    assert room.deliver_pending() == 1
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["jürgen@example.org"]


@pytest.mark.postgres
def test_delivery_on_postgres(postgres_url: str, secret_key: str, smtp_server: SmtpServerHandle) -> None:
    with Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        add_server(room, smtp_server)
        ids = room.send_mails(SYSTEM, [mail(subject=f"n{i}") for i in range(20)])
        assert room.deliver_pending() == 20
        assert {room.get_mail(SYSTEM, i).status for i in ids} == {MailStatus.SENT}
    assert len(smtp_server.wait_for(20)) == 20


def test_temporary_failure_defers_with_backoff(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(behaviour=Behaviour.TEMPORARY)
    room = make_room(retry_base_delay_seconds=60)
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail())
    before = datetime.now(UTC)
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.DEFERRED
    assert stored.next_attempt_at is not None
    assert before + timedelta(seconds=55) < stored.next_attempt_at < before + timedelta(seconds=70)
    assert stored.last_error is not None and "451" in stored.last_error
    assert [(a.outcome, a.code) for a in stored.attempt_log] == [(MailStatus.DEFERRED, 451)]


def test_temporary_failures_give_up_after_max_attempts(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(behaviour=Behaviour.TEMPORARY)
    room = make_room(retry_base_delay_seconds=0, max_attempts=3)
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.FAILED
    assert stored.last_error is not None and stored.last_error.startswith("gave up after 3 attempts")
    assert [a.outcome for a in stored.attempt_log] == [MailStatus.DEFERRED, MailStatus.DEFERRED, MailStatus.FAILED]


def test_a_retry_after_a_temporary_failure_succeeds(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    smtp_server.fail_next = 1
    room = make_room(retry_base_delay_seconds=0)
    add_server(room, smtp_server)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.SENT and stored.attempts == 2
    assert [a.code for a in stored.attempt_log] == [451, 250]
    assert len(smtp_server.wait_for(1)) == 1


def test_permanent_failure_fails_at_once(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(behaviour=Behaviour.PERMANENT)
    room = make_room(retry_base_delay_seconds=0)
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.FAILED and stored.attempts == 1
    assert stored.last_error is not None and "550" in stored.last_error
    assert [(r.status, r.code) for r in stored.recipients] == [(RecipientStatus.REFUSED, 550)]


@pytest.mark.parametrize(("behaviour", "words"), [(Behaviour.DROP, "dropped"),
                                                   (Behaviour.HANG, "no answer after the message was sent")])
def test_dropped_and_hanging_connections_defer(make_room: MakeRoom, smtp_server_factory: MakeServer,
                                               behaviour: Behaviour, words: str) -> None:
    server = smtp_server_factory(behaviour=behaviour)
    room = make_room(retry_base_delay_seconds=60)
    add_server(room, server, timeout_seconds=1.0)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.DEFERRED
    assert stored.last_error is not None and words in stored.last_error
    # Silence after the whole message is an uncertain outcome (it may have arrived); a drop mid-DATA is not.
    assert stored.attempt_log[-1].uncertain is (behaviour is Behaviour.HANG)


def test_partial_refusal_is_recorded_per_recipient(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(behaviour=Behaviour.REFUSE_SOME)
    room = make_room()
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail(to=["ann@example.org", "bad-bob@example.org"]))
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    # Some recipients got it, one was refused for good: the mail says so instead of claiming "sent".
    assert stored.status is MailStatus.PARTIALLY_FAILED
    results = {r.email: (r.status, r.code) for r in stored.recipients}
    assert results == {"ann@example.org": (RecipientStatus.ACCEPTED, 250),
                       "bad-bob@example.org": (RecipientStatus.REFUSED, 550)}
    assert stored.last_error is not None and stored.last_error.startswith("1 recipient(s) refused (bad-bob@")
    assert server.wait_for(1)[0].rcpt_tos == ["ann@example.org"]


def test_starttls_and_implicit_tls_with_login(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    starttls = smtp_server_factory(tls="starttls", auth=("app", PASSWORD))
    implicit = smtp_server_factory(tls="implicit", auth=("app", PASSWORD))
    room = make_room()
    add_server(room, starttls, name="starttls", security=Security.STARTTLS, username="app", password=PASSWORD,
               priority=1)
    add_server(room, implicit, name="implicit", security=Security.TLS, username="app", password=PASSWORD)
    first = room.send_mail(SYSTEM, mail())
    second = room.send_mail(SYSTEM, mail(smtp_hint="implicit"))
    room.deliver_pending()
    assert room.get_mail(SYSTEM, first).server_name == "starttls"
    assert room.get_mail(SYSTEM, second).server_name == "implicit"
    assert starttls.logins == [("app", PASSWORD)] and implicit.logins == [("app", PASSWORD)]


def test_untrusted_certificate_is_refused(sqlite_url: str, secret_key: str, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(tls="starttls")
    with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:  # no custom CA configured
        add_server(room, server, security=Security.STARTTLS)
        mail_id = room.send_mail(SYSTEM, mail())
        room.deliver_pending()
        stored = room.get_mail(SYSTEM, mail_id)
    # A connection that cannot be opened is the server's trouble: the mail waits, its attempts unspent.
    assert stored.status is MailStatus.QUEUED and stored.attempts == 0
    assert stored.last_error is not None and "certificate" in stored.last_error.lower()
    assert server.received == []


def test_auth_failure_fails_over_and_never_shows_the_password(
        make_room: MakeRoom, smtp_server_factory: MakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    primary = smtp_server_factory(auth=("app", "the-right-one"))
    fallback = smtp_server_factory()
    room = make_room()
    add_server(room, primary, name="primary", username="app", password=PASSWORD, priority=10)
    add_server(room, fallback, name="fallback")
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.SENT and stored.server_name == "fallback"
    assert primary.received == [] and len(fallback.wait_for(1)) == 1
    assert "primary" in caplog.text and "cools down" in caplog.text
    for shown in (caplog.text, repr(stored), str(room.servers.list(SYSTEM))):
        assert PASSWORD not in shown
        assert base64.b64encode(PASSWORD.encode()).decode() not in shown


def test_auth_failure_alone_defers_with_a_clear_error(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(auth=("app", "the-right-one"))
    room = make_room()
    add_server(room, server, username="app", password=PASSWORD)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.QUEUED and stored.attempts == 0
    assert stored.last_error is not None and "login as 'app' refused" in stored.last_error
    assert PASSWORD not in stored.last_error


def test_hint_chooses_the_server(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    main, marketing = smtp_server_factory(), smtp_server_factory()
    room = make_room()
    add_server(room, main, name="main", priority=10)
    add_server(room, marketing, name="marketing")
    room.send_mail(SYSTEM, mail(smtp_hint="marketing"))
    room.send_mail(SYSTEM, mail())
    room.send_mail(SYSTEM, mail(smtp_hint="no-such-server"))  # ignored: the highest priority takes it
    room.deliver_pending()
    assert len(marketing.wait_for(1)) == 1
    assert len(main.wait_for(2)) == 2


def test_without_a_server_mail_waits_and_nothing_is_lost(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room()
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    waiting = room.get_mail(SYSTEM, mail_id)
    assert waiting.status is MailStatus.QUEUED and waiting.attempts == 0
    assert waiting.last_error is not None and "no enabled SMTP server" in waiting.last_error

    async def deliver_once_a_server_appears() -> None:
        worker = room.create_worker(poll_interval_seconds=30)
        running = asyncio.create_task(room.run_worker(worker=worker))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(add_server, room, smtp_server)
        await asyncio.to_thread(smtp_server.wait_for, 1, 10.0)
        worker.stop()
        await running

    asyncio.run(deliver_once_a_server_appears())
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT


def test_connections_are_reused_and_bounded(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room(smtp_connections_per_server=2)
    add_server(room, smtp_server)
    room.send_mails(SYSTEM, [mail(subject=f"n{i}") for i in range(40)])
    assert room.deliver_pending() == 40
    assert len(smtp_server.wait_for(40)) == 40
    assert 1 <= smtp_server.connections <= 2


def test_higher_priority_goes_first(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room(smtp_connections_per_server=1)
    add_server(room, smtp_server)
    room.send_mails(SYSTEM, [mail(subject="low", priority="low"), mail(subject="normal"),
                             mail(subject="high", priority="high")])
    room.deliver_pending()
    assert [r.message()["Subject"] for r in smtp_server.wait_for(3)] == ["high", "normal", "low"]


def test_scheduled_and_expired_mail(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room()
    add_server(room, smtp_server)
    later = room.send_mail(SYSTEM, mail(send_at=datetime.now(UTC) + timedelta(hours=1)))
    expiring = room.send_mail(SYSTEM, mail(expires_at=datetime.now(UTC) + timedelta(milliseconds=200)))
    time.sleep(0.3)
    room.deliver_pending()
    assert room.get_mail(SYSTEM, later).status is MailStatus.QUEUED
    expired = room.get_mail(SYSTEM, expiring)
    assert expired.status is MailStatus.FAILED
    assert expired.last_error is not None and expired.last_error.startswith("expired")
    assert smtp_server.received == []


def test_new_mail_wakes_an_idle_worker_at_once(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room()
    add_server(room, smtp_server)

    async def scenario() -> float:
        worker = room.create_worker(poll_interval_seconds=60)
        running = asyncio.create_task(room.run_worker(worker=worker))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await room.send_mail_async(SYSTEM, mail())
        await asyncio.to_thread(smtp_server.wait_for, 1, 10.0)
        worker.stop()
        await running
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 10, "delivered long before the 60 s poll interval"


@pytest.mark.postgres
def test_notify_wakes_a_worker_of_another_process_on_postgres(postgres_url: str, secret_key: str,
                                                              smtp_server: SmtpServerHandle) -> None:
    with Mailroom(database_url=postgres_url, secret_key=secret_key) as worker_room, \
            Mailroom(database_url=postgres_url, secret_key=secret_key) as app_room:
        add_server(app_room, smtp_server)

        async def scenario() -> None:
            worker = worker_room.create_worker(poll_interval_seconds=60)
            running = asyncio.create_task(worker_room.run_worker(worker=worker))
            await asyncio.sleep(1.0)
            await app_room.send_mail_async(SYSTEM, mail())  # only NOTIFY can tell the other instance
            await asyncio.to_thread(smtp_server.wait_for, 1, 20.0)
            worker.stop()
            await running

        asyncio.run(scenario())


async def test_probe_reports_each_step(make_room: MakeRoom, smtp_server_factory: MakeServer) -> None:
    server = smtp_server_factory(tls="starttls", auth=("app", PASSWORD))
    room = make_room()
    settings = ServerSettings(name="t", host=server.host, port=server.port, security=Security.STARTTLS,
                              username="app")
    room.servers.add(SYSTEM, settings, PASSWORD)
    steps = await room.servers.test(SYSTEM, "t")
    assert [(s.name, s.ok) for s in steps] == [("connect", True), ("ehlo", True), ("starttls", True),
                                               ("login", True)]
    room.servers.update(SYSTEM, room.servers.get(SYSTEM, "t").id, settings, "wrong-" + PASSWORD)
    steps = await room.servers.test(SYSTEM, "t")
    assert [(s.name, s.ok) for s in steps][-1] == ("login", False)
    assert all(PASSWORD not in s.detail for s in steps)


def test_a_small_byte_budget_still_delivers_everything(make_room: MakeRoom, smtp_server: SmtpServerHandle) -> None:
    room = make_room(worker_batch_bytes=1)  # every claim takes one mail: the budget never stalls the queue
    add_server(room, smtp_server)
    ids = room.send_mails(SYSTEM, [mail(subject=f"n{i}") for i in range(6)])
    room.deliver_pending()
    assert len(smtp_server.wait_for(6)) == 6
    assert {room.get_mail(SYSTEM, mail_id).status for mail_id in ids} == {MailStatus.SENT}


@pytest.mark.parametrize(("helo_name", "warned"), [("localhost", True), ("mail.example.org", False)])
async def test_the_connection_test_warns_of_an_unqualified_ehlo_name(
        make_room: MakeRoom, smtp_server: SmtpServerHandle, helo_name: str, warned: bool) -> None:
    room = make_room(smtp_helo_name=helo_name)
    room.servers.add(SYSTEM, ServerSettings(name="t", host=smtp_server.host, port=smtp_server.port,
                                            security=Security.NONE))
    steps = {s.name: s for s in await room.servers.test(SYSTEM, "t")}
    assert steps["ehlo"].ok and f"(as {helo_name})" in steps["ehlo"].detail
    assert ("not a fully qualified host name" in steps["ehlo"].detail) is warned
