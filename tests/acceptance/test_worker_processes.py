"""Worker processes end to end: several workers on PostgreSQL, and a worker killed mid-delivery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController as Controller
from mailroom.domain.servers import Security


class CountingHandler:
    """Records the X-Test-Id of every delivered message; optionally slow, to catch a worker mid-flight."""

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.delay_seconds = delay_seconds
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        test_id = message_from_bytes(envelope.content)["X-Test-Id"]
        with self._lock:
            self.received[test_id] += 1
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[CountingHandler, int]]:
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.server.sockets[0].getsockname()[1]
    finally:
        controller.stop()


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _env(database_url: str, secret_key: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=database_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
               **{f"MAILROOM_{k.upper()}": v for k, v in extra.items()})
    return env


def _wait_until_sent(room: Mailroom, total: int, deadline_seconds: float) -> int:
    deadline = time.monotonic() + deadline_seconds
    sent = 0
    while time.monotonic() < deadline:
        sent = room.store.counts_by_status().get(MailStatus.SENT, 0)  # a search's total stops at 1,000
        if sent >= total:
            return sent
        time.sleep(0.2)
    return sent


def _add_sink_server(room: Mailroom, port: int) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port, security=Security.NONE,
                                            sender="app@example.org"))


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_on_postgres_deliver_each_mail_exactly_once(
        postgres_url: str, secret_key: str, sink: tuple[CountingHandler, int]) -> None:
    handler, port = sink
    total = 2000
    with Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _add_sink_server(room, port)
        env = _env(postgres_url, secret_key, worker_batch_size="50")
        workers = [_worker(env) for _ in range(4)]
        try:
            for start in range(0, total, 500):  # queued while the workers already run: NOTIFY wakes them
                room.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"mail {i}", text="hello",
                                              headers={"X-Test-Id": str(i)}) for i in range(start, start + 500)])
            sent = _wait_until_sent(room, total, deadline_seconds=180)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(timeout=60) for worker in workers]
        assert sent == total
        assert codes == [0, 0, 0, 0], [w.stderr.read().decode() if w.stderr else "" for w in workers]
        assert len(handler.received) == total, "every mail delivered"
        duplicates = {k: v for k, v in handler.received.items() if v > 1}
        assert duplicates == {}, "no mail delivered twice"


@pytest.mark.slow
def test_killed_worker_mails_come_back_after_the_lease(sqlite_url: str, secret_key: str) -> None:
    handler = CountingHandler(delay_seconds=0.3)
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    port = controller.port
    total = 30
    try:
        with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
            _add_sink_server(room, port)
            room.send_mails(SYSTEM, [Mail(to="a@example.org", text="x", headers={"X-Test-Id": str(i)})
                                     for i in range(total)])
            env = _env(sqlite_url, secret_key, lease_seconds="3", smtp_connections_per_server="2")
            doomed = _worker(env)
            deadline = time.monotonic() + 60
            while sum(handler.received.values()) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            stuck = room.search_mail_log(SYSTEM, statuses=frozenset({MailStatus.SENDING}), limit=1).total
            assert stuck, "the killed worker left claimed mails behind"
            survivor = _worker(env)
            try:
                sent = _wait_until_sent(room, total, deadline_seconds=90)
            finally:
                survivor.send_signal(signal.SIGTERM)
                survivor.wait(timeout=30)
            assert sent == total, "no mail lost"
            assert set(handler.received) == {str(i) for i in range(total)}
    finally:
        controller.stop()


def test_sigterm_releases_or_finishes_in_flight_mail(sqlite_url: str, secret_key: str, tmp_path: Path) -> None:
    handler = CountingHandler(delay_seconds=0.5)
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    port = controller.port
    try:
        with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
            _add_sink_server(room, port)
            room.send_mails(SYSTEM, [Mail(to="a@example.org", text="x", headers={"X-Test-Id": str(i)})
                                     for i in range(20)])
            worker = _worker(_env(sqlite_url, secret_key, smtp_connections_per_server="2",
                                  shutdown_grace_seconds="1"))
            deadline = time.monotonic() + 60
            while not handler.received and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            counts = room.log.counts(SYSTEM)
            assert counts.get(MailStatus.SENDING, 0) == 0, "nothing left leased after a graceful stop"
            assert counts.get(MailStatus.SENT, 0) + counts.get(MailStatus.QUEUED, 0) \
                + counts.get(MailStatus.DEFERRED, 0) == 20
    finally:
        controller.stop()
