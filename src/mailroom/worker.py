"""The delivery loop: claim due mails, deliver them concurrently, write results, sleep until woken.

The loop holds up to ``batch_size`` claimed mails and claims more when half have finished, so SMTP
connections never wait for the database; of those, only as many are being delivered as there are
connections to use, the rest wait in line; a claim also stops at ``batch_bytes`` of messages, so a queue
of large mails cannot fill the memory. Results are written by one writer task that groups whatever
has finished into one transaction (group commit): a crash loses at most the few results not yet
written, whose mails then return to the queue when their lease ends.

Idle, the worker waits on the wake-up signal (in-process event, PostgreSQL NOTIFY) with a timeout that
ends when the next scheduled or deferred mail is due, capped by ``poll_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from mailroom.domain.servers import SmtpServer
from mailroom.errors import NoServerConfigured
from mailroom.ports import ClaimedMail, Clock, DeliveryResult, Outbox, ServerStore, Wakeup
from mailroom.usecases.deliver_mail import DeliverMail, SessionPool
from mailroom.usecases.retention import PurgeExpired

log = logging.getLogger(__name__)
T = TypeVar("T")



# How long the result writer waits for more results before a commit, and the most it writes at once.
# Fewer, larger transactions cost SQLite far less per mail (rows of one batch share pages); a crash
# can lose this much of results, whose mails are then sent again after their lease.
RESULT_LINGER_SECONDS = 0.15
RESULT_BATCH_MAX = 1000


class Worker:
    def __init__(self, *, outbox: Outbox, servers: ServerStore, deliver: DeliverMail, pool: SessionPool,
                 wakeup: Wakeup, clock: Clock, purge: PurgeExpired | None = None, batch_size: int = 300,
                 batch_bytes: int | None = 32 * 1024 * 1024,
                 lease_seconds: float = 300.0, poll_interval_seconds: float = 2.0,
                 retention_interval_seconds: float = 600.0, shutdown_grace_seconds: float = 20.0,
                 worker_id: str | None = None) -> None:
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._outbox = outbox
        self._servers = servers
        self._deliver = deliver
        self._pool = pool
        self._wakeup = wakeup
        self._clock = clock
        self._purge = purge
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_interval_seconds
        self._retention_seconds = retention_interval_seconds
        self._grace_seconds = shutdown_grace_seconds
        self._stopping = asyncio.Event()
        self._inflight: dict[asyncio.Task[DeliveryResult], ClaimedMail] = {}
        self._results: asyncio.Queue[DeliveryResult | None] = asyncio.Queue()
        self.delivered = 0
        self._waiting_for_server = False
        self._progress = asyncio.Event()  # a delivery finished
        self._capacity = asyncio.Event()  # fewer than _refill_below in flight
        self._refill_below = max(1, batch_size // 2)
        self._unwritten = 0
        self._all_written = asyncio.Event()
        self._db_thread: ThreadPoolExecutor | None = None  # one per run()
        self._queued: collections.deque[tuple[ClaimedMail, list[SmtpServer]]] = collections.deque()
        self._connections = 1  # deliveries run at once: the pool's sessions over the enabled servers
        self._nothing_running = asyncio.Event()  # ends the result writer's linger early

    async def _in_db_thread(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a storage call on the worker's one database thread.

        One thread, not the default pool: the worker's claims and result writes then queue in order
        instead of meeting at SQLite's write lock (where the loser sleeps in the busy handler), and only
        one thread competes with the event loop for the GIL.
        """
        assert self._db_thread is not None, "storage calls happen inside run()"
        return await asyncio.get_running_loop().run_in_executor(
            self._db_thread, functools.partial(function, *args, **kwargs))

    def stop(self) -> None:
        """Ask the loop to finish in-flight mails (up to the grace period) and return."""
        self._stopping.set()
        self._wakeup.notify()

    async def run(self, *, until_idle: bool = False) -> None:
        """Deliver until ``stop()``; with ``until_idle``, return once nothing is due or in flight."""
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailroom-db")
        writer = asyncio.create_task(self._write_results(), name="mailroom-results")
        retention = asyncio.create_task(self._retention_loop(), name="mailroom-retention") if self._purge else None
        log.info("worker %s started", self.id)
        try:
            await self._loop(until_idle)
        finally:
            await self._shutdown(writer, retention)
            log.info("worker %s stopped after %d deliveries", self.id, self.delivered)

    async def _loop(self, until_idle: bool) -> None:
        half = max(1, self._batch_size // 2)
        while not self._stopping.is_set():
            claimed, asked = 0, 0
            if self._held() < half:
                asked = self._batch_size - self._held()
                claimed = await self._claim_and_start(asked)
            if not self._held():
                if claimed == 0 and self._unwritten:
                    # Results still on their way to the database may make mails due again (a retry).
                    await self._all_written.wait()
                    continue
                if until_idle and claimed == 0:
                    return
                if claimed == 0 and self._waiting_for_server:
                    await self._wakeup.wait(self._poll_seconds)  # due mail, but only a new server helps
                elif claimed == 0:
                    await self._idle_wait()
                continue
            if claimed == asked and claimed > 0:
                await self._wait_for_capacity(half)  # more is due: refill as soon as half are done
            else:
                await self._wait_for_work(until_idle)

    async def _claim_and_start(self, limit: int) -> int:
        servers = await self._in_db_thread(self._servers.list)
        now = self._clock.now()
        if not any(s.enabled for s in servers):
            await self._wait_for_a_server(now)
            return 0
        self._waiting_for_server = False
        claims = await self._in_db_thread(self._outbox.claim, worker_id=self.id, limit=limit, now=now,
                                          lease_seconds=self._lease_seconds, max_bytes=self._batch_bytes)
        self._connections = self._pool.size * sum(1 for s in servers if s.enabled)
        self._queued.extend((claim, servers) for claim in claims)
        self._start_queued()
        return len(claims)

    def _held(self) -> int:
        """Claimed mails not yet finished: being delivered, or waiting for a connection."""
        return len(self._inflight) + len(self._queued)

    def _start_queued(self) -> None:
        """Start as many deliveries as there are connections to use; the rest of the claim waits its turn.

        A task per claimed mail, all parked on the pool's semaphore, would keep hundreds of coroutines
        alive and cost the event loop more than the SMTP work itself.
        """
        while self._queued and len(self._inflight) < self._connections and not self._stopping.is_set():
            claim, servers = self._queued.popleft()
            task = asyncio.create_task(self._deliver_one(claim, servers))
            self._inflight[task] = claim
            task.add_done_callback(self._finished)

    async def _wait_for_a_server(self, now: datetime) -> None:
        """Nothing can go out: mark the oldest due mails with the reason once, then sleep until woken.

        The mails stay due, so adding a server (which wakes workers) sends them at once; meanwhile the
        loop waits for a wake-up or the poll interval instead of claiming them again and again.
        """
        if not self._waiting_for_server:
            self._waiting_for_server = True
            claims = await self._in_db_thread(self._outbox.claim, worker_id=self.id, limit=self._batch_size,
                                              now=now, lease_seconds=self._lease_seconds,
                                              max_bytes=self._batch_bytes)
            if claims:
                await self._in_db_thread(self._outbox.release, claims, retry_at=now, error=str(NoServerConfigured()))
                log.warning("mail is waiting: no enabled SMTP server (add one with `mailroom smtp add`)")

    async def _deliver_one(self, claim: ClaimedMail, servers: list[SmtpServer]) -> DeliveryResult:
        result = await self._deliver(claim, servers)
        self._unwritten += 1
        self._all_written.clear()
        await self._results.put(result)
        return result

    def _finished(self, task: asyncio.Task[DeliveryResult]) -> None:
        """Done-callback of each delivery: O(1) bookkeeping, so a full batch costs no rescans of the others."""
        claim = self._inflight.pop(task, None)
        if claim is None:
            return
        self._start_queued()
        if not self._inflight:
            self._nothing_running.set()
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("delivery of mail %s crashed; it returns to the queue when its lease ends",
                          claim.id, exc_info=exc)
            else:
                self.delivered += 1
        self._progress.set()
        if self._held() < self._refill_below:
            self._capacity.set()

    async def _wait_for_capacity(self, half: int) -> None:
        """More is due: sleep until half the batch is done, then refill (one wake-up per refill)."""
        self._refill_below = half
        if self._held() >= half:
            self._capacity.clear()
            await self._first_of(self._capacity)

    async def _wait_for_work(self, until_idle: bool) -> None:
        """Some mails in flight and the queue drained: wake on a finished mail or on new mail."""
        self._progress.clear()
        waker = None if until_idle else asyncio.create_task(self._wakeup.wait(None))
        try:
            await self._first_of(self._progress, extra=waker)
        finally:
            if waker is not None and not waker.done():
                waker.cancel()

    async def _first_of(self, event: asyncio.Event, *, extra: asyncio.Task[bool] | None = None) -> None:
        waiters: set[asyncio.Task[Any]] = {asyncio.create_task(event.wait()),
                                           asyncio.create_task(self._stopping.wait())}
        if extra is not None:
            waiters.add(extra)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not extra:
                    waiter.cancel()

    async def _idle_wait(self) -> None:
        timeout = self._poll_seconds
        next_due = await self._in_db_thread(self._outbox.next_due_at)
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - self._clock.now()).total_seconds()))
        if timeout > 0:
            await self._wakeup.wait(timeout)
        else:
            await asyncio.sleep(0)

    async def _write_results(self) -> None:
        """Group commit: results that finish close together are written in one transaction.

        After the first result the writer lingers a moment for more, since one transaction per handful of
        mails would make the database, not SMTP, the limit; it does not linger once nothing is running.
        """
        finished = False
        while not finished:
            batch: list[DeliveryResult] = []
            item = await self._results.get()
            lingered = False
            while True:
                if item is None:
                    finished = True
                else:
                    batch.append(item)
                if finished or len(batch) >= RESULT_BATCH_MAX:
                    break
                if self._results.empty():
                    if lingered or self._stopping.is_set() or not self._inflight:
                        break
                    lingered = True
                    self._nothing_running.clear()
                    with contextlib.suppress(TimeoutError):  # more results are on their way, unless all done
                        await asyncio.wait_for(self._nothing_running.wait(), RESULT_LINGER_SECONDS)
                    if self._results.empty():
                        break
                item = self._results.get_nowait()
            if batch:
                await self._record(batch)
                self._unwritten -= len(batch)
                if not self._unwritten:
                    self._all_written.set()

    async def _record(self, batch: list[DeliveryResult]) -> None:
        for attempt in range(5):
            try:
                await self._in_db_thread(self._outbox.record, batch)
                return
            except Exception:
                log.exception("writing %d delivery results failed (try %d of 5)", len(batch), attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))

    async def _retention_loop(self) -> None:
        assert self._purge is not None
        while True:
            try:
                while await self._in_db_thread(self._purge.run_batch) > 0:
                    await asyncio.sleep(0.05)  # small batches, other writers get the lock between them
            except Exception:
                log.exception("retention failed; trying again at the next interval")
            await asyncio.sleep(self._retention_seconds)

    async def _shutdown(self, writer: asyncio.Task[None], retention: asyncio.Task[None] | None) -> None:
        if retention is not None:
            retention.cancel()
        if self._queued:
            not_started = [claim for claim, _ in self._queued]
            self._queued.clear()
            await self._in_db_thread(self._outbox.release, not_started, retry_at=self._clock.now())
            log.info("released %d claimed mail(s) not yet started to the queue", len(not_started))
        if self._inflight:
            log.info("finishing %d in-flight mail(s), up to %.0f s", len(self._inflight), self._grace_seconds)
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self._grace_seconds)
            unfinished = [self._inflight[t] for t in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unfinished:
                await self._in_db_thread(self._outbox.release, unfinished, retry_at=self._clock.now())
                log.info("released %d unfinished mail(s) to the queue", len(unfinished))
        await self._results.put(None)  # the writer records what is queued, then ends
        await writer
        await self._pool.close()
        if self._db_thread is not None:
            self._db_thread.shutdown(wait=False)
