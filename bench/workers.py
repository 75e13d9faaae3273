"""Worker processes for benchmarks: start ``mailroom worker`` on a database, count what it sent, read its memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

from sqlalchemy import func, select

from mailroom import MailStatus
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import mails


def start_worker(database_url: str, secret_key: str, **settings: str) -> subprocess.Popen[bytes]:
    """``mailroom worker`` as its own process, configured by environment as in production."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=database_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
               **{f"MAILROOM_{name.upper()}": value for name, value in settings.items()})
    return subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker finishes what it has in flight), then wait; a worker that died says why."""
    if worker.poll() is not None and worker.returncode != 0:
        stderr = worker.stderr.read().decode(errors="replace") if worker.stderr else ""
        raise RuntimeError(f"the worker process ended with {worker.returncode}: {stderr[-2000:]}")
    worker.terminate()
    worker.wait(timeout=60)


def sent_count(database: Database) -> int:
    """Mails sent so far, counted in the table (the log search's total is bounded)."""
    with database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(mails)
                                .where(mails.c.status == MailStatus.SENT.value)).scalar_one())


def sent_span(database: Database) -> tuple[int, datetime | None, datetime | None]:
    """How many mails are sent, and the first and last ``sent_at``."""
    with database.read() as conn:
        count, first, last = conn.execute(
            select(func.count(), func.min(mails.c.sent_at), func.max(mails.c.sent_at))
            .where(mails.c.status == MailStatus.SENT.value)).one()
    return int(count), first, last


def wait_until_sent(database: Database, total: int, *, timeout: float,
                    workers: list[subprocess.Popen[bytes]] | None = None) -> int:
    """Poll until ``total`` mails are sent or ``timeout`` passes; returns the count reached."""
    deadline = time.monotonic() + timeout
    sent = sent_count(database)
    while sent < total and time.monotonic() < deadline:
        for worker in workers or ():
            if worker.poll() is not None:
                stop_worker(worker)  # raises with the worker's last words
        time.sleep(0.2)
        sent = sent_count(database)
    return sent


def memory_mib(pid: int) -> tuple[float, float]:
    """The process's resident set now and its peak so far (VmRSS, VmHWM from /proc), in MiB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]
