"""Delivery benchmark: mailroom's worker against a bare aiosmtplib client, same messages, same sink.

5,000 mails of about 2 KB are enqueued in bulk and drained by one worker into a discarding SMTP sink on
127.0.0.1 (its own process). In the same run a bare aiosmtplib client sends the same prepared messages
over the same number of connections to the same sink. Printed: mails/s for enqueue and delivery, and
the ratio of mailroom's delivery to the bare client's (the target is >= 0.70).

    python bench/delivery.py [--mails 5000] [--connections 4] [--batch-size 300] [--rounds 5]
                             [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
from cryptography.fernet import Fernet
from sqlalchemy import select

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, Security, ServerSettings
from mailroom.adapters.storage.tables import mail_contents
from mailroom.settings import Settings

BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30)[:1700]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[str]:
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sink.py")), str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink.stdout.readline()  # "ready"
    return sink


async def bare_client(port: int, messages: list[tuple[str, list[str], bytes]], connections: int) -> float:
    queue: asyncio.Queue[tuple[str, list[str], bytes]] = asyncio.Queue()
    for item in messages:
        queue.put_nowait(item)

    async def one_connection() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False) as smtp:
            while not queue.empty():
                sender, recipients, data = queue.get_nowait()
                await smtp.sendmail(sender, recipients, data)

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return time.perf_counter() - started


def one_round(args: argparse.Namespace, port: int, workdir: Path, number: int) -> tuple[float, float, float, float]:
    """Enqueue, drain with mailroom, then send the same messages with the bare client: the seconds of
    each, and the message size. A fresh database per round."""
    url = args.database_url or f"sqlite:///{workdir / f'bench-{number}.db'}"
    with Mailroom(database_url=url, secret_key=Fernet.generate_key().decode(),
                  smtp_connections_per_server=args.connections, worker_batch_size=args.batch_size,
                  poll_interval_seconds=0.5) as room:
        if room.servers.list(SYSTEM):
            raise SystemExit("--database-url must name an empty database")
        room.servers.add(SYSTEM, ServerSettings(name="sink", host="127.0.0.1", port=port,
                                                security=Security.NONE, sender="bench@example.org"))
        mails = [Mail(to=f"user{i}@example.org", subject=f"Benchmark mail {i}", text=BODY)
                 for i in range(args.mails)]
        started = time.perf_counter()
        room.send_mails(SYSTEM, mails)
        enqueue_seconds = time.perf_counter() - started

        with room.database.read() as conn:
            raw = [row[0] for row in conn.execute(select(mail_contents.c.message))]
        prepared = [("bench@example.org", [f"user{i}@example.org"],
                     room.builder.with_from(message, "bench@example.org")) for i, message in enumerate(raw)]
        size = sum(len(m[2]) for m in prepared) / len(prepared)

        started = time.perf_counter()
        asyncio.run(room.run_worker(until_idle=True))
        deliver_seconds = time.perf_counter() - started
        sent = room.search_mail_log(SYSTEM, statuses=frozenset({MailStatus.SENT}), limit=1).total
        if sent != args.mails:
            raise SystemExit(f"only {sent} of {args.mails} mails were sent")
    bare_seconds = asyncio.run(bare_client(port, prepared, args.connections))
    return enqueue_seconds, deliver_seconds, bare_seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=Settings().worker_batch_size)
    parser.add_argument("--rounds", type=int, default=5,
                        help="mailroom and the bare client take turns this often; medians are printed, so a "
                             "noisy neighbour on a shared machine hits both alike")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if args.database_url and args.rounds != 1:
        parser.error("--database-url needs --rounds 1 (each round needs an empty database)")

    port = free_port()
    sink = start_sink(port)
    workdir = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    try:
        rounds = [one_round(args, port, workdir, number) for number in range(args.rounds)]
    finally:
        sink.terminate()
        sink.wait()

    n = args.mails
    enqueue, deliver, bare = (statistics.median(r[i] for r in rounds) for i in range(3))
    ratios = [r[2] / r[1] for r in rounds]
    database = (args.database_url or "sqlite").split(":")[0]
    print(f"mails: {n} of {rounds[0][3]:.0f} bytes, {args.connections} connections, batch {args.batch_size}, "
          f"database {database}, median of {args.rounds} round(s)")
    print(f"enqueue (bulk):        {n / enqueue:10.0f} mails/s  ({enqueue:.2f} s)")
    print(f"mailroom delivery:     {n / deliver:10.0f} mails/s  ({deliver:.2f} s)")
    print(f"bare aiosmtplib:       {n / bare:10.0f} mails/s  ({bare:.2f} s)")
    print(f"ratio delivery / bare: {statistics.median(ratios):10.2f}   per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}   (target >= 0.70; reference: 1 mail/s)")


if __name__ == "__main__":
    main()
