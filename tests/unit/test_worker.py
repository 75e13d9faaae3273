"""The worker's logic without a database or a network: in-memory fakes of its ports (tests/support/fakes.py)."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from mailroom.domain.outbox import MailStatus
from mailroom.domain.rate_limits import LimitScope, RateLimit, Window
from mailroom.domain.retry import RetryPolicy
from mailroom.usecases.deliver_mail import DeliverMail
from mailroom.worker import Worker
from tests.support.fakes import FakeOutbox, FakeRateLimits, FakeServerStore, FakeTransport, RealClock, server


class _NoWakeup:
    def notify(self) -> None:
        pass

    async def wait(self, timeout: float | None) -> bool:
        await asyncio.sleep(min(timeout or 0.05, 0.05))
        return False


class _Builder:
    def build(self, mail: object, *, message_id: str, date: object) -> bytes:
        raise NotImplementedError

    def with_from(self, message: bytes, sender: str) -> tuple[bytes, str | None]:
        return message, None

    def make_message_id(self, mail: object) -> str:
        raise NotImplementedError


def make_worker(outbox: FakeOutbox, servers: FakeServerStore, transport: FakeTransport, **options: object) -> Worker:
    clock = RealClock()
    retry_delay = float(options.pop("retry_delay", 0))  # type: ignore[arg-type]
    settings: dict[str, object] = {"batch_size": 50, "lease_seconds": 30.0, "poll_interval_seconds": 0.05,
                                   "connections_per_server": 2, "server_cooldown_seconds": 30.0,
                                   "shutdown_grace_seconds": 2.0} | options
    deliver = DeliverMail(builder=_Builder(), clock=clock, policy=RetryPolicy(base_delay_seconds=retry_delay, jitter=0))
    return Worker(outbox=outbox, servers=servers, deliver=deliver, transport=transport,  # type: ignore[arg-type]
                  wakeup=_NoWakeup(), clock=clock, **settings)  # type: ignore[arg-type]


def run(worker: Worker) -> None:
    asyncio.run(asyncio.wait_for(worker.run(until_idle=True), timeout=30))


def test_a_database_blip_does_not_end_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    for n in range(5):
        outbox.put(f"m{n}")
    outbox.fail["claim"] = 2
    outbox.fail["record"] = 2
    servers.fail["list"] = 1
    run(make_worker(outbox, servers, transport))
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert outbox.fail.raised == {"claim": 2, "record": 2}
    assert "trying again" in caplog.text and "works again" in caplog.text


def test_a_claim_committed_while_its_answer_was_lost_is_sent_now_not_after_its_lease() -> None:
    """The connection drops during the claim's commit: the mails are ``sending`` under the worker's claim,
    the worker saw an error. It takes that claim up again instead of leaving the mails for the lease."""
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    for n in range(5):
        outbox.put(f"m{n}")
    outbox.fail.lose_answer["claim"] = 1
    run(make_worker(outbox, servers, transport, lease_seconds=3600.0))
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    copies = collections.Counter(r for s in transport.sent for r in s.recipients)
    assert len(copies) == 5 and set(copies.values()) == {1}
    assert {m.attempts for m in outbox.mails.values()} == {1}


def test_the_lease_a_worker_counts_on_starts_when_it_asked_for_the_claim() -> None:
    """A slow claim must not stretch the worker's idea of its lease past the store's: it would start mails
    that another worker may already have claimed (the chaos test saw one such duplicate)."""
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    outbox.put("m1")
    outbox.claim_seconds = 0.5
    worker = make_worker(outbox, servers, transport, lease_seconds=2.0)

    async def claim_once() -> float:
        worker._db_thread = ThreadPoolExecutor(max_workers=1)
        asked = time.monotonic()
        await worker._claim(10)
        return asked

    asked = asyncio.run(claim_once())
    [held] = worker._held.values()
    assert held.lease_until < asked + 2.0 + outbox.claim_seconds / 2  # not after the slow answer


def test_results_written_while_their_answer_was_lost_are_not_logged_twice() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    for n in range(5):
        outbox.put(f"m{n}")
    outbox.fail.lose_answer["record"] = 1
    run(make_worker(outbox, servers, transport))
    assert outbox.fail.raised == {"record": 1}
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert [len(m.attempt_log) for m in outbox.mails.values()] == [1] * 5


def test_a_password_read_that_fails_once_is_read_again_at_the_next_connect() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    outbox.put("m1")
    servers.fail["password"] = 1
    run(make_worker(outbox, servers, transport))
    assert outbox.mails["m1"].status is MailStatus.SENT


def test_every_connect_reads_the_password_again() -> None:
    """The stale password cache: a changed password must be used at the next connection, not after a restart."""
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    outbox.put("m1")
    run(make_worker(outbox, servers, transport))
    servers.password_value = "secret-2"
    outbox.put("m2")
    run(make_worker(outbox, servers, transport))
    assert [s.password for s in transport.sent] == ["secret-1", "secret-2"]


def test_mails_outlasting_their_lease_are_renewed_and_sent_once_by_two_workers() -> None:
    """A batch that takes longer than the lease: the heartbeat keeps it, nobody sends a mail twice."""
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    # Each worker's half takes ~1.8 s, longer than its 1.5 s lease; the heartbeat (every 0.5 s) may be late by a
    # second on a loaded machine (the full suite runs three processes on two cores) before a lease is lost.
    transport.send_delay = 0.12
    for n in range(30):
        outbox.put(f"m{n:02}")

    async def both() -> None:
        first = make_worker(outbox, servers, transport, lease_seconds=1.5, connections_per_server=1)
        second = make_worker(outbox, servers, transport, lease_seconds=1.5, connections_per_server=1)
        await asyncio.wait_for(asyncio.gather(first.run(until_idle=True), second.run(until_idle=True)), 30)

    asyncio.run(both())
    copies = collections.Counter(r for s in transport.sent for r in s.recipients)
    assert len(copies) == 30 and set(copies.values()) == {1}
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert outbox.extended > 0
    assert max(m.attempts for m in outbox.mails.values()) == 1


def test_a_mail_taken_over_by_another_worker_is_not_sent() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    transport.send_delay = 0.1
    for n in range(6):
        outbox.put(f"m{n}")
    worker = make_worker(outbox, servers, transport, lease_seconds=0.45, connections_per_server=1)

    async def steal_the_rest() -> None:
        await asyncio.sleep(0.05)  # m0 is being sent, the rest wait for the one connection
        for n in range(2, 6):
            outbox.steal(f"m{n}")

    async def go() -> None:
        await asyncio.gather(worker.run(until_idle=True), steal_the_rest())

    asyncio.run(asyncio.wait_for(go(), 30))
    sent = {r for s in transport.sent for r in s.recipients}
    assert sent <= {"m0@example.org", "m1@example.org"}
    assert [outbox.mails[f"m{n}"].status for n in range(2, 6)] == [MailStatus.SENDING] * 4  # the other one holds them


def test_a_refused_connection_keeps_the_attempt_and_fails_over() -> None:
    outbox = FakeOutbox()
    servers = FakeServerStore(server("primary", priority=10), server("backup"))
    transport = FakeTransport()
    transport.refuse_connects["primary"] = 100
    for n in range(4):
        outbox.put(f"m{n}")
    run(make_worker(outbox, servers, transport))
    assert {s.server for s in transport.sent} == {"backup"}
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert {m.attempts for m in outbox.mails.values()} == {1}
    assert sum(1 for name, _ in transport.connects if name == "primary") == 1  # then it cools down


def test_with_the_only_server_unreachable_mails_wait_with_the_reason_and_no_attempt_spent(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    transport.refuse_connects["relay"] = 1
    outbox.put("m1")
    run(make_worker(outbox, servers, transport))
    mail = outbox.mails["m1"]
    assert mail.status is MailStatus.QUEUED and mail.attempts == 0
    assert mail.last_error is not None and "421 try later" in mail.last_error
    assert "cools down" in caplog.text


def test_a_server_taking_fewer_connections_is_used_with_as_many_as_it_takes() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    transport.max_connections["relay"] = 1
    transport.send_delay = 0.01
    for n in range(20):
        outbox.put(f"m{n:02}")
    run(make_worker(outbox, servers, transport, connections_per_server=2))
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert {m.attempts for m in outbox.mails.values()} == {1}
    assert transport.peak["relay"] == 1


def test_a_temporary_refusal_of_one_recipient_retries_only_that_one() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    outbox.put("m1", ["ann@example.org", "bob@example.org"])
    transport.rcpt_answers["bob@example.org"] = (450, "4.2.0 mailbox busy")
    run(make_worker(outbox, servers, transport, retry_delay=60))
    mail = outbox.mails["m1"]
    assert mail.status is MailStatus.DEFERRED
    assert mail.recipient_status == {"ann@example.org": "accepted", "bob@example.org": "deferred"}
    del transport.rcpt_answers["bob@example.org"]
    mail.next_attempt_at = outbox.clock.now()
    run(make_worker(outbox, servers, transport))
    assert mail.status is MailStatus.SENT
    assert [s.recipients for s in transport.sent] == [("ann@example.org",), ("bob@example.org",)]


def test_stop_gives_back_what_was_not_sent() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    transport.send_delay = 0.2
    for n in range(10):
        outbox.put(f"m{n}")
    worker = make_worker(outbox, servers, transport, connections_per_server=1)

    async def go() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        worker.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(go())
    statuses = collections.Counter(m.status for m in outbox.mails.values())
    assert statuses[MailStatus.SENDING] == 0
    assert statuses[MailStatus.SENT] == len(transport.sent)
    assert all(m.attempts == 0 for m in outbox.mails.values() if m.status is MailStatus.QUEUED)


def test_a_long_database_outage_pauses_the_worker_and_a_stop_still_ends_it() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    outbox.put("m1")
    outbox.fail["claim"] = 1_000_000
    worker = make_worker(outbox, servers, transport, shutdown_grace_seconds=1.0)

    async def go() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        assert not task.done()  # still trying, not ended by the outage
        outbox.fail["claim"] = 0  # the database is back
        await asyncio.sleep(0.5 + 5.0)  # the longest backoff step, then a claim
        assert outbox.mails["m1"].status is MailStatus.SENT
        outbox.fail["claim"] = 1_000_000
        outbox.put("m2")
        await asyncio.sleep(0.3)
        worker.stop()
        await asyncio.wait_for(task, 5)  # returns, does not raise

    asyncio.run(go())
    assert outbox.fail.raised["claim"] > 3


class _CountingOutbox(FakeOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.record_sizes: list[int] = []

    def record(self, results: collections.abc.Sequence[object], *, again: bool = False) -> None:  # type: ignore[override]
        self.record_sizes.append(len(results))
        super().record(results, again=again)  # type: ignore[arg-type]


def test_results_that_arrive_together_are_committed_together() -> None:
    """A commit per result made delivery slower than the bare client by half (the commit's CPU is taken from
    the senders): results that come within a few milliseconds of each other share a transaction."""
    outbox, servers, transport = _CountingOutbox(), FakeServerStore(server()), FakeTransport()
    transport.send_delay = 0.001  # results arrive one by one, as from a real server
    for n in range(40):
        outbox.put(f"m{n}")
    run(make_worker(outbox, servers, transport, connections_per_server=2))
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert sum(outbox.record_sizes) == 40
    assert len(outbox.record_sizes) <= 10, outbox.record_sizes


def test_a_server_over_its_rate_limit_holds_the_rest_back_without_spending_attempts() -> None:
    outbox, servers, transport, limits = FakeOutbox(), FakeServerStore(server()), FakeTransport(), FakeRateLimits()
    limits.set_limits(LimitScope.server("id-relay"), [RateLimit(3, Window.MINUTE)])
    for n in range(10):
        outbox.put(f"m{n}")
    run(make_worker(outbox, servers, transport, rate_limits=limits))
    assert len(transport.sent) == 3
    waiting = [m for m in outbox.mails.values() if m.status is MailStatus.QUEUED]
    assert len(waiting) == 7 and all(m.attempts == 0 for m in waiting)
    assert all("rate limit of relay (3/minute)" in (m.last_error or "") for m in waiting)
    assert min(m.next_attempt_at for m in waiting) > datetime.now(UTC) + timedelta(seconds=50)


def test_a_limited_server_hands_its_mails_to_the_next_server() -> None:
    outbox, transport, limits = FakeOutbox(), FakeTransport(), FakeRateLimits()
    servers = FakeServerStore(server("relay", priority=10), server("backup"))
    limits.set_limits(LimitScope.server("id-relay"), [RateLimit(2, Window.HOUR)])
    for n in range(6):
        outbox.put(f"m{n}")
    run(make_worker(outbox, servers, transport, rate_limits=limits))
    assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
    assert collections.Counter(s.server for s in transport.sent) == {"relay": 2, "backup": 4}


def test_a_domain_limit_holds_back_only_the_mails_to_that_domain() -> None:
    outbox, servers, transport, limits = FakeOutbox(), FakeServerStore(server()), FakeTransport(), FakeRateLimits()
    limits.set_limits(LimitScope.domain("gmail.com"), [RateLimit(1, Window.MINUTE)])
    for n in range(3):
        outbox.put(f"g{n}", [f"user{n}@gmail.com"])
        outbox.put(f"o{n}", [f"user{n}@example.org", f"other{n}@GMAIL.com"] if n == 0 else [f"user{n}@example.org"])
    run(make_worker(outbox, servers, transport, rate_limits=limits))
    sent_to_gmail = [r for s in transport.sent for r in s.recipients if r.lower().endswith("@gmail.com")]
    assert len(sent_to_gmail) == 1
    assert {outbox.mails[f"o{n}"].status for n in (1, 2)} == {MailStatus.SENT}
    held = [m for m in outbox.mails.values() if m.status is MailStatus.QUEUED]
    assert len(held) == 3 and all("rate limit of gmail.com (1/minute)" in (m.last_error or "") for m in held)


def test_a_server_answering_too_many_gets_fewer_connections_then_a_pause() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), FakeTransport()
    transport.send_delay = 0.01
    for n in range(12):
        outbox.put(f"m{n}", [f"busy{n}@example.org"])
        transport.rcpt_answers[f"busy{n}@example.org"] = (452, "4.7.1 too many messages, slow down")
    worker = make_worker(outbox, servers, transport, connections_per_server=3, retry_delay=60)
    run(worker)
    health = worker._health["id-relay"]  # the server's health is what this test is about
    assert health.target == 1 and health.cooling(time.monotonic())
    assert len(transport.sent) < 12, "a paused server gets no more mail"
    assert all(m.attempts <= 1 for m in outbox.mails.values())


def test_a_domain_limit_holds_for_recipients_written_in_unicode() -> None:
    """Limits are kept in the envelope's ASCII form (xn--…); a recipient stored as a@straße.de escaped them."""
    outbox, servers, transport, limits = FakeOutbox(), FakeServerStore(server()), FakeTransport(), FakeRateLimits()
    limits.set_limits(LimitScope.domain("straße.de"), [RateLimit(1, Window.MINUTE)])
    for n in range(3):
        outbox.put(f"m{n}", [f"user{n}@straße.de"])
    run(make_worker(outbox, servers, transport, rate_limits=limits))
    assert len(transport.sent) == 1


class _FakeSearchIndex:
    """Implements the SearchIndex port: a backlog of mails to index; fails the first ``fail`` calls."""

    def __init__(self, backlog: int, fail: int = 0) -> None:
        self.backlog = backlog
        self.fail = fail
        self.batches: list[int] = []

    def index_for_search(self, limit: int) -> int:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database is locked")
        done = min(limit, self.backlog)
        self.backlog -= done
        if done:
            self.batches.append(done)
        return done


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_worker_indexes_new_mails_for_search_in_batches_and_survives_a_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    index = _FakeSearchIndex(backlog=2500, fail=1)
    worker = make_worker(FakeOutbox(), FakeServerStore(server()), FakeTransport(), search_index=index,
                         search_index_interval_seconds=0.02)

    async def scenario() -> None:
        running = asyncio.create_task(worker.run())
        await _until(lambda: index.backlog == 0)
        index.backlog = 10  # new mails: indexed at the next interval
        await _until(lambda: index.backlog == 0)
        worker.stop()
        await running

    asyncio.run(scenario())
    assert index.batches == [1000, 1000, 500, 10]
    assert "indexing the log for search failed" in caplog.text


def test_the_search_index_waits_while_mails_are_on_their_way(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox, transport = FakeOutbox(), FakeTransport()
    transport.send_delay = 0.3
    for n in range(4):
        outbox.put(f"m{n}")
    index = _FakeSearchIndex(backlog=5)
    worker = make_worker(outbox, FakeServerStore(server()), transport, search_index=index,
                         search_index_interval_seconds=0.02)

    async def scenario() -> None:
        running = asyncio.create_task(worker.run())
        await _until(lambda: len(transport.sent) >= 1)
        assert index.batches == []  # mails in hand: delivery first
        monkeypatch.setattr("mailroom.worker.SEARCH_INDEX_MAX_DELAY", 0.0)  # ... but not for ever
        await _until(lambda: index.backlog == 0)
        worker.stop()
        await running

    asyncio.run(scenario())
    assert index.batches == [5]


@pytest.mark.parametrize("send_delay", [0.0, 0.001, 0.005])
def test_a_server_taking_fewer_connections_still_gets_every_mail(send_delay: float) -> None:
    """Four senders, a server that takes one connection: the senders above the lowered target end, and the
    lane's mails must not be left without one (the worker waited for ever when they all ended)."""
    for _ in range(20):
        outbox, transport = FakeOutbox(), FakeTransport()
        transport.max_connections["relay"] = 1
        transport.send_delay = send_delay
        for n in range(12):
            outbox.put(f"m{n:02}")
        run(make_worker(outbox, FakeServerStore(server()), transport, connections_per_server=4))
        assert {m.status for m in outbox.mails.values()} == {MailStatus.SENT}
