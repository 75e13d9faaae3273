"""The delivery loop: a dispatcher, one sender task per SMTP connection, a heartbeat and a result writer.

::

    dispatcher ──claim──▶ lane of server A ──▶ sender 1 (owns connection 1) ──▶ result writer ──▶ database
         ▲                lane of server B ──▶ sender 2 (owns connection 2) ──┘
         └── failover: a mail whose server cannot be reached goes back to the dispatcher for the next one

- The dispatcher claims due mails and puts each on the lane of its server: the hinted one first, then by
  priority, skipping servers that cool down. It holds only as many mails as its connections can send in
  about half a lease, measured as it goes, so a slow server does not sit on a backlog others could send.
- Each sender task owns one connection. It reads the password whenever it (re)connects, so a changed
  password is used at once. A failed connect or login is the server's trouble, not the mail's: the
  server's health (domain.server_health) shrinks its connections or cools it down, and the mail goes to
  the next server, or back to the queue, with its attempt count unchanged.
- The heartbeat renews the lease of every held mail, every third of a lease. A mail is started only while
  its lease holds with room to spare; a mail another worker took over is dropped, never sent twice.
- Results are written by one writer task in group commits. Every storage call retries a failing database
  with backoff until it answers (or the worker stops): a database restart or a full disk pauses delivery,
  it never ends the worker. A claim or a write tried again allows for the first try's commit having gone
  through unseen (the connection dropped before the answer): the claim is taken up under its own token
  instead of its mails waiting out a whole lease, and no attempt is logged twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from mailroom.domain.outbox import new_claim_token
from mailroom.domain.rate_limits import LimitScope, RateLimit, ScopeKind, recipient_domains
from mailroom.domain.server_health import ServerHealth, says_too_many
from mailroom.domain.servers import SmtpServer, servers_to_try
from mailroom.errors import DeliveryError, NoServerConfigured, SecretError, SmtpAuthError, StorageError, Text
from mailroom.ports import (
    ClaimedMail,
    Clock,
    DeliveryResult,
    Outbox,
    RateLimits,
    SearchIndex,
    ServerStore,
    SmtpSession,
    Transport,
    Wakeup,
)
from mailroom.usecases.deliver_mail import DeliverMail
from mailroom.usecases.retention import PurgeExpired

log = logging.getLogger(__name__)
T = TypeVar("T")

# The most results the writer puts in one transaction.
RESULT_BATCH_MAX = 1000
# Results of one connection that may still be on their way to the database while it sends the next mail.
# A crash resends at most these plus the mail being sent, per connection. Fewer make smaller commits: on
# `make bench` (Postfix smtp-sink, 4 connections) 1 gives 0.40 of the bare client, 8 gives 0.53 (main's
# figure before this engine), 64 gives 0.65; 8 keeps the bound small without making delivery slower.
UNWRITTEN_PER_CONNECTION = 8
# The writer waits up to this long for a batch to fill before it commits: a commit of one result costs
# about as much as one of twenty, and its CPU is taken from the senders (one process, one GIL).
RESULT_LINGER_SECONDS = 0.005
# A storage call that fails is tried again after these many seconds, doubling up to the cap.
STORAGE_RETRY_FIRST_SECONDS = 0.1
STORAGE_RETRY_MAX_SECONDS = 5.0
# Until a lane has measured its servers, a mail is assumed to take this long to send.
ASSUMED_SEND_SECONDS = 0.05
# SQLite's word index takes new mails this many at a time (about 35 ms of the write lock each) ...
SEARCH_INDEX_BATCH = 1000
# ... when the worker has no mail in hand, or at the latest after this many seconds.
SEARCH_INDEX_MAX_DELAY = 30.0


@dataclass(slots=True, eq=False)
class _Held:
    """A claimed mail in this worker's hands."""

    claim: ClaimedMail
    lease_until: float  # monotonic
    tried: set[str] = field(default_factory=set)  # servers this claim could not reach
    why_not_sent: Text | None = None


class _Lane:
    """One server's queue of mails and its sender tasks (one per connection)."""

    def __init__(self, server: SmtpServer, health: ServerHealth) -> None:
        self.server = server
        self.health = health
        self.queue: collections.deque[_Held] = collections.deque()
        self.senders: set[asyncio.Task[None]] = set()
        self.open_connections = 0
        self.busy = 0
        self.work = asyncio.Event()
        self.send_seconds = ASSUMED_SEND_SECONDS  # moving average of one delivery

    def put(self, held: _Held) -> None:
        self.queue.append(held)
        self.work.set()


class Worker:
    def __init__(self, *, outbox: Outbox, servers: ServerStore, deliver: DeliverMail, transport: Transport,
                 wakeup: Wakeup, clock: Clock, purge: PurgeExpired | None = None, batch_size: int = 300,
                 batch_bytes: int | None = 32 * 1024 * 1024, connections_per_server: int = 4,
                 lease_seconds: float = 300.0, poll_interval_seconds: float = 2.0,
                 retention_interval_seconds: float = 600.0, shutdown_grace_seconds: float = 20.0,
                 server_cooldown_seconds: float = 30.0, worker_id: str | None = None,
                 rate_limits: RateLimits | None = None, search_index: SearchIndex | None = None,
                 search_index_interval_seconds: float = 2.0) -> None:
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._outbox = outbox
        self._servers = servers
        self._deliver = deliver
        self._transport = transport
        self._wakeup = wakeup
        self._clock = clock
        self._purge = purge
        self._search_index = search_index
        self._search_index_seconds = search_index_interval_seconds
        self._rate_limits = rate_limits
        self._limit_rules: dict[LimitScope, tuple[RateLimit, ...]] = {}
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._per_server = connections_per_server
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_interval_seconds
        self._retention_seconds = retention_interval_seconds
        self._grace_seconds = shutdown_grace_seconds
        self._cooldown_seconds = server_cooldown_seconds
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None  # monotonic end of the grace period, once stopping
        self._held: dict[str, _Held] = {}
        self._lanes: dict[str, _Lane] = {}
        self._health: dict[str, ServerHealth] = {}  # outlives a lane: a removed and re-added server keeps it
        self._server_list: list[SmtpServer] = []
        self._results: asyncio.Queue[tuple[DeliveryResult, asyncio.Future[None] | None] | None] = asyncio.Queue()
        self._unwritten = 0
        self._batch_full = asyncio.Event()  # the writer stops lingering: a batch is worth a commit, or a sender waits
        self._all_written = asyncio.Event()
        self._all_written.set()
        self._progress = asyncio.Event()  # set when held mails fall to the refill mark, or some must go back
        self._refill_at = 0
        self._to_release: list[tuple[_Held, float]] = []  # (mail, monotonic time it may be due again)
        self._db_thread: ThreadPoolExecutor | None = None
        self._waiting_for_server = False
        self.delivered = 0

    # --- storage, retried -----------------------------------------------------------------------

    async def _in_db_thread(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a storage call on the worker's one database thread (claims and writes queue in order there
        instead of meeting at SQLite's write lock)."""
        assert self._db_thread is not None, "storage calls happen inside run()"
        return await asyncio.get_running_loop().run_in_executor(
            self._db_thread, functools.partial(function, *args, **kwargs))

    async def _storage(self, what: str, function: Callable[..., T], /, *args: Any,
                       give_up_after: float | None = None, **kwargs: Any) -> T:
        """A storage call, tried again with backoff while the database fails; logged, never fatal.

        ``give_up_after`` (seconds) bounds the retries during shutdown; the last error is raised then.
        """
        delay = STORAGE_RETRY_FIRST_SECONDS
        started = time.monotonic()
        failures = 0
        while True:
            try:
                value = await self._in_db_thread(function, *args, **kwargs)
            except StorageError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("worker %s: %s failed (%d time(s)), trying again: %s", self.id, what, failures, exc)
                if give_up_after is not None and time.monotonic() - started + delay > give_up_after:
                    raise
                if give_up_after is None and self._stopping.is_set():
                    raise  # stopping: the callers give up their work, leases bring the mails back
                await asyncio.sleep(delay)
                delay = min(STORAGE_RETRY_MAX_SECONDS, delay * 2)
                continue
            if failures:
                log.warning("worker %s: %s works again after %d failure(s)", self.id, what, failures)
            return value

    # --- the run --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish in-flight mails (up to the grace period) and return."""
        self._stopping.set()
        self._wakeup.notify()
        for lane in self._lanes.values():
            lane.work.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Deliver until ``stop()``; with ``until_idle``, return once nothing is due or in flight."""
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailroom-db")
        helpers = [asyncio.create_task(self._write_results(), name="mailroom-results"),
                   asyncio.create_task(self._heartbeat(), name="mailroom-heartbeat")]
        if self._purge:
            helpers.append(asyncio.create_task(self._retention_loop(), name="mailroom-retention"))
        if self._search_index:
            helpers.append(asyncio.create_task(self._search_index_loop(), name="mailroom-search-index"))
        log.info("worker %s started", self.id)
        try:
            await self._dispatch(until_idle)
        except StorageError:
            if not self._stopping.is_set():
                raise
        finally:
            await self._shutdown(helpers)
            log.info("worker %s stopped after %d deliveries", self.id, self.delivered)

    async def _dispatch(self, until_idle: bool) -> None:
        while not self._stopping.is_set():
            self._progress.clear()
            await self._flush_releases()
            capacity = self._capacity()
            self._refill_at = capacity - capacity // 2
            room = capacity - len(self._held)
            claimed = 0
            if room > 0 and (not self._held or room >= capacity // 2):
                claimed = await self._claim(room)
            if self._held:
                await self._wait(self._progress, wakeup=claimed < room)
                continue
            if claimed:
                continue
            if self._unwritten or self._to_release:
                # Results on their way to the database may make mails due again (a retry).
                await self._wait(self._all_written, wakeup=False)
                continue
            if until_idle:
                return
            if self._waiting_for_server:
                await self._wakeup.wait(self._poll_seconds)  # due mail, but only a new server helps
            else:
                await self._idle_wait()

    def _capacity(self) -> int:
        """Mails to hold: what the connections send in half a lease at the measured pace, within the batch."""
        lanes = [lane for lane in self._lanes.values() if not lane.health.cooling(time.monotonic())]
        connections = sum(lane.health.target for lane in lanes) or self._per_server
        seconds = max((lane.send_seconds for lane in lanes), default=ASSUMED_SEND_SECONDS)
        fits = int(connections * self._lease_seconds / 2 / max(seconds, 1e-3))
        return max(1, min(self._batch_size, max(connections, fits)))

    async def _wait(self, event: asyncio.Event, *, wakeup: bool) -> None:
        """Until ``event`` (room for a claim, results written) or a stop; with ``wakeup`` also new mail."""
        waiters: set[asyncio.Task[Any]] = {asyncio.create_task(event.wait()),
                                           asyncio.create_task(self._stopping.wait())}
        if wakeup:
            waiters.add(asyncio.create_task(self._wakeup.wait(self._poll_seconds)))
        if self._to_release:
            waiters.add(asyncio.create_task(asyncio.sleep(self._poll_seconds)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _idle_wait(self) -> None:
        timeout = self._poll_seconds
        next_due = await self._storage("looking for the next due mail", self._outbox.next_due_at)
        if next_due is not None:
            timeout = min(timeout, max(0.0, (next_due - self._clock.now()).total_seconds()))
        if timeout > 0:
            await self._wakeup.wait(timeout)
        else:
            await asyncio.sleep(0)

    # --- claiming and routing ---------------------------------------------------------------------

    async def _claim(self, limit: int) -> int:
        servers = await self._storage("reading the SMTP servers", self._servers.list)
        self._update_lanes(servers)
        if self._rate_limits is not None:
            self._limit_rules = await self._storage("reading the rate limits", self._rate_limits.rules)
        now = self._clock.now()
        if not any(s.enabled for s in servers):
            await self._wait_for_a_server(now)
            return 0
        self._waiting_for_server = False
        claims, asked_at = await self._storage("claiming mails", self._claim_or_resume(limit))
        # Counted from when the lease was asked for, as the store counts it: a slow answer must not stretch it.
        lease_until = asked_at + self._lease_seconds
        for claim in claims:
            held = _Held(claim, lease_until)
            self._held[claim.id] = held
            settled = self._deliver.settle_without_sending(claim)
            if settled is not None:
                self._finish(held, settled)
            else:
                self._route(held)
        return len(claims)

    def _claim_or_resume(self, limit: int) -> Callable[[], tuple[list[ClaimedMail], float]]:
        """One claim, as a call the storage retries: a second call first takes up what the first one may
        have claimed unseen (its commit went through, the answer was lost with the connection). Returns the
        claims and the monotonic time their lease counts from."""
        token = new_claim_token(self.id)
        tried = False

        def claim() -> tuple[list[ClaimedMail], float]:
            nonlocal tried
            # At each try: after an outage the lease counts from when the database is back.
            asked_at, now = time.monotonic(), self._clock.now()
            if tried:
                resumed = self._outbox.resume_claim(token, now=now, lease_seconds=self._lease_seconds)
                if resumed:
                    log.warning("worker %s: took up %d mail(s) of a claim whose answer was lost", self.id,
                                len(resumed))
                    return resumed, asked_at
            tried = True
            return self._outbox.claim(worker_id=self.id, limit=limit, now=now, lease_seconds=self._lease_seconds,
                                      max_bytes=self._batch_bytes, token=token), asked_at

        return claim

    def _update_lanes(self, servers: list[SmtpServer]) -> None:
        """Lanes follow the server list: a changed server gets a fresh lane, a removed one is drained."""
        self._server_list = servers
        current = {s.id: s for s in servers if s.enabled}
        for server_id, lane in list(self._lanes.items()):
            if current.get(server_id) != lane.server:
                del self._lanes[server_id]
                lane.work.set()  # its senders see the lane is gone, close their connections and end
                for held in lane.queue:
                    self._route(held)
                lane.queue.clear()
        for server_id, server in current.items():
            if server_id not in self._lanes:
                health = self._health.get(server_id)
                if health is None or health.configured != self._per_server:
                    health = self._health[server_id] = ServerHealth(configured=self._per_server,
                                                                    base_seconds=self._cooldown_seconds)
                self._lanes[server_id] = _Lane(server, health)

    def _route(self, held: _Held) -> None:
        """Put a mail on the lane of the first server it may use now, or give it back to the queue."""
        now = time.monotonic()
        for server in servers_to_try(self._server_list, held.claim.smtp_hint):
            lane = self._lanes.get(server.id)
            if lane is None or server.id in held.tried or lane.health.cooling(now):
                continue
            lane.put(held)
            self._staff(lane)
            return
        cooling = [lane.health for lane in self._lanes.values() if lane.health.cooling(now)]
        due_again = min((h.cooling_until for h in cooling), default=now)
        if not held.why_not_sent:
            reasons = [h.reason for h in cooling if h.reason]
            held.why_not_sent = reasons[0] if reasons else NoServerConfigured(held.claim.smtp_hint).text
        self._to_release.append((held, due_again))
        self._progress.set()  # the dispatcher gives it back

    def _staff(self, lane: _Lane) -> None:
        """Start sender tasks up to the lane's connection target, as far as it has mails for them."""
        # Until one connection is open, one sender tries: a server that is down is not hit in parallel.
        target = lane.health.target if lane.open_connections else 1
        while len(lane.senders) < min(target, len(lane.queue) + lane.busy) and not self._stopping.is_set():
            task = asyncio.create_task(self._sender(lane), name=f"mailroom-sender-{lane.server.name}")
            lane.senders.add(task)
            task.add_done_callback(lane.senders.discard)

    async def _flush_releases(self) -> None:
        """Give mails no server could take back to the queue, due when their server's cool-down ends."""
        if not self._to_release:
            return
        batch, self._to_release = self._to_release, []
        by_reason: dict[tuple[Text | None, float], list[ClaimedMail]] = collections.defaultdict(list)
        for held, due_again in batch:
            if self._held.pop(held.claim.id, None) is not None:
                by_reason[held.why_not_sent, round(due_again)].append(held.claim)
        now_wall, now_mono = self._clock.now(), time.monotonic()
        for (reason, due_again), claims in by_reason.items():
            retry_at = now_wall + timedelta(seconds=max(0.0, due_again - now_mono))
            with contextlib.suppress(StorageError):  # only when stopping: the lease then brings them back
                await self._storage("giving back mails no server could take", self._outbox.release, claims,
                                    retry_at=retry_at, error=reason,
                                    give_up_after=self._grace_seconds if self._stopping.is_set() else None)
        if not self._unwritten:
            self._all_written.set()

    async def _wait_for_a_server(self, now: datetime) -> None:
        """Nothing can go out: mark the oldest due mails with the reason once, then sleep until woken."""
        if not self._waiting_for_server:
            self._waiting_for_server = True
            claims, _ = await self._storage("claiming mails", self._claim_or_resume(self._batch_size))
            if claims:
                await self._storage("giving back mails", self._outbox.release, claims, retry_at=now,
                                    error=NoServerConfigured().text)
                log.warning("mail is waiting: no enabled SMTP server (add one with `mailroom smtp add`)")

    # --- sending ------------------------------------------------------------------------------------

    def _holds_lease(self, held: _Held) -> bool:
        """Whether the mail is still ours with time to spare to send it before the lease could end."""
        margin = self._lease_seconds / 4  # the heartbeat renews every third of a lease
        return self._held.get(held.claim.id) is held and time.monotonic() + margin < held.lease_until

    async def _sender(self, lane: _Lane) -> None:
        """One connection to one server: take the lane's mails one by one until it has none or is gone."""
        session: SmtpSession | None = None
        unwritten: collections.deque[asyncio.Future[None]] = collections.deque()  # this connection's results
        try:
            while not self._stopping.is_set() and self._lanes.get(lane.server.id) is lane:
                if not lane.queue:
                    # An open connection stays a moment: the next claim usually brings more mails for it.
                    if (session is None and not lane.busy) or not await self._more_mail(lane):
                        return
                    continue
                if len(lane.senders) > lane.health.target:
                    # The server takes fewer connections: this one ends, and leaves the count now. Its task's
                    # done callback comes later: until then every other sender would see the same count and
                    # end too, leaving the lane's mails to no one (the worker then waited for ever).
                    lane.senders.discard(asyncio.current_task())
                    return
                while len(unwritten) > UNWRITTEN_PER_CONNECTION:
                    # A crash may resend only what is in flight: per connection the mail being sent and the
                    # few before it whose results are being written meanwhile (commits overlap SMTP).
                    self._batch_full.set()
                    await unwritten.popleft()
                if not lane.queue:
                    continue
                held = lane.queue.popleft()
                if not self._holds_lease(held):
                    self._drop(held)  # another worker may hold it now: never sent twice
                    continue
                scopes = self._limited_scopes(lane.server, held.claim)
                reserved_at: datetime | None = None
                if scopes:
                    reserved_at = self._clock.now()
                    try:
                        if not await self._within_rate_limits(lane, held, scopes, reserved_at):
                            continue
                    except StorageError:
                        return  # only when stopping: the mail is given back with the others
                if session is None or not await session.ensure_alive():
                    if session is not None:
                        await self._close(session)
                        session = None
                        lane.open_connections -= 1
                    try:
                        session = await self._connect(lane, held)
                    except StorageError:
                        return  # only when stopping: the mail is given back with the others
                    if session is None:
                        if lane.health.cooling(time.monotonic()):
                            self._reroute_lane(lane)
                        return
                lane.busy += 1
                started = time.monotonic()
                try:
                    result = await self._deliver(held.claim, lane.server, session)
                except Exception:
                    # A bug, not SMTP trouble (DeliverMail judges that): the outcome is unknown, so the
                    # mail is left to its lease rather than sent again at once.
                    log.exception("delivering mail %s crashed; it returns when its lease ends", held.claim.id)
                    self._drop(held)
                    await self._close(session)
                    session = None
                    lane.open_connections -= 1
                    continue
                finally:
                    lane.busy -= 1
                lane.send_seconds = 0.5 * lane.send_seconds + 0.5 * (time.monotonic() - started)
                too_many = _too_many(result)
                if too_many:
                    reason = Text("{server} asks to slow down: {answer}", {"server": lane.server.name,
                                                                            "answer": too_many})
                    if lane.health.throttled(time.monotonic(), reason):
                        log.warning("SMTP server %s pauses for %.0f s: %s", lane.server.name,
                                    lane.health.cooling_until - time.monotonic(), reason)
                        self._reroute_lane(lane)
                elif lane.health.sent():
                    self._staff(lane)
                written = self._finish(held, result)
                if reserved_at is not None:
                    assert self._rate_limits is not None
                    with contextlib.suppress(StorageError):  # only when stopping: the reservation's time stays
                        await self._storage("moving a sent mail's count to its arrival", self._rate_limits.sent,
                                            scopes, reserved_at, self._clock.now())
                if unwritten and unwritten[0].done():
                    unwritten.popleft()
                unwritten.append(written)
        finally:
            if session is not None:
                lane.open_connections -= 1
                await self._close(session)
            lane.senders.discard(asyncio.current_task())
            if lane.queue and not lane.senders and self._lanes.get(lane.server.id) is lane:
                self._staff(lane)  # the last sender leaves mails behind (they came while it ended): one more

    async def _close(self, session: SmtpSession) -> None:
        """QUIT and close; when stopping, only as long as the grace period lasts. A sender cut off at the end
        of the grace is mid-mail, so QUIT's answer would come after the server's answer to that mail: waiting
        for it (2 s) is what made a 1 s grace take 3.6 s."""
        remaining = None if self._stop_deadline is None else max(0.0, self._stop_deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await session.close()  # cancelled by the timeout, it still closes the socket

    async def _within_rate_limits(self, lane: _Lane, held: _Held, scopes: list[LimitScope],
                                  reserved_at: datetime) -> bool:
        """Count the mail against the limits of its server and recipient domains, just before it goes
        (so that the count follows the sends); False when a limit holds it back, and then the mail waits
        for it: on another server when the server's own limit is full, else back in the queue, due when
        the window allows, its attempts untouched."""
        assert self._rate_limits is not None
        denial = await self._storage("counting a mail against the rate limits", self._rate_limits.reserve,
                                     scopes, reserved_at)
        if denial is None:
            return True
        wait = max(0.0, (denial.until - self._clock.now()).total_seconds())
        if denial.scope.kind is ScopeKind.SERVER:
            held.why_not_sent = denial.reason(lane.server.name)
            lane.health.pause(time.monotonic() + wait, held.why_not_sent)
            self._route(held)
            self._reroute_lane(lane)
        else:
            held.why_not_sent = denial.reason(denial.scope.target)
            self._to_release.append((held, time.monotonic() + wait))
            self._progress.set()
        return False

    def _limited_scopes(self, server: SmtpServer, claim: ClaimedMail) -> list[LimitScope]:
        if not self._limit_rules:
            return []
        scopes = [LimitScope.server(server.id)]
        scopes += [LimitScope(ScopeKind.DOMAIN, domain) for domain in recipient_domains(claim.recipients)]
        return [scope for scope in scopes if scope in self._limit_rules]

    async def _more_mail(self, lane: _Lane) -> bool:
        """Wait up to the poll interval for a mail on the lane; False when none came (or the worker stops)."""
        deadline = time.monotonic() + max(self._poll_seconds, 1.0)
        while not lane.queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set() or self._lanes.get(lane.server.id) is not lane:
                return False
            lane.work.clear()
            try:
                await asyncio.wait_for(lane.work.wait(), remaining)
            except TimeoutError:
                return bool(lane.queue)
        return True

    async def _connect(self, lane: _Lane, held: _Held) -> SmtpSession | None:
        """Open a connection for the lane, reading the password now; None when the server failed.

        On failure the mail goes back: to the lane when other connections of ours are open (the server
        takes fewer), else to the next server or the queue (the server cools down), its attempt uncounted.
        """
        server = lane.server
        try:
            try:
                password = await self._storage(f"reading the password of {server.name}", self._servers.password,
                                               server.id)
            except SecretError as exc:
                raise SmtpAuthError(f"{server.name}: {exc}", server=server.name) from None
            session = await self._transport.connect(server, password,
                                                    sender=self._deliver.sender_of(held.claim, server))
        except DeliveryError as exc:
            if lane.health.cooling(time.monotonic()):  # another connection of the lane failed just before
                held.tried.add(server.id)
                self._route(held)
                return None
            auth = isinstance(exc, SmtpAuthError)
            cools = lane.health.connect_failed(time.monotonic(), exc.text, open_connections=lane.open_connections,
                                               auth=auth)
            if cools:
                log.warning("SMTP server %s cools down for %.0f s: %s", server.name,
                            lane.health.cooling_until - time.monotonic(), exc)
                held.tried.add(server.id)
                held.why_not_sent = Text("not sent yet: {reason}", {"reason": exc.text})
                self._route(held)
            else:
                log.info("SMTP server %s takes %d connection(s) at most: %s", server.name, lane.health.target, exc)
                lane.queue.appendleft(held)
                lane.work.set()
            return None
        lane.health.connected()
        lane.open_connections += 1
        self._staff(lane)  # the server answers: open the lane's other connections
        return session

    def _reroute_lane(self, lane: _Lane) -> None:
        """A cooling server's waiting mails go to the next server, or back to the queue."""
        waiting = list(lane.queue)
        lane.queue.clear()
        for held in waiting:
            held.tried.add(lane.server.id)
            held.why_not_sent = held.why_not_sent or Text("not sent yet: {reason}", {"reason": lane.health.reason})
            self._route(held)

    def _drop(self, held: _Held) -> None:
        """Let a mail go without a result: its lease ended (another worker may hold it now), or its delivery
        crashed. It is not sent here; the lease brings it back if nobody else has it."""
        if self._held.get(held.claim.id) is held:
            del self._held[held.claim.id]
            log.warning("mail %s let go without sending: its lease ended or its delivery failed", held.claim.id)
        self._made_room()

    def _finish(self, held: _Held, result: DeliveryResult) -> asyncio.Future[None]:
        """Hand the result to the writer; the returned future is done once it is in the database."""
        if self._held.get(held.claim.id) is held:
            del self._held[held.claim.id]
        self.delivered += 1
        self._unwritten += 1
        self._all_written.clear()
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._results.put_nowait((result, written))
        if self._results.qsize() >= self._batch_worth_a_commit():
            self._batch_full.set()
        self._made_room()
        return written

    def _batch_worth_a_commit(self) -> int:
        """Half of what the open connections may leave unwritten: the writer commits before any must wait."""
        connections = sum(lane.open_connections for lane in self._lanes.values())
        return max(1, connections * UNWRITTEN_PER_CONNECTION // 2)

    def _made_room(self) -> None:
        """Wake the dispatcher once enough held mails are done for a refill (not for every mail)."""
        if len(self._held) <= self._refill_at:
            self._progress.set()

    # --- leases -----------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the lease of every held mail, a third of a lease before it could run out."""
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = list(self._held.values())
            if not held:
                continue
            renewed_at = time.monotonic()
            until = self._clock.now() + timedelta(seconds=self._lease_seconds)
            try:
                still = await self._storage("renewing leases", self._outbox.extend_leases,
                                            [h.claim for h in held], until=until, give_up_after=interval)
            except StorageError:
                continue  # the held mails keep their old deadline: those past it will not be started
            for h in held:
                if h.claim.id in still:
                    h.lease_until = renewed_at + self._lease_seconds
                elif self._held.get(h.claim.id) is h and h.lease_until > renewed_at:
                    # Finished meanwhile (its result not yet written) or taken over: either way not ours to send.
                    h.lease_until = 0.0

    # --- results --------------------------------------------------------------------------------------

    async def _write_results(self) -> None:
        """Group commit: the results that arrived while the last transaction ran, or within a few
        milliseconds, go into the next one.

        The wait is short and ends early when a batch is half of what the connections may leave unwritten,
        when a sender waits for its results (see ``_sender``), or when the worker stops.
        """
        finished = False
        while not finished:
            item = await self._results.get()
            if item is not None and not self._stopping.is_set() \
                    and self._results.qsize() + 1 < self._batch_worth_a_commit():
                self._batch_full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), RESULT_LINGER_SECONDS)
            batch: list[tuple[DeliveryResult, asyncio.Future[None] | None]] = []
            while True:
                if item is None:
                    finished = True
                else:
                    batch.append(item)
                if finished or len(batch) >= RESULT_BATCH_MAX or self._results.empty():
                    break
                item = self._results.get_nowait()
            if batch:
                await self._record([result for result, _ in batch])
                for _, written in batch:
                    if written is not None and not written.done():
                        written.set_result(None)
                self._unwritten -= len(batch)
                if not self._unwritten:
                    self._all_written.set()

    async def _record(self, batch: list[DeliveryResult]) -> None:
        """Write results, trying again until the database takes them; when stopping, up to the grace."""
        try:
            await self._storage(f"writing {len(batch)} delivery result(s)", self._record_or_complete(batch),
                                give_up_after=self._grace_seconds if self._stopping.is_set() else None)
        except StorageError:
            log.error("worker %s could not write the results of mails %s; they are sent again after their lease",
                      self.id, ", ".join(r.mail_id for r in batch))

    def _record_or_complete(self, batch: list[DeliveryResult]) -> Callable[[], None]:
        """One write of results, as a call the storage retries: a second call writes only what the first
        did not (its commit may have gone through with the answer lost), so no attempt is logged twice."""
        tried = False

        def record() -> None:
            nonlocal tried
            again, tried = tried, True
            self._outbox.record(batch, again=again)

        return record

    async def _retention_loop(self) -> None:
        assert self._purge is not None
        while True:
            await self._in_batches(self._purge.run_batch, failed="retention failed")
            await asyncio.sleep(self._retention_seconds)

    async def _search_index_loop(self) -> None:
        assert self._search_index is not None
        last = time.monotonic()
        while True:
            await asyncio.sleep(self._search_index_seconds)
            # Delivery first: while mails are on their way the index waits, but not for long (a search scans
            # the mails not indexed yet, and that backlog should stay small).
            if self._held and time.monotonic() - last < SEARCH_INDEX_MAX_DELAY:
                continue
            await self._in_batches(functools.partial(self._search_index.index_for_search, SEARCH_INDEX_BATCH),
                                   failed="indexing the log for search failed")
            last = time.monotonic()

    async def _in_batches(self, batch: Callable[[], int], *, failed: str) -> None:
        """Housekeeping in small batches on the database thread until one does nothing (other writers get the
        lock between them); a failure is logged and waits for the next round."""
        try:
            while await self._in_db_thread(batch) > 0:
                await asyncio.sleep(0.05)
        except Exception:
            log.exception("%s; trying again at the next interval", failed)

    # --- stopping -------------------------------------------------------------------------------------

    async def _shutdown(self, helpers: Sequence[asyncio.Task[None]]) -> None:
        self._stopping.set()
        deadline = self._stop_deadline = time.monotonic() + self._grace_seconds
        writer, *others = helpers
        for task in others:
            task.cancel()
        not_started = [held for lane in self._lanes.values() for held in lane.queue]
        for lane in self._lanes.values():
            lane.queue.clear()
            lane.work.set()
        senders = {task for lane in self._lanes.values() for task in lane.senders}
        if senders:
            log.info("finishing in-flight mail(s), up to %.0f s", self._grace_seconds)
            _done, pending = await asyncio.wait(senders, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, *others, return_exceptions=True)
        else:
            await asyncio.gather(*others, return_exceptions=True)
        # Whatever is still held was not finished: back to the queue now instead of after the lease.
        unfinished = [held.claim for held in self._held.values()]
        self._held.clear()
        self._to_release.clear()
        if unfinished:
            try:
                await self._storage("giving back unfinished mails", self._outbox.release, unfinished,
                                    retry_at=self._clock.now(),
                                    give_up_after=max(0.5, deadline - time.monotonic()))
                log.info("released %d claimed mail(s) not sent (%d never started) to the queue",
                         len(unfinished), len(not_started))
            except StorageError:
                log.error("could not give back mails %s; they return when their lease ends",
                          ", ".join(c.id for c in unfinished))
        await self._results.put(None)  # the writer records what is queued, then ends
        await writer
        if self._db_thread is not None:
            self._db_thread.shutdown(wait=False)


def _too_many(result: DeliveryResult) -> str | None:
    """The server's "too many" answer in a result (to the mail, or at RCPT to a recipient), if any."""
    answers = [(result.attempt.code, result.attempt.reply)]
    answers += [(code, reply) for _status, code, reply in result.recipients.values()]
    return next((f"{code} {reply}" for code, reply in answers if says_too_many(code, reply)), None)
