"""Worker memory: the peak resident set of a ``mailroom worker`` process while it drains a deep queue.

For each queue depth a fresh SQLite database is filled, then one worker process drains it into the sink
and its peak RSS (``VmHWM``) is read while it works: until the queue is empty, or for ``--seconds`` after
its first delivery when draining it all would take too long (a worker claims a bounded batch at a time,
so the peak is reached in the first seconds; the drained count is printed). The baseline, measured the
same way in the same run, is a worker that sent one mail and idles on the empty queue.

Filling: ``--seed`` mails go through ``send_mails``; the rest are copies of those rows (every table that
holds a ``mail_id``, read from the database itself, so the copy follows the schema), made with
``INSERT ... SELECT`` in the database: 200,000 queued mails in seconds instead of a minute of enqueueing.

    python bench/rss.py [--depths 10000 200000] [--seconds 20] [--python-sink]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from cryptography.fernet import Fernet
from delivery import BODY, free_port, start_sink
from sqlalchemy import MetaData, Table, text
from workers import memory_mib, sent_count, start_worker, stop_worker

from mailroom import SYSTEM, Mail, Mailroom, Security, ServerSettings
from mailroom.adapters.storage.database import Database

COPY_BATCH = 2000


class Rss(NamedTuple):
    queued: int
    peak_mib: float
    last_mib: float
    drained: int
    seconds: float


def copy_mails(database: Database, seed_count: int, copies: int) -> None:
    """Add ``copies`` queued mails, copies of the seed's rows with new ids (a copy's id is the seed's with its
    first 4 hex digits replaced by 'f' and the round number: UUIDv7 ids start with '0' until 2109)."""
    metadata = MetaData()
    metadata.reflect(database.engine)
    tables: list[tuple[Table, str]] = [(metadata.tables["mailroom_mails"], "id")]
    tables += [(table, "mail_id") for table in metadata.tables.values() if "mail_id" in table.c]
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE bench_seed (id VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO bench_seed (id) SELECT id FROM mailroom_mails"))
        for number in range(-(-copies // seed_count)):
            count = min(seed_count, copies - number * seed_count)
            if count < seed_count:
                conn.execute(text(f"DELETE FROM bench_seed WHERE id NOT IN "
                                  f"(SELECT id FROM bench_seed ORDER BY id LIMIT {count})"))
            prefix = f"f{number:03x}"
            for table, key in tables:
                columns = [c.name for c in table.c if not (c.name == "id" and key != "id")]  # serial ids
                values = [f"'{prefix}' || substr({c}, 5)" if c == key else c for c in columns]
                conn.execute(text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(values)} "
                                  f"FROM {table.name} WHERE {key} IN (SELECT id FROM bench_seed)"))
        conn.execute(text("DROP TABLE bench_seed"))


def fill(url: str, secret_key: str, port: int, queued: int) -> None:
    """A fresh database with the sink as its server and ``queued`` mails due now."""
    with Mailroom(database_url=url, secret_key=secret_key) as room:
        room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port,
                                                security=Security.NONE, sender="bench@example.org"))
        seed = min(queued, COPY_BATCH)
        for start in range(0, seed, 1000):
            room.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Benchmark mail {i}", text=BODY)
                                     for i in range(start, min(seed, start + 1000))])
        if queued > seed:
            copy_mails(room.database, seed, queued - seed)


def measure(url: str, secret_key: str, queued: int, *, seconds: float, linger: float = 0.0,
            startup_timeout: float = 120.0) -> Rss:
    """Start a worker on the filled database and read its memory until the queue is empty (and ``linger``
    seconds more) or ``seconds`` have passed since it sent its first mail (its start-up is not counted)."""
    database = Database(url)
    worker = start_worker(url, secret_key)
    spawned = time.monotonic()
    first_sent: float | None = None
    emptied: float | None = None
    peak = last = 0.0
    drained = 0
    try:
        while True:
            time.sleep(0.25)
            if worker.poll() is not None:
                stop_worker(worker)  # raises with the worker's last words
            last, peak = memory_mib(worker.pid)
            drained = sent_count(database)
            now = time.monotonic()
            if drained and first_sent is None:
                first_sent = now
            if first_sent is None and now - spawned > startup_timeout:
                raise RuntimeError(f"the worker sent nothing within {startup_timeout:.0f} s")
            if drained >= queued:
                emptied = emptied or now
                if now - emptied >= linger:
                    break
            elif first_sent is not None and now - first_sent >= seconds:
                break
        last, peak = memory_mib(worker.pid)
        elapsed = (emptied or time.monotonic()) - (first_sent or spawned)
    finally:
        stop_worker(worker)
        database.dispose()
    return Rss(queued, peak, last, drained, elapsed)


def run(depths: list[int], *, seconds: float, idle_seconds: float, port: int) -> list[Rss]:
    """The baseline first (one mail, then ``idle_seconds`` of idling: every module a delivery needs is
    loaded, nothing queued), then each depth; a fresh SQLite file each."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mailroom-rss-") as folder:
        for number, queued in enumerate([1, *depths]):
            url = f"sqlite:///{Path(folder) / f'rss-{number}.db'}"
            secret_key = Fernet.generate_key().decode()
            fill(url, secret_key, port, queued)
            results.append(measure(url, secret_key, queued, seconds=seconds,
                                   linger=idle_seconds if queued == 1 else 0.0))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--seconds", type=float, default=20.0, help="longest drain per depth")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--python-sink", action="store_true")
    args = parser.parse_args()
    port = free_port()
    sink, sink_name = start_sink(port, python_sink=args.python_sink)
    try:
        results = run(args.depths, seconds=args.seconds, idle_seconds=args.idle_seconds, port=port)
    finally:
        sink.terminate()
        sink.wait()
    print(f"sink: {sink_name}; SQLite; peak RSS of the worker process (VmHWM)")
    for r in results:
        label = f"{r.queued:>9,} queued{' (baseline)' if r.queued == 1 else ''}"
        print(f"  {label}: peak {r.peak_mib:6.1f} MiB, now {r.last_mib:6.1f} MiB, "
              f"{r.drained:,} sent in {r.seconds:.1f} s")


if __name__ == "__main__":
    main()
