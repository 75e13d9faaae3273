"""A stop ends when the grace period does, even against a server that answers neither the mail nor QUIT
(in-memory fakes; the process-level bound is in tests/acceptance/test_graceful_stop.py)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from mailroom.domain.outbox import MailStatus
from mailroom.domain.servers import SmtpServer
from mailroom.ports import SendReport
from tests.support.fakes import FakeOutbox, FakeServerStore, FakeSession, FakeTransport, server
from tests.unit.test_worker import make_worker


class _SilentSession(FakeSession):
    """Takes the message and never answers; QUIT is not answered either."""

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        self.transport.in_flight += 1  # type: ignore[attr-defined]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await asyncio.Event().wait()  # a QUIT whose answer never comes; only a cancel ends it


class _SilentTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0

    async def connect(self, server: SmtpServer, password: str | None, *, sender: str | None = None) -> FakeSession:
        await asyncio.sleep(0)
        return _SilentSession(self, server, password)


def test_a_stop_ends_with_the_grace_and_gives_every_mail_back() -> None:
    outbox, servers, transport = FakeOutbox(), FakeServerStore(server()), _SilentTransport()
    for n in range(6):
        outbox.put(f"m{n}")
    worker = make_worker(outbox, servers, transport, connections_per_server=2, shutdown_grace_seconds=0.2)

    async def go() -> None:
        task = asyncio.create_task(worker.run())
        while transport.in_flight < 2:
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, 30)  # before the fix: waits forever on QUIT's answer

    asyncio.run(go())
    statuses = collections.Counter(m.status for m in outbox.mails.values())
    assert statuses == {MailStatus.QUEUED: 6}, "the cut-off mails and the unstarted ones are all given back"
    assert all(m.attempts == 0 for m in outbox.mails.values())
