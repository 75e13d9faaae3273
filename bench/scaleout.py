"""Scale-out: 1 against 2 ``mailroom worker`` processes on PostgreSQL draining the same queue into the sink.

Each round fills a scratch PostgreSQL database with ``--mails`` distinct mails (``send_mails``), starts the
workers (4 SMTP connections each, the default) and waits until every mail is sent; the throughput is the
number of mails over the time from the first ``sent_at`` to the last (so the processes' start-up is not
counted). 1 and 2 workers take turns round by round. The sink records every message it accepts (smtp-sink's
``-D`` dump, or bench/sink.py ``--record``), and each run's Message-IDs are counted against the database's:
duplicates (a Message-ID accepted more than once) and lost (queued, never accepted) must both be 0.

    python bench/scaleout.py [--mails 6000] [--rounds 2] [--python-sink]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from cryptography.fernet import Fernet
from delivery import BODY, free_port, recorded_message_ids, start_sink
from enqueue import postgres_database
from sqlalchemy import select, text
from workers import sent_span, start_worker, stop_worker, wait_until_sent

from mailroom import SYSTEM, Mail, Mailroom, Security, ServerSettings
from mailroom.adapters.storage.tables import mails


class Drain(NamedTuple):
    workers: int
    mails: int
    per_second: float
    duplicates: int
    lost: int
    busy: float  # the share of the machine's CPU time in use while the workers drained (1.0: every core)


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores together, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields) - idle, sum(fields)


def drain(room: Mailroom, secret_key: str, workers: int, count: int, record: Path, *, round_id: str) -> Drain:
    """Queue ``count`` mails on the empty queue, drain them with ``workers`` processes and count what the
    sink got."""
    room.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Scale-out {round_id} {i}", text=BODY)
                             for i in range(count)])
    with room.database.read() as conn:
        expected = {row[0] for row in conn.execute(select(mails.c.message_id))}
    before = recorded_message_ids(record)
    url = room.database.url.render_as_string(hide_password=False)
    processes = [start_worker(url, secret_key) for _ in range(workers)]
    busy_before, total_before = cpu_times()
    try:
        sent = wait_until_sent(room.database, count, timeout=max(120.0, count / 50), workers=processes)
        busy_after, total_after = cpu_times()
    finally:
        for process in processes:
            stop_worker(process)
    if sent != count:
        raise RuntimeError(f"{workers} worker(s) sent {sent} of {count} mails before the timeout")
    sent, first, last = sent_span(room.database)
    assert first is not None and last is not None
    time.sleep(0.2)  # the sink writes its record as it answers; give the last answers a moment
    received = recorded_message_ids(record) - before
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    lost = len(expected - set(received))
    span = max((last - first).total_seconds(), 1e-3)
    with room.database.write() as conn:  # the next run starts on an empty queue
        conn.execute(text("TRUNCATE mailroom_mails CASCADE"))
    busy = (busy_after - busy_before) / max(total_after - total_before, 1)
    return Drain(workers, count, (sent - 1) / span if sent > 1 else float(sent), duplicates, lost, busy)


def run(pg_admin: str, *, mails: int, rounds: int, python_sink: bool) -> tuple[list[Drain], str]:
    """Rounds of 1 then 2 workers (2 then 1 in odd rounds); raises if PostgreSQL cannot be reached."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mailroom-scaleout-") as folder, \
            postgres_database(pg_admin) as admin_url:
        if admin_url is None:
            raise RuntimeError(f"PostgreSQL is needed for the scale-out bench and is not reachable at {pg_admin}")
        record = Path(folder) / "received"
        sink, sink_name = start_sink(port, python_sink=python_sink, record=record)
        secret_key = Fernet.generate_key().decode()
        url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
        try:
            with Mailroom(database_url=url, secret_key=secret_key) as room:
                room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port,
                                                        security=Security.NONE, sender="bench@example.org"))
                results = []
                for number in range(rounds):
                    for workers in (1, 2) if number % 2 == 0 else (2, 1):
                        results.append(drain(room, secret_key, workers, mails, record,
                                             round_id=f"{number}-{workers}"))
        finally:
            sink.terminate()
            sink.wait()
    return results, sink_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--python-sink", action="store_true")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results, sink_name = run(args.pg_admin, mails=args.mails, rounds=args.rounds, python_sink=args.python_sink)
    print(f"sink: {sink_name}; PostgreSQL; {args.mails} mails per run")
    for r in results:
        print(f"  {r.workers} worker(s): {r.per_second:8.0f} mails/s, {r.duplicates} duplicates, {r.lost} lost, "
              f"CPU {r.busy:.0%} busy")
    one, two = (statistics.median(r.per_second for r in results if r.workers == n) for n in (1, 2))
    print(f"2 workers / 1 worker: {two / one:.2f} (target >= 1.7 on 2 cores)")


if __name__ == "__main__":
    main()
