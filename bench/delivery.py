"""Delivery benchmark: mailroom's worker against a bare aiosmtplib client, same messages, same sink.

5,000 mails of about 2 KB are enqueued in bulk and drained by one worker into a discarding SMTP sink on
127.0.0.1 (its own process). In the same run a bare aiosmtplib client sends the same prepared messages
over the same number of connections to the same sink. Printed: mails/s for enqueue and delivery, and
the ratio of mailroom's delivery to the bare client's (the target is >= 0.70).

    python bench/delivery.py [--mails 5000] [--connections 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    port = free_port()
    sink = start_sink(port)
    workdir = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    try:
        with Mailroom(database_url=url, secret_key=Fernet.generate_key().decode(),
                      smtp_connections_per_server=args.connections, poll_interval_seconds=0.5) as room:
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

            bare_seconds = asyncio.run(bare_client(port, prepared, args.connections))
    finally:
        sink.terminate()
        sink.wait()

    n = args.mails
    print(f"mails: {n} of {size:.0f} bytes, {args.connections} connections, database {url.split(':')[0]}")
    print(f"enqueue (bulk):        {n / enqueue_seconds:10.0f} mails/s  ({enqueue_seconds:.2f} s)")
    print(f"mailroom delivery:     {n / deliver_seconds:10.0f} mails/s  ({deliver_seconds:.2f} s, {sent} sent)")
    print(f"bare aiosmtplib:       {n / bare_seconds:10.0f} mails/s  ({bare_seconds:.2f} s)")
    print(f"ratio delivery / bare: {bare_seconds / deliver_seconds:10.2f}   (target >= 0.70; reference: 1 mail/s)")


if __name__ == "__main__":
    main()
