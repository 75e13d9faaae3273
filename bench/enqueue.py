"""Enqueue benchmark: ``send_mail`` and ``send_mails`` against a bare INSERT + COMMIT per mail, same database.

For SQLite (a fresh file, WAL, synchronous=NORMAL, as mailroom opens it) and, when reachable, PostgreSQL (a
fresh database on ``--pg-admin``), in one run:

- baseline: one ``INSERT`` of a ~2 KB message and a ``COMMIT`` per mail on a bare DBAPI connection (sqlite3 /
  psycopg), the ceiling a durable queue that stores one row per mail can reach;
- single: ``mailroom.send_mail`` per mail, the ``Mail`` built in the loop as an application does;
- bulk: ``mailroom.send_mails`` in batches of ``--batch`` prepared mails.

Printed per case: mails/s (wall), CPU per mail (``time.process_time``: what a mail costs whatever the
machine's load) and the ratio of mails/s to the baseline's. Medians over ``--rounds``. Mails are distinct
(recipient and subject per mail); ``--same-body`` is the default shape (one 1.7 KB body, as a newsletter),
``--distinct-bodies`` gives every mail its own body.

    python bench/enqueue.py [--mails 2000] [--batch 1000] [--rounds 3] [--distinct-bodies] [--no-postgres]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import psycopg
from cryptography.fernet import Fernet

from mailroom import SYSTEM, Mail, Mailroom

BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30)[:1700]
MESSAGE = b"X" * 2048


class Measure(NamedTuple):
    per_second: float
    cpu_us: float


def measure(count: int, run: Callable[[], None]) -> Measure:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Measure(count / wall, cpu / count * 1e6)


def body(i: int, distinct: bool) -> str:
    return f"{i:08d} {BODY}" if distinct else BODY


def mail(i: int, distinct: bool) -> Mail:
    return Mail(to=[f"user{i}@example.org"], subject=f"Invoice {i}", text=body(i, distinct), sender="shop@example.org")


def baseline_sqlite(path: Path, count: int) -> Measure:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE bench (id TEXT PRIMARY KEY, message BLOB NOT NULL)")

    def run() -> None:
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench (id, message) VALUES (?, ?)", (uuid.uuid4().hex, MESSAGE))
            conn.execute("COMMIT")

    try:
        return measure(count, run)
    finally:
        conn.close()


def baseline_postgres(url: str, count: int) -> Measure:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench (id TEXT PRIMARY KEY, message BYTEA NOT NULL)")
        conn.commit()

        def run() -> None:
            for _ in range(count):
                conn.execute("INSERT INTO bench (id, message) VALUES (%s, %s)", (uuid.uuid4().hex, MESSAGE))
                conn.commit()

        return measure(count, run)


def single(room: Mailroom, count: int, distinct: bool, offset: int) -> Measure:
    def run() -> None:
        for i in range(offset, offset + count):
            room.send_mail(SYSTEM, mail(i, distinct))

    return measure(count, run)


def bulk(room: Mailroom, count: int, batch: int, distinct: bool, offset: int) -> Measure:
    mails = [mail(i, distinct) for i in range(offset, offset + count)]

    def run() -> None:
        for start in range(0, count, batch):
            room.send_mails(SYSTEM, mails[start:start + batch])

    return measure(count, run)


@contextmanager
def postgres_database(admin: str) -> Iterator[str | None]:
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            name = f"mailroom_bench_{uuid.uuid4().hex[:12]}"
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL skipped: {exc}".strip())
        yield None
        return
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


CASES = ("baseline INSERT+COMMIT", "single send_mail", "bulk send_mails")


def measure_backend(url: str, baseline: Callable[[], Measure], args: argparse.Namespace) -> dict[str, Measure]:
    """Median mails/s and CPU per mail of each case (``CASES``) on one database; bench/run.py reads these."""
    rounds: dict[str, list[Measure]] = {name: [] for name in CASES}
    with Mailroom(database_url=url, secret_key=Fernet.generate_key().decode()) as room:
        for i in range(args.warmup):  # warm-up: imports, caches, the first statements
            room.send_mail(SYSTEM, mail(10_000_000 + i, args.distinct_bodies))
        rounds[CASES[0]].append(baseline())
        for number in range(args.rounds):
            offset = number * args.mails * 2
            rounds[CASES[1]].append(single(room, args.mails, args.distinct_bodies, offset))
            rounds[CASES[2]].append(bulk(room, args.mails, args.batch, args.distinct_bodies, offset + args.mails))
    return {name: Measure(statistics.median(m.per_second for m in measures),
                          statistics.median(m.cpu_us for m in measures))
            for name, measures in rounds.items()}


def run_backend(label: str, url: str, baseline: Callable[[], Measure], args: argparse.Namespace) -> None:
    medians = measure_backend(url, baseline, args)
    base = medians[CASES[0]].per_second
    print(f"\n{label}: {args.mails} mails per case, median of {args.rounds} rounds, "
          f"{'distinct bodies' if args.distinct_bodies else 'one shared body'}")
    for name, median in medians.items():
        print(f"  {name:<24} {median.per_second:>9,.0f} mails/s  {median.cpu_us:>8,.1f} us CPU/mail  "
              f"{median.per_second / base:>6.2f} x baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distinct-bodies", action="store_true")
    parser.add_argument("--warmup", type=int, default=200, help="mails sent before the clock starts")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run_backend("SQLite", f"sqlite:///{folder}/mailroom.db",
                    lambda: baseline_sqlite(Path(folder) / "baseline.db", args.mails), args)
    if not args.no_postgres:
        with postgres_database(args.pg_admin) as url:
            if url is not None:
                run_backend("PostgreSQL", url.replace("postgresql://", "postgresql+psycopg://", 1),
                            lambda: baseline_postgres(url, args.mails), args)


if __name__ == "__main__":
    main()
