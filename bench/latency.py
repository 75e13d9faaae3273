"""Wake-up latency: how long a mail queued by one process waits before an idle worker in another sends it.

A ``mailroom worker`` runs as its own process (default settings, so it polls every
``poll_interval_seconds``, 2 s); this process queues one mail at a time with ``send_mail`` and times it
until an aiosmtpd sink in this process (a thread, same clock) receives it. Between mails it waits a
random 0.1 s to 0.1 s + ``--max-gap-seconds`` (default 2 s, one default poll interval) after the previous
delivery, so the worker is idle each time and the send falls anywhere in its poll cycle. Printed: p50,
p99 and max over ``--mails`` mails, and what ``notify()`` (run on every ``send_mail``) costs in this
process with one worker listening and with none.

    python bench/latency.py [--mails 50] [--database-url URL] [--poll-interval-seconds S]
                            [--max-gap-seconds S]

``--database-url`` takes an empty database (e.g. a fresh PostgreSQL one, to compare with LISTEN/NOTIFY);
by default a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, Security, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController


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
    secret_key = Fernet.generate_key().decode()
    sink = TimingSink()
    controller = AnyPortController(sink, hostname="127.0.0.1", port=0)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING")
    if args.poll_interval_seconds is not None:
        env["MAILROOM_POLL_INTERVAL_SECONDS"] = str(args.poll_interval_seconds)
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
                latencies = []
                for i in range(args.mails):
                    # The worker has written the result and idles; the send lands anywhere in its poll cycle.
                    time.sleep(0.1 + random.uniform(0, args.max_gap_seconds))
                    started = time.monotonic()
                    room.send_mail(SYSTEM, Mail(to="a@example.org", text="x", headers={"X-Test-Id": str(i)}))
                    latencies.append((sink.wait_for(str(i), timeout=60) - started) * 1000)
                listening_cost = notify_cost_us(room)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
            sent = room.search_mail_log(SYSTEM, statuses=frozenset({MailStatus.SENT}), limit=1).total
    finally:
        controller.stop()

    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    database = url.split(":")[0]
    print(f"database {database}, {len(latencies)} mails one at a time to an idle worker process "
          f"({sent} sent), poll interval {args.poll_interval_seconds or 'default'}")
    print(f"send_mail -> sink: p50 {percentiles[49]:.0f} ms, p99 {percentiles[98]:.0f} ms, "
          f"max {max(latencies):.0f} ms, min {min(latencies):.0f} ms")
    print(f"notify() cost: {idle_cost:.2f} us with no worker listening, {listening_cost:.2f} us with one")


if __name__ == "__main__":
    main()
