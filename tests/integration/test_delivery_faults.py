"""SMTP fault semantics of the delivery engine, against the fault-injecting server (tests/support/fault_smtp.py).

In process: the Mailroom facade and ``Worker.run(until_idle=True)`` (``deliver_pending``). Each test names
one rule of issue #10: what counts as an attempt, how a server cools down, when a retry is due, what one
recipient's answer does to the mail and to the other recipients, and what the server sees of mailroom
(envelope addresses, EHLO name).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.domain.outbox import OutgoingMail, RecipientStatus
from mailroom.domain.servers import Security
from tests.support.fault_smtp import FaultScript, FaultSmtpServer

PASSWORD = "s3cret-Pa55-word"
MakeFault = Callable[..., FaultSmtpServer]
MakeRoom = Callable[..., Mailroom]


@pytest.fixture
def make_room(sqlite_url: str, secret_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeRoom]:
    # Short server cool-downs, so a test sees several; the setting is read from the environment, where an
    # engine that does not know it yet simply ignores it.
    monkeypatch.setenv("MAILROOM_SERVER_COOLDOWN_SECONDS", "0.3")
    rooms: list[Mailroom] = []

    def make(**overrides: Any) -> Mailroom:
        settings: dict[str, Any] = {"database_url": sqlite_url, "secret_key": secret_key, "retry_jitter": 0.0,
                                    "retry_base_delay_seconds": 0.5} | overrides
        room = Mailroom(**settings)
        rooms.append(room)
        return room

    yield make
    for room in rooms:
        room.close()


def add_server(room: Mailroom, server: FaultSmtpServer, *, username: str = "", password: str | None = None,
               timeout_seconds: float = 10.0) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="fault", host=server.host, port=server.port, security=Security.NONE,
                                            username=username, sender="app@example.org",
                                            timeout_seconds=timeout_seconds), password)


def mail(**changes: Any) -> Mail:
    fields: dict[str, Any] = {"to": "ann@example.org", "subject": "Hello", "text": "Hi Ann"} | changes
    return Mail(**fields)


def deliver_until_final(room: Mailroom, mail_ids: list[str], timeout: float = 20.0) -> list[OutgoingMail]:
    """Run the worker until idle, again and again, until every mail is final (or ``timeout`` passes):
    retries and server cool-downs are short here, but they are in the future when a run goes idle."""
    deadline = time.monotonic() + timeout
    while True:
        room.deliver_pending()
        stored = [room.get_mail(SYSTEM, i) for i in mail_ids]
        if all(m.status.is_final for m in stored) or time.monotonic() > deadline:
            return stored
        time.sleep(0.1)


def test_a_421_greeting_is_not_an_attempt_and_the_next_connection_sends(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    server = fault_smtp(FaultScript(greeting_421_next=1))
    room = make_room()
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail())
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.SENT
    assert server.stats.connections_refused == 1
    assert stored.attempts == 1, "the try that never reached the server is not an attempt"
    assert len(server.wait_for(1)) == 1


def test_a_refused_login_cools_the_server_down_and_does_not_fail_the_mail(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    """Logins refused three times with max_attempts=2: the login problem is the server's, not the mail's, so
    the mail waits (the server cooling down between logins, longer each time) and is sent once the login works.

    One long-running worker: a server's health lives in its worker. aiosmtplib tries each AUTH mechanism the
    server offers (here PLAIN, then LOGIN) within one login, so the 535s come in pairs; the rests are the
    gaps between the pairs."""
    server = fault_smtp(FaultScript(auth_535_next=4, credentials=("app", PASSWORD)))
    room = make_room(max_attempts=2, server_cooldown_seconds=0.05)  # a refused login rests 10x: 0.5 s, then 1 s
    add_server(room, server, username="app", password=PASSWORD)
    mail_id = room.send_mail(SYSTEM, mail())
    [stored] = run_worker_until_final(room, [mail_id], timeout=30)
    assert stored.status is MailStatus.SENT, stored.last_error
    assert stored.attempts == 1
    assert server.stats.logins == 1
    assert len(server.wait_for(1)) == 1
    times = server.stats.auth_times
    rests = [later - earlier for earlier, later in itertools.pairwise(times) if later - earlier > 0.2]
    assert len(rests) == 2, f"two rests between three logins: {times}"
    assert rests[0] >= 0.45 and rests[1] >= 0.9, f"the server rests, longer each time: {rests}"


def run_worker_until_final(room: Mailroom, mail_ids: list[str], timeout: float = 20.0) -> list[OutgoingMail]:
    """One worker running (as in production) until every mail is final or ``timeout`` passes."""

    async def go() -> list[OutgoingMail]:
        worker = room.create_worker(poll_interval_seconds=0.05)
        task = asyncio.create_task(room.run_worker(worker=worker))
        deadline = time.monotonic() + timeout
        try:
            while True:
                stored = [await room.get_mail_async(SYSTEM, i) for i in mail_ids]
                if all(m.status.is_final for m in stored) or time.monotonic() > deadline:
                    return stored
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await task

    return asyncio.run(go())


def test_the_password_is_read_again_after_a_refused_login(make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    """An operator fixing a wrong password fixes the waiting mail too: the next login uses the new one."""
    server = fault_smtp(FaultScript(credentials=("app", PASSWORD)))
    room = make_room(max_attempts=1)
    add_server(room, server, username="app", password="an-old-password")
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    assert server.stats.auth_attempts >= 1 and server.stats.logins == 0
    assert not room.get_mail(SYSTEM, mail_id).status.is_final, "a refused login does not fail the mail"
    current = room.servers.get(SYSTEM, "fault")
    room.servers.update(SYSTEM, "fault", ServerSettings(
        name=current.name, host=current.host, port=current.port, security=current.security,
        username=current.username, sender="app@example.org"), PASSWORD)
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.SENT, stored.last_error
    assert server.stats.logins == 1


def test_a_server_taking_one_connection_gets_every_mail_at_the_first_attempt(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    """mailroom opens 4 connections, the server greets all but one with 421: connections it could not
    open are not attempts of any mail, and the one connection carries all 20."""
    server = fault_smtp(FaultScript(max_concurrent=1))
    room = make_room(smtp_connections_per_server=4)
    add_server(room, server)
    ids = room.send_mails(SYSTEM, [mail(subject=f"n{i}") for i in range(20)])
    stored = deliver_until_final(room, ids, timeout=30)
    assert [m.status for m in stored] == [MailStatus.SENT] * 20
    assert [m.attempts for m in stored] == [1] * 20
    assert server.stats.max_concurrent_seen == 1
    assert server.stats.duplicates == 0 and server.stats.total_accepted == 20


def test_a_stall_after_data_is_an_uncertain_attempt_retried_a_full_delay_after_it_ended(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    from mailroom.web.api.schemas import AttemptOut

    server = fault_smtp(FaultScript(stall_after_data_next=1))
    room = make_room(retry_base_delay_seconds=60)
    add_server(room, server, timeout_seconds=1.5)
    mail_id = room.send_mail(SYSTEM, mail())
    room.deliver_pending()
    stored = room.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.DEFERRED
    [attempt] = stored.attempt_log
    ended = attempt.started_at + timedelta(milliseconds=attempt.duration_ms)
    assert attempt.duration_ms >= 1000, "the attempt lasted until the timeout"
    assert stored.next_attempt_at is not None
    # The delay counts from the end: from the start, a 30 s timeout with a 30 s delay would retry at once.
    assert stored.next_attempt_at >= ended + timedelta(seconds=60) - timedelta(milliseconds=5), \
        f"next attempt {stored.next_attempt_at}, attempt started {attempt.started_at} and ended {ended}"
    assert attempt.uncertain is True, "the server may have taken the mail: nobody knows"  # type: ignore[attr-defined]
    assert AttemptOut.of(attempt).model_dump(mode="json")["uncertain"] is True


def test_a_450_for_one_recipient_defers_only_that_recipient(make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    script = FaultScript()
    script.refuse_rcpt("bob@example.org", 450, times=1)
    server = fault_smtp(script)
    room = make_room(retry_base_delay_seconds=1.0)
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail(to=["ann@example.org", "bob@example.org"]))
    room.deliver_pending()
    first = room.get_mail(SYSTEM, mail_id)
    assert first.status is MailStatus.DEFERRED
    assert {r.email: r.status for r in first.recipients} == {
        "ann@example.org": RecipientStatus.ACCEPTED, "bob@example.org": RecipientStatus.DEFERRED}
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.SENT
    assert {r.email: r.status for r in stored.recipients} == {
        "ann@example.org": RecipientStatus.ACCEPTED, "bob@example.org": RecipientStatus.ACCEPTED}
    received = server.wait_for(2)
    assert [m.rcpt_tos for m in received] == [["ann@example.org"], ["bob@example.org"]], \
        "the retry goes to the deferred recipient only"


def test_a_550_for_one_of_two_recipients_is_partially_failed(make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    script = FaultScript()
    script.refuse_rcpt("bob@example.org", 550)
    server = fault_smtp(script)
    room = make_room()
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail(to=["ann@example.org", "bob@example.org"]))
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.PARTIALLY_FAILED  # type: ignore[attr-defined]
    assert stored.status.is_final
    by_email = {r.email: r for r in stored.recipients}
    assert (by_email["ann@example.org"].status, by_email["ann@example.org"].code) == (RecipientStatus.ACCEPTED, 250)
    bob = by_email["bob@example.org"]
    assert (bob.status, bob.code) == (RecipientStatus.REFUSED, 550)
    assert bob.reply is not None and "bob@example.org" in bob.reply and "ann@" not in bob.reply
    assert [m.rcpt_tos for m in server.wait_for(1)] == [["ann@example.org"]]


def test_every_recipient_refused_keeps_each_ones_own_code_and_reply(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    script = FaultScript()
    script.refuse_rcpt("ann@example.org", 550)
    script.refuse_rcpt("bob@example.org", 550)
    server = fault_smtp(script)
    room = make_room()
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail(to=["ann@example.org", "bob@example.org"]))
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.FAILED
    for recipient in stored.recipients:
        other = "bob@" if recipient.email.startswith("ann@") else "ann@"
        assert (recipient.status, recipient.code) == (RecipientStatus.REFUSED, 550), recipient
        assert recipient.reply is not None and recipient.email in recipient.reply, recipient
        assert other not in recipient.reply, f"replies are not joined: {recipient.reply}"
    assert server.stats.total_accepted == 0


def test_an_idn_domain_goes_out_in_idna_2008_like_the_header(make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    server = fault_smtp()
    room = make_room()
    add_server(room, server)
    mail_id = room.send_mail(SYSTEM, mail(to="a@straße.de"))
    [stored] = deliver_until_final(room, [mail_id])
    assert stored.status is MailStatus.SENT
    [received] = server.wait_for(1)
    assert received.rcpt_tos == ["a@xn--strae-oqa.de"], "IDNA 2008 keeps ß (IDNA 2003 made it 'strasse')"
    assert b"xn--strae-oqa.de" in received.data.split(b"\r\n\r\n", 1)[0]


def test_the_ehlo_name_is_the_configured_one(make_room: MakeRoom, fault_smtp: MakeFault,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_SMTP_HELO_NAME", "mail.example.org")
    server = fault_smtp()
    room = make_room()
    add_server(room, server)
    deliver_until_final(room, [room.send_mail(SYSTEM, mail())])
    [received] = server.wait_for(1)
    assert received.ehlo_name == "mail.example.org"


def test_the_default_ehlo_name_is_a_dotted_fqdn_or_the_senders_domain(
        make_room: MakeRoom, fault_smtp: MakeFault) -> None:
    import socket

    server = fault_smtp()
    room = make_room()
    add_server(room, server)
    deliver_until_final(room, [room.send_mail(SYSTEM, mail())])
    [received] = server.wait_for(1)
    fqdn = socket.getfqdn()
    assert received.ehlo_name == (fqdn if "." in fqdn else "example.org")
    assert received.ehlo_name != "localhost"
