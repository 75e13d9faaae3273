"""Wake-up latency: how long a mail queued by one process waits before an idle worker in another sends it.

A ``mailroom worker`` runs as its own process (default settings, so it polls every
``poll_interval_seconds``, 2 s); this process queues one mail at a time with ``send_mail`` and times it
until an aiosmtpd sink in this process (a thread, same clock) receives it. Between mails it waits a
random 0.1 s to 0.1 s + ``--max-gap-seconds`` (default 2 s, one default poll interval) after the previous
delivery, so the worker is idle each time and the send falls anywhere in its poll cycle. After each, the
same one-line mail goes straight from this process to the sink with aiosmtplib: the floor. Printed: p50,
p99 and max over ``--mails`` mails, the floor's p50 and p99, and what ``notify()`` (run on every
``send_mail``) costs in this process with one worker listening and with none.

    python bench/latency.py [--mails 50] [--database-url URL] [--poll-interval-seconds S]
                            [--max-gap-seconds S]

``--database-url`` takes an empty database (e.g. a fresh PostgreSQL one, to compare with LISTEN/NOTIFY);
by default a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NamedTuple

import aiosmtplib
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, Security, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController
from mailroom.adapters.storage.tables import mails as mails_table


class TimingSink:
    """Notes when each X-Test-Id arrives (``time.monotonic()``, comparable with this process's clock)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.monotonic()
        test_id = message_from_bytes(envelope.content)["X-Test-Id"]
        with self._changed:
            self.arrived[test_id] = arrived
            self._changed.notify_all()
        return "250 OK"

    def wait_for(self, test_id: str, timeout: float) -> float:
        with self._changed:
            if not self._changed.wait_for(lambda: test_id in self.arrived, timeout):
                raise SystemExit(f"mail {test_id} did not arrive within {timeout} s")
            return self.arrived[test_id]


def notify_cost_us(room: Mailroom, calls: int = 20_000) -> float:
    """Microseconds per ``notify()``: the extra cost of every send_mail."""
    started = time.perf_counter()
    for _ in range(calls):
        room.wakeup.notify()
    return (time.perf_counter() - started) * 1e6 / calls


class Latency(NamedTuple):
    latencies_ms: list[float]
    direct_ms: list[float]
    sent: int
    idle_notify_us: float
    listening_notify_us: float

    def percentile(self, which: int, values: list[float] | None = None) -> float:
        values = self.latencies_ms if values is None else values
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[which - 1]


def direct_send_ms(port: int, sink: TimingSink, test_id: str) -> float:
    """The floor: the same one-line mail sent straight to the sink by aiosmtplib from this process."""
    message = EmailMessage()
    message["From"], message["To"], message["X-Test-Id"] = "bench@example.org", "a@example.org", test_id
    message.set_content("x")
    started = time.monotonic()
    asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False, use_tls=False))
    return (sink.wait_for(test_id, timeout=60) - started) * 1000


def measure_latency(url: str, mails: int, *, max_gap_seconds: float = 2.0,
                    poll_interval_seconds: float | None = None) -> Latency:
    """Queue ``mails`` mails one at a time for an idle worker process on the empty database ``url`` and
    time each until the sink has it; each is followed by the same mail sent straight to the sink."""
    secret_key = Fernet.generate_key().decode()
    sink = TimingSink()
    controller = AnyPortController(sink, hostname="127.0.0.1", port=0)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING")
    if poll_interval_seconds is not None:
        env["MAILROOM_POLL_INTERVAL_SECONDS"] = str(poll_interval_seconds)
    try:
        with Mailroom(database_url=url, secret_key=secret_key) as room:
            if room.servers.list(SYSTEM):
                raise SystemExit("--database-url must name an empty database")
            room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=controller.port,
                                                    security=Security.NONE, sender="bench@example.org"))
            idle_cost = notify_cost_us(room)
            worker = subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env)
            try:
                room.send_mail(SYSTEM, Mail(to="warm@example.org", text="x", headers={"X-Test-Id": "warm-up"}))
                sink.wait_for("warm-up", timeout=60)  # the worker runs (and listens) from here on
                latencies, direct = [], []
                for i in range(mails):
                    # The worker has written the result and idles; the send lands anywhere in its poll cycle.
                    time.sleep(0.1 + random.uniform(0, max_gap_seconds))
                    started = time.monotonic()
                    room.send_mail(SYSTEM, Mail(to="a@example.org", text="x", headers={"X-Test-Id": str(i)}))
                    latencies.append((sink.wait_for(str(i), timeout=60) - started) * 1000)
                    direct.append(direct_send_ms(controller.port, sink, f"direct-{i}"))
                listening_cost = notify_cost_us(room)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
            with room.database.read() as conn:
                sent = conn.execute(select(func.count()).select_from(mails_table)
                                    .where(mails_table.c.status == MailStatus.SENT.value)).scalar_one()
    finally:
        controller.stop()
    return Latency(latencies, direct, sent, idle_cost, listening_cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--poll-interval-seconds", type=float, default=None,
                        help="the worker's fallback poll (default: the settings' default, 2 s)")
    parser.add_argument("--max-gap-seconds", type=float, default=2.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mailroom-latency-"))
    url = args.database_url or f"sqlite:///{workdir / 'latency.db'}"
    result = measure_latency(url, args.mails, max_gap_seconds=args.max_gap_seconds,
                             poll_interval_seconds=args.poll_interval_seconds)
    database = url.split(":")[0]
    latencies = result.latencies_ms
    print(f"database {database}, {len(latencies)} mails one at a time to an idle worker process "
          f"({result.sent} sent), poll interval {args.poll_interval_seconds or 'default'}")
    print(f"send_mail -> sink: p50 {result.percentile(50):.0f} ms, p99 {result.percentile(99):.0f} ms, "
          f"max {max(latencies):.0f} ms, min {min(latencies):.0f} ms")
    print(f"direct aiosmtplib -> sink (the floor): p50 {result.percentile(50, result.direct_ms):.1f} ms, "
          f"p99 {result.percentile(99, result.direct_ms):.1f} ms")
    print(f"notify() cost: {result.idle_notify_us:.2f} us with no worker listening, "
          f"{result.listening_notify_us:.2f} us with one")


if __name__ == "__main__":
    main()
