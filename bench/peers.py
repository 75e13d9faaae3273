"""mailroom against django-post_office: the same mails, the same steps, the same sink, the same database kind.

For SQLite and PostgreSQL each side gets a fresh database and runs, in its own process (post_office in
bench/postoffice.py, mailroom here): a warm-up of 50 mails queued and delivered, ``--mails`` mails queued one
by one (``send_mail`` / ``mail.send``), ``--mails`` queued in batches (``send_mails`` / ``mail.send_many``),
then all of them delivered (one in-process worker with ``--connections`` SMTP connections /
``send_queued_mail_until_done`` with as many threads). Printed per step: mails/s and CPU per mail of each
and mailroom ÷ post_office.

    python bench/peers.py [--mails 1000] [--connections 4] [--python-sink] [--no-postgres]

Needs the bench extra (django, django-post_office): pip install -c constraints.txt -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

from cryptography.fernet import Fernet
from delivery import BODY, free_port, start_sink
from enqueue import postgres_database
from workers import sent_count

from mailroom import SYSTEM, Mail, Mailroom, Security, ServerSettings

STEPS = ("single", "bulk", "delivery")


class Step(NamedTuple):
    per_second: float
    cpu_us: float


class Comparison(NamedTuple):
    database: str
    mailroom: dict[str, Step]
    post_office: dict[str, Step]


def django_missing() -> str | None:
    """Why the peer cannot run here, or None."""
    missing = [name for name in ("django", "post_office") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed (pip install -c constraints.txt -e '.[bench]')" if missing else None


def measure(count: int, run: Callable[[], None]) -> Step:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Step(count / wall, cpu / count * 1e6)


def mailroom_steps(url: str, port: int, mails: int, connections: int, batch: int = 1000) -> dict[str, Step]:
    def mail(i: int) -> Mail:
        return Mail(to=f"user{i}@example.org", subject=f"Benchmark mail {i}", text=BODY, sender="bench@example.org")

    with Mailroom(database_url=url, secret_key=Fernet.generate_key().decode(),
                  smtp_connections_per_server=connections) as room:
        room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port,
                                                security=Security.NONE, sender="bench@example.org"))

        def deliver() -> None:
            asyncio.run(room.run_worker(until_idle=True))

        for i in range(50):
            room.send_mail(SYSTEM, mail(1_000_000 + i))
        deliver()

        def single() -> None:
            for i in range(mails):
                room.send_mail(SYSTEM, mail(i))

        prepared = [mail(mails + i) for i in range(mails)]

        def bulk() -> None:
            for start in range(0, mails, batch):
                room.send_mails(SYSTEM, prepared[start:start + batch])

        steps = {"single": measure(mails, single), "bulk": measure(mails, bulk),
                 "delivery": measure(2 * mails, deliver)}
        sent = sent_count(room.database) - 50
    if sent != 2 * mails:
        raise RuntimeError(f"mailroom sent {sent} of {2 * mails} mails")
    return steps


def post_office_steps(database: str, port: int, mails: int, connections: int) -> dict[str, Step]:
    env = os.environ | {"BENCH_PO_DATABASE": database, "BENCH_PO_SMTP_PORT": str(port),
                        "BENCH_PO_THREADS": str(connections)}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("postoffice.py")), "--mails", str(mails)],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench/postoffice.py failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["sent"] != 2 * mails:
        raise RuntimeError(f"post_office sent {result['sent']} of {2 * mails} mails")
    return {step: Step(*result[step]) for step in STEPS}


def run(*, mails: int, connections: int, port: int, pg_admin: str | None) -> list[Comparison]:
    """SQLite, then PostgreSQL unless ``pg_admin`` is None (raises if it is given and cannot be reached)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mailroom-peers-") as folder:
        results.append(Comparison(
            "SQLite", mailroom_steps(f"sqlite:///{folder}/mailroom.db", port, mails, connections),
            post_office_steps(f"{folder}/post_office.db", port, mails, connections)))
    if pg_admin is not None:
        with ExitStack() as stack:
            ours, theirs = (stack.enter_context(postgres_database(pg_admin)) for _ in range(2))
            if ours is None or theirs is None:
                raise RuntimeError(f"PostgreSQL is not reachable at {pg_admin}")
            results.append(Comparison(
                "PostgreSQL",
                mailroom_steps(ours.replace("postgresql://", "postgresql+psycopg://", 1), port, mails, connections),
                post_office_steps(theirs, port, mails, connections)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--python-sink", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if (problem := django_missing()) is not None:
        raise SystemExit(problem)
    port = free_port()
    sink, sink_name = start_sink(port, python_sink=args.python_sink)
    try:
        results = run(mails=args.mails, connections=args.connections, port=port,
                      pg_admin=None if args.no_postgres else args.pg_admin)
    finally:
        sink.terminate()
        sink.wait()
    print(f"sink: {sink_name}; {args.mails} mails per step, {args.connections} SMTP connections")
    for comparison in results:
        for step in STEPS:
            ours, theirs = comparison.mailroom[step], comparison.post_office[step]
            print(f"  {comparison.database:<10} {step:<8} mailroom {ours.per_second:7.0f}/s {ours.cpu_us:7.0f} us, "
                  f"post_office {theirs.per_second:7.0f}/s {theirs.cpu_us:7.0f} us, "
                  f"ratio {ours.per_second / theirs.per_second:.2f}")


if __name__ == "__main__":
    main()
