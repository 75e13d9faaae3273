"""On SQLite a sender in another process wakes an idle worker process at once, not at its next poll.

The workers poll every 30 s here, so a mail that arrives within the (generous) deadline was woken for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController as Controller
from mailroom.domain.servers import Security

POLL_SECONDS = "30"
# Far below the poll, far above a wake-up (milliseconds) on a busy shared machine.
WOKEN_WITHIN_SECONDS = 10.0


class SubjectSink:
    """Records the subject of every delivered message."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._changed:
            self.subjects.append(str(message_from_bytes(envelope.content)["Subject"]))
            self._changed.notify_all()
        return "250 OK"

    def arrived(self, subject: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: subject in self.subjects, timeout)


@pytest.fixture
def sink() -> Iterator[tuple[SubjectSink, int]]:
    handler = SubjectSink()
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def _env(database_url: str, secret_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=database_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
               MAILROOM_POLL_INTERVAL_SECONDS=POLL_SECONDS)
    return env


def _start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(count)]


def _stop(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    return [worker.wait(timeout=60) for worker in workers]


def _until_idle(room: Mailroom, sink: SubjectSink, subjects: list[str]) -> None:
    """Wait until the workers delivered the warm-up mails and wrote the results: from then on they idle."""
    for subject in subjects:
        assert sink.arrived(subject, timeout=60), f"{subject!r} was not delivered: the workers did not start"
    deadline = time.monotonic() + 30
    while room.search_mail_log(SYSTEM, statuses=frozenset({MailStatus.SENT}), limit=1).total < len(subjects):
        assert time.monotonic() < deadline, "the warm-up results were not written"
        time.sleep(0.05)
    # The worker looks for more mail right after writing a result; a moment later it waits for the next poll.
    time.sleep(1)


@pytest.mark.slow
def test_a_mail_queued_in_another_process_wakes_an_idle_sqlite_worker(
        sqlite_url: str, secret_key: str, sink: tuple[SubjectSink, int]) -> None:
    handler, port = sink
    with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
        room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port, security=Security.NONE,
                                                sender="app@example.org"))
        room.send_mail(SYSTEM, Mail(to="a@example.org", subject="warm-up", text="x"))
        workers = _start_workers(_env(sqlite_url, secret_key), 1)
        try:
            _until_idle(room, handler, ["warm-up"])
            room.send_mail(SYSTEM, Mail(to="a@example.org", subject="woken", text="x"))
            woken = handler.arrived("woken", timeout=WOKEN_WITHIN_SECONDS)
        finally:
            codes = _stop(workers)
        assert woken, f"the idle worker did not send the mail within {WOKEN_WITHIN_SECONDS} s (poll: 30 s)"
        assert codes == [0], [w.stderr.read().decode() if w.stderr else "" for w in workers]


@pytest.mark.slow
def test_senders_in_several_processes_wake_several_idle_sqlite_workers(
        sqlite_url: str, secret_key: str, sink: tuple[SubjectSink, int]) -> None:
    handler, port = sink
    env = _env(sqlite_url, secret_key)
    with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
        room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port, security=Security.NONE,
                                                sender="app@example.org"))
        room.send_mails(SYSTEM, [Mail(to="a@example.org", subject=f"warm-up {i}", text="x") for i in range(2)])
        workers = _start_workers(env, 2)
        try:
            _until_idle(room, handler, ["warm-up 0", "warm-up 1"])
            # A second sender process (the CLI) and this one, each queueing while both workers idle.
            cli = subprocess.run([sys.executable, "-m", "mailroom.cli", "send", "--to", "b@example.org",
                                  "--subject", "from the cli", "--text", "x"], env=env, capture_output=True,
                                 timeout=60, check=False)
            assert cli.returncode == 0, cli.stderr.decode()
            from_cli = handler.arrived("from the cli", timeout=WOKEN_WITHIN_SECONDS)
            room.send_mail(SYSTEM, Mail(to="a@example.org", subject="from the test", text="x"))
            from_test = handler.arrived("from the test", timeout=WOKEN_WITHIN_SECONDS)
        finally:
            codes = _stop(workers)
        assert from_cli, "the mail queued by the CLI process waited for the poll"
        assert from_test, "the mail queued by the test process waited for the poll"
        assert codes == [0, 0], [w.stderr.read().decode() if w.stderr else "" for w in workers]
        assert handler.subjects.count("from the test") == 1, "delivered once, by one of the two workers"
