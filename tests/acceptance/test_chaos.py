"""Chaos: worker processes killed, the database cut, the disk full, a slow server; each mail still goes once.

Workers are real ``mailroom worker`` processes; the SMTP server is tests/support/fault_smtp.py in its own
process (so the test's own GIL does not slow it), and PostgreSQL is reached through the cuttable proxy
of tests/support/pg_proxy.py. The test itself talks to the database directly, so it sees the truth while
the workers' line is cut. Each test reports its figures (copies, duplicates, stuck mails, exit codes) in
its failure message.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, ServerSettings
from mailroom.adapters.storage.tables import mails as mails_table
from mailroom.domain.servers import Security
from mailroom.worker import UNWRITTEN_PER_CONNECTION
from tests.support.fault_smtp import FaultSmtpProcess
from tests.support.pg_proxy import PgProxy
from tests.support.reliability import record

pytestmark = pytest.mark.slow


class Workers:
    """``mailroom worker`` processes sharing one environment; each one's stderr goes to its own file
    (a pipe nobody reads would fill up and block a worker that logs a lot during an outage)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.exits: list[int] = []
        """Exit codes of workers that ended on their own (not killed by the test)."""
        self.kills = 0
        self._started = 0

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            self._started += 1
            log = (self.logs / f"worker-{self._started}.log").open("wb")
            self.running.append(subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=self.env,
                                                 stdout=subprocess.DEVNULL, stderr=log))
            log.close()

    def reap(self) -> list[int]:
        """Exit codes of workers that ended by themselves since the last look (they are taken off the list)."""
        ended = [w for w in self.running if w.poll() is not None]
        for worker in ended:
            self.running.remove(worker)
            self.exits.append(worker.returncode)
        return [w.returncode for w in ended]

    def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.running)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        self.running.remove(victim)
        self.kills += 1

    def stop(self) -> list[int]:
        for worker in self.running:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        codes = []
        for worker in self.running:
            try:
                codes.append(worker.wait(timeout=40))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
        self.running = []
        return codes

    def last_errors(self, lines: int = 6) -> str:
        text = []
        for path in sorted(self.logs.glob("worker-*.log")):
            tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
            if tail:
                text.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(text[-4:])


def _env(database_url: str, secret_key: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=database_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
               **{f"MAILROOM_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class Outcome:
    """What the database and the sink say at the end of a run."""

    statuses: Counter[str]
    max_attempts: int
    message_ids: set[str]
    copies: dict[str, int]
    exits: list[int] = field(default_factory=list)
    kills: int = 0

    @property
    def lost(self) -> set[str]:
        return self.message_ids - set(self.copies)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.copies.values() if n > 1)

    def record(self, scenario: str, faults: str, **extra: object) -> None:
        """Into the reliability report (tests/support/reliability.py)."""
        record(scenario, faults=faults, mails=len(self.message_ids), sent=self.statuses.get("sent", 0),
               lost=len(self.lost), duplicates=self.duplicates, kills=self.kills, max_attempts=self.max_attempts,
               **extra)

    def report(self) -> str:
        return (f"statuses {dict(self.statuses)}, copies at the sink {sum(self.copies.values())} of "
                f"{len(self.message_ids)} mails, duplicates {self.duplicates}, lost {len(self.lost)}, "
                f"max attempts {self.max_attempts}, kills {self.kills}, workers that exited by themselves: "
                f"{self.exits}")


def _outcome(room: Mailroom, sink: FaultSmtpProcess, workers: Workers) -> Outcome:
    with room.database.read() as conn:
        statuses = Counter({str(s): int(n) for s, n in conn.execute(
            select(mails_table.c.status, func.count()).group_by(mails_table.c.status))})
        max_attempts = conn.execute(select(func.max(mails_table.c.attempts))).scalar_one() or 0
        message_ids = set(conn.execute(select(mails_table.c.message_id)).scalars())
    return Outcome(statuses=statuses, max_attempts=int(max_attempts), message_ids=message_ids,
                   copies=sink.stats()["copies"], exits=list(workers.exits), kills=workers.kills)


def _unfinished(room: Mailroom) -> int:
    with room.database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(mails_table).where(
            mails_table.c.status.in_(("queued", "sending", "deferred")))).scalar_one())


def _wait_until_final(room: Mailroom, workers: Workers | None, deadline: float) -> int:
    """Poll until no mail is queued, sending or deferred (or the deadline passes); restarts nothing."""
    left = _unfinished(room)
    while left and time.monotonic() < deadline:
        time.sleep(0.3)
        if workers is not None:
            workers.reap()
        left = _unfinished(room)
    return left


def _queue(room: Mailroom, port: int, total: int) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="fault", host="127.0.0.1", port=port, security=Security.NONE,
                                            sender="app@example.org", timeout_seconds=10.0))
    for start in range(0, total, 1000):
        room.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"chaos {i}", text="hello")
                                 for i in range(start, min(total, start + 1000))])


@pytest.fixture
def worker_logs(tmp_path: Path) -> Path:
    path = tmp_path / "workers"
    path.mkdir()
    return path


@pytest.mark.postgres
def test_kills_and_an_outage_lose_nothing_and_duplicate_at_most_the_mails_in_flight(
        postgres_url: str, secret_key: str, pg_proxy: PgProxy, worker_logs: Path) -> None:
    """3 workers, 2,000 mails at 50 ms each, lease 5 s, 10 SIGKILLs (each worker restarted) and a 3 s outage.

    The bound on duplicates: a SIGKILL can only re-send the mails in flight in that worker, those handed to
    the server whose result is not yet in the database. Per SMTP connection that is the mail being sent and
    at most UNWRITTEN_PER_CONNECTION before it whose results are being written meanwhile (a sender waits for
    the oldest before it starts another). So duplicates <= kills x connections x (1 + UNWRITTEN_PER_CONNECTION)
    (one server here); anything above means mails were sent twice without a kill to explain it.

    Two connections per worker: a worker then holds more claimed mail than it sends in one lease (a
    batch of 300 at 40 mails/s is 7.5 s), so a lease that is not extended while the worker lives shows as
    duplicates on every run, not only when a noisy machine slows the workers down.
    """
    total, connections, max_attempts = 2000, 2, 8
    rng = random.Random(10)
    with FaultSmtpProcess("--delay-ms", "50") as sink, \
            Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _queue(room, sink.port, total)
        workers = Workers(_env(pg_proxy.url(postgres_url), secret_key, lease_seconds="5",
                               smtp_connections_per_server=str(connections), max_attempts=str(max_attempts),
                               retry_base_delay_seconds="1", poll_interval_seconds="0.5"), worker_logs)
        workers.start(3)
        deadline = time.monotonic() + 80
        try:
            time.sleep(2)
            while workers.kills < 10 and time.monotonic() < deadline:
                workers.kill_one(rng)
                workers.reap()
                workers.start(3 - len(workers.running))  # the victim, and any that ended by themselves
                if workers.kills == 5:
                    pg_proxy.outage(3)
                    time.sleep(3.5)  # no kill in the outage: a worker started then could not even migrate
                time.sleep(rng.uniform(0.6, 1.4))
            left = _wait_until_final(room, workers, deadline)
        finally:
            workers.stop()
        outcome = _outcome(room, sink, workers)
    report = f"{outcome.report()}; unfinished {left}\n{workers.last_errors()}"
    print(report)
    outcome.record("3 workers, 2,000 mails at 50 ms, lease 5 s",
                   "10 SIGKILLs (each worker restarted), a 3 s database outage",
                   duplicate_bound=workers.kills * connections * (1 + UNWRITTEN_PER_CONNECTION))
    assert workers.kills >= 10, report
    assert outcome.statuses == Counter({"sent": total}), report
    assert not outcome.lost, report
    assert outcome.duplicates <= workers.kills * connections * (1 + UNWRITTEN_PER_CONNECTION), report
    assert outcome.max_attempts <= max_attempts, report


@pytest.mark.postgres
def test_a_batch_that_outlasts_the_lease_is_not_sent_again(
        postgres_url: str, secret_key: str, worker_logs: Path) -> None:
    """No kills: a server taking 1 s per mail, one connection per worker, lease 3 s, 12 mails, 2 workers.

    A worker's claim takes far longer than the lease to send; the lease must be extended while the worker
    lives, or the other worker claims the same mails and sends them again.
    """
    total = 12
    with FaultSmtpProcess("--delay-ms", "1000") as sink, \
            Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _queue(room, sink.port, total)
        workers = Workers(_env(postgres_url, secret_key, lease_seconds="3", smtp_connections_per_server="1",
                               poll_interval_seconds="0.5"), worker_logs)
        workers.start(2)
        try:
            left = _wait_until_final(room, workers, time.monotonic() + 60)
        finally:
            codes = workers.stop()
        outcome = _outcome(room, sink, workers)
    report = f"{outcome.report()}; unfinished {left}; exit codes at SIGTERM {codes}\n{workers.last_errors()}"
    outcome.record("2 workers, 12 mails at 1 s each, lease 3 s", "batches that outlast the lease", duplicate_bound=0)
    assert outcome.statuses == Counter({"sent": total}), report
    assert not outcome.lost, report
    assert outcome.duplicates == 0, report


@pytest.mark.postgres
def test_workers_live_through_database_blips_and_a_long_outage(
        postgres_url: str, secret_key: str, pg_proxy: PgProxy, worker_logs: Path) -> None:
    """Two 0.3 s blips and one 15 s outage mid-run: no worker exits, and afterwards every mail is final."""
    total = 800
    with FaultSmtpProcess("--delay-ms", "40") as sink, \
            Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _queue(room, sink.port, total)
        workers = Workers(_env(pg_proxy.url(postgres_url), secret_key, smtp_connections_per_server="2",
                               retry_base_delay_seconds="1", poll_interval_seconds="0.5"), worker_logs)
        workers.start(2)

        def watch(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                workers.reap()
                time.sleep(0.1)

        try:
            started = time.monotonic() + 30  # mid-run: once delivery is under way, not while workers start
            while sink.stats()["total_accepted"] < 50 and time.monotonic() < started:
                watch(0.1)
            pg_proxy.outage(0.3)
            watch(1.5)
            pg_proxy.outage(0.3)
            watch(1.5)
            pg_proxy.outage(15)
            watch(15.5)
            left = _wait_until_final(room, workers, time.monotonic() + 45)
            alive = len(workers.running)
        finally:
            codes = workers.stop()
        outcome = _outcome(room, sink, workers)
    report = (f"{outcome.report()}; unfinished {left}; alive at the end {alive}; exit codes at SIGTERM {codes}\n"
              f"{workers.last_errors()}")
    outcome.record("workers on PostgreSQL", "two 0.3 s database restarts and a 15 s outage",
                   worker_exits=len(workers.exits))
    assert workers.exits == [], f"workers exited during the outages: {report}"
    assert outcome.statuses == Counter({"sent": total}), report
    assert not outcome.lost, report


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``: a disk that really fills up (SQLITE_FULL from the kernel).

    ``PRAGMA max_page_count`` cannot stand in: it is a setting of the connection that runs it, so set
    from the test it never reaches the worker's connections (checked: the worker's inserts go on).
    """
    path.mkdir()
    # Root mounts directly; elsewhere (a CI runner) passwordless sudo may do it, and -n never prompts.
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = None
    if shutil.which("mount") and (not as_root or shutil.which("sudo")):
        result = subprocess.run([*as_root, "mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs",
                                 str(path)], capture_output=True, text=True, check=False)
    if result is None or result.returncode != 0:
        reason = result.stderr.strip() if result else "no mount (or sudo) command"
        if os.environ.get("CI") == "true":
            pytest.fail(f"a small tmpfs is needed for the disk-full test and cannot be mounted: {reason}")
        pytest.skip(f"cannot mount a small tmpfs for the disk-full test (needs root or sudo -n): {reason}")
    try:
        yield path
    finally:
        subprocess.run([*as_root, "umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as handle:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):  # ENOSPC: the disk is full, as intended
            while True:
                handle.write(chunk)
                handle.flush()
    return filler


def test_sqlite_disk_full_mid_run_the_worker_waits_and_finishes(
        tmp_path: Path, secret_key: str, worker_logs: Path) -> None:
    total = 400
    with _small_disk(tmp_path / "disk", "24m") as disk:
        url = f"sqlite:///{disk / 'mailroom.db'}"
        with FaultSmtpProcess("--delay-ms", "20") as sink, Mailroom(database_url=url, secret_key=secret_key) as room:
            _queue(room, sink.port, total)
            workers = Workers(_env(url, secret_key, smtp_connections_per_server="2", worker_batch_size="20",
                                   retry_base_delay_seconds="1", poll_interval_seconds="0.5"), worker_logs)
            workers.start(1)
            try:
                deadline = time.monotonic() + 30
                while sink.stats()["total_accepted"] < 40 and time.monotonic() < deadline:
                    time.sleep(0.1)
                filler = _fill(disk)
                full_at = sink.stats()["total_accepted"]
                until = time.monotonic() + 5
                while time.monotonic() < until:
                    workers.reap()
                    time.sleep(0.1)
                filler.unlink()
                left = _wait_until_final(room, workers, time.monotonic() + 60)
            finally:
                codes = workers.stop()
            outcome = _outcome(room, sink, workers)
    report = (f"{outcome.report()}; unfinished {left}; accepted when the disk filled {full_at}; "
              f"exit codes at SIGTERM {codes}\n{workers.last_errors()}")
    outcome.record("a worker on SQLite", "the disk (a real tmpfs) full mid-run", worker_exits=len(workers.exits))
    assert workers.exits == [], f"the worker exited on a full disk: {report}"
    assert outcome.statuses == Counter({"sent": total}), report
    assert not outcome.lost, report



@pytest.mark.postgres
def test_a_worker_started_while_the_database_is_down_waits_for_it(
        postgres_url: str, secret_key: str, pg_proxy: PgProxy, worker_logs: Path) -> None:
    total = 20
    with FaultSmtpProcess() as sink, Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _queue(room, sink.port, total)
        pg_proxy.outage(4)
        workers = Workers(_env(pg_proxy.url(postgres_url), secret_key, poll_interval_seconds="0.5"), worker_logs)
        workers.start(1)
        try:
            time.sleep(3)
            workers.reap()
            assert workers.exits == [], f"the worker gave up while the database was down\\n{workers.last_errors()}"
            left = _wait_until_final(room, workers, time.monotonic() + 45)
        finally:
            workers.stop()
        outcome = _outcome(room, sink, workers)
    report = f"{outcome.report()}; unfinished {left}\n{workers.last_errors()}"
    outcome.record("a worker started during an outage", "the database down for 4 s at start",
                   worker_exits=len(workers.exits))
    assert workers.exits == [], report
    assert outcome.statuses == Counter({"sent": total}), report
