"""Waking an idle worker the moment mail is queued.

In-process an asyncio event; across processes LISTEN/NOTIFY on PostgreSQL, and on SQLite a UNIX datagram
socket per worker in a private folder beside the database file (``LocalSocketWakeup``). The worker's poll
(``poll_interval_seconds``) stays the fallback whenever a wake-up is lost or cannot be set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

log = logging.getLogger(__name__)

CHANNEL = "mailroom_outbox"


class EventWakeup:
    """In-process wake-up; ``notify()`` is safe from any thread, before or during ``wait()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        with self._lock:
            self._pending = True
            loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(event.set)

    async def start(self) -> None:
        """Begin listening for wake-ups from other processes (a worker calls it before running)."""

    async def stop(self) -> None:
        """Stop listening; the in-process part keeps working."""

    async def wait(self, timeout: float | None) -> bool:
        with self._lock:
            if self._event is None or self._loop is not asyncio.get_running_loop():
                self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
            event = self._event
            if self._pending:
                self._pending = False
                return True
            event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        with self._lock:
            self._pending = False
        return True


class PostgresWakeup(EventWakeup):
    """Adds a LISTEN connection so that mails queued by other processes (or machines) wake this worker.

    The insert trigger of the migrations sends the NOTIFY; if the listening connection breaks, it is
    opened again, and the worker's fallback poll covers the gap.
    """

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="mailroom-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.notify()  # anything queued while we were not listening
                    async for _ in conn.notifies():
                        self.notify()
            except psycopg.Error as exc:
                log.warning("LISTEN %s failed (%s); retrying in 5 s", CHANNEL, exc)
                await asyncio.sleep(5)
