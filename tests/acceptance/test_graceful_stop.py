"""A worker process stopped with SIGTERM ends within its grace period, even while a slow SMTP server holds mails
in flight, and loses none of them.

The bound is generous (grace + 2 s, for start-up noise on a busy machine): it catches a stop that waits on
the server after the grace is over (main took 3.6 s for a 1 s grace: 2 s of it waiting for QUIT's answer on
connections cut mid-mail), not a slow machine. Speed belongs in bench/.
"""

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
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController as Controller
from mailroom.domain.servers import Security

GRACE_SECONDS = 1.0
SLACK_SECONDS = 2.0
TOTAL = 20


class SlowSink:
    """Answers DATA after ``delay_seconds``; counts every message by its X-Test-Id once it has answered."""

    def __init__(self, delay_seconds: float) -> None:
        self.delay_seconds = delay_seconds
        self.received: Counter[str] = Counter()
        self.in_data = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.in_data += 1
        await asyncio.sleep(self.delay_seconds)
        with self._lock:
            self.received[message_from_bytes(envelope.content)["X-Test-Id"]] += 1
        return "250 OK"


@pytest.fixture
def slow_sink() -> Iterator[tuple[SlowSink, int]]:
    handler = SlowSink(delay_seconds=30.0)  # far longer than the grace: the mails are still in flight when it ends
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def test_sigterm_ends_the_worker_within_its_grace_and_loses_no_mail(
        sqlite_url: str, secret_key: str, slow_sink: tuple[SlowSink, int]) -> None:
    handler, port = slow_sink
    with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
        room.servers.add(SYSTEM, ServerSettings(name="slow", host="127.0.0.1", port=port, security=Security.NONE,
                                                sender="app@example.org"))
        room.send_mails(SYSTEM, [Mail(to="a@example.org", text="x", headers={"X-Test-Id": str(i)})
                                 for i in range(TOTAL)])
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
        env.update(MAILROOM_DATABASE_URL=sqlite_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
                   MAILROOM_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS), MAILROOM_SMTP_CONNECTIONS_PER_SERVER="2")
        worker = subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while handler.in_data < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert handler.in_data >= 2, "both connections are in the middle of a mail"
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
            took = time.monotonic() - signalled
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        stderr = worker.stderr.read().decode() if worker.stderr else ""
        assert code == 0, stderr
        assert took <= GRACE_SECONDS + SLACK_SECONDS, \
            f"SIGTERM → exit took {took:.1f} s with a {GRACE_SECONDS:g} s grace\n{stderr}"

        counts = room.log.counts(SYSTEM)
        assert counts.get(MailStatus.SENDING, 0) == 0, "the mails cut off by the grace were given back"
        assert sum(counts.values()) == TOTAL

        # Nothing lost: a worker against a fast server delivers every mail, the cut-off ones included.
        handler.delay_seconds = 0.0
        room.deliver_pending()
        assert room.log.counts(SYSTEM).get(MailStatus.SENT, 0) == TOTAL
        assert set(handler.received) == {str(i) for i in range(TOTAL)}
