"""Delivery benchmark: mailroom's worker against a bare aiosmtplib client, same messages, same sink.

5,000 mails of about 2 KB are enqueued in bulk and drained by one worker into a discarding SMTP sink on
127.0.0.1 (its own process): Postfix's C ``smtp-sink`` when installed (``apt-get install postfix``), so
the sink costs next to nothing and the client is what is measured; otherwise bench/sink.py (aiosmtpd),
with a warning, since a Python sink can be the bottleneck and flatters the ratio. In the same run a bare
aiosmtplib client sends the same prepared messages over the same number of connections to the same sink,
the two taking turns round by round. Printed: which sink, mails/s for enqueue and delivery (medians), the
ratio of mailroom's delivery to the bare client's (the target is >= 0.70), and the CPU time of this
process per mail for each (process CPU seconds / mails: what a mail costs, whatever the machine's load).

    python bench/delivery.py [--mails 5000] [--connections 4] [--batch-size 300] [--rounds 5]
                             [--database-url URL] [--python-sink]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

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


SMTP_SINK = "/usr/sbin/smtp-sink"


def start_sink(port: int, *, python_sink: bool,
               record: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """The sink process and its name: Postfix's smtp-sink when installed, else the Python one. With ``record``
    every message's headers are appended to that file (smtp-sink's ``-D`` dump; the Python sink writes the
    Message-ID line alone), for ``recorded_message_ids``."""
    binary = shutil.which("smtp-sink") or (SMTP_SINK if os.access(SMTP_SINK, os.X_OK) else None)
    if binary and not python_sink:
        # -u: smtp-sink refuses to run as root without a user to drop to; backlog 1000.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        dump = []
        if record is not None:
            record.parent.chmod(0o777)  # written by the user smtp-sink drops to
            dump = ["-D", str(record)]
        sink = subprocess.Popen([binary, *user, *dump, f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        wait_for_port(port, sink)
        return sink, f"postfix smtp-sink ({binary})"
    if not python_sink:
        print("WARNING: Postfix's smtp-sink is not installed (apt-get install postfix); using the Python sink, "
              "which may be the bottleneck and make the ratio look better than it is", file=sys.stderr)
    options = ["--record", str(record)] if record is not None else []
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sink.py")), str(port), *options],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink.stdout.readline()  # "ready"
    return sink, "python aiosmtpd sink (bench/sink.py)"


MESSAGE_ID_LINE = re.compile(rb"^message-id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def recorded_message_ids(record: Path) -> Counter[str]:
    """How often each Message-ID reached a sink started with ``record``."""
    if not record.exists():
        return Counter()
    return Counter(match.decode() for match in MESSAGE_ID_LINE.findall(record.read_bytes()))


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sink ended at start: {process.stderr.read() if process.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the sink did not listen on port {port} within 10 s")


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


class Round(NamedTuple):
    enqueue_seconds: float
    deliver_seconds: float
    bare_seconds: float
    size: float
    deliver_cpu: float
    bare_cpu: float


def child_cpu_seconds(room: Mailroom) -> float:
    """CPU seconds used so far by the worker's storage process (0 when the worker has none)."""
    pid = room.worker_outbox.pid if room.worker_outbox is not None else None
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(args: argparse.Namespace, port: int, workdir: Path, number: int) -> Round:
    """Enqueue, drain with mailroom, then send the same messages with the bare client (odd rounds: the
    other way round, so neither always runs on a warmer machine): seconds and CPU seconds of each, and the
    message size. A fresh database per round."""
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
                     room.builder.with_from(message, "bench@example.org")[0]) for i, message in enumerate(raw)]
        size = sum(len(m[2]) for m in prepared) / len(prepared)

        def bare() -> tuple[float, float]:
            cpu = time.process_time()
            seconds = asyncio.run(bare_client(port, prepared, args.connections))
            return seconds, time.process_time() - cpu

        if number % 2:
            bare_seconds, bare_cpu = bare()
        worker = room.create_worker()
        if room.worker_outbox is not None:
            room.worker_outbox.start()  # a long-running worker starts it once; not part of draining
        cpu = time.process_time() + child_cpu_seconds(room)
        started = time.perf_counter()
        asyncio.run(room.run_worker(until_idle=True, worker=worker))
        deliver_seconds = time.perf_counter() - started
        deliver_cpu = time.process_time() + child_cpu_seconds(room) - cpu
        sent = room.store.counts_by_status().get(MailStatus.SENT, 0)  # a search's total stops at 1,000
        if sent != args.mails:
            raise SystemExit(f"only {sent} of {args.mails} mails were sent")
        if not number % 2:
            bare_seconds, bare_cpu = bare()
    return Round(enqueue_seconds, deliver_seconds, bare_seconds, size, deliver_cpu, bare_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=Settings().worker_batch_size)
    parser.add_argument("--rounds", type=int, default=5,
                        help="mailroom and the bare client take turns this often; medians are printed, so a "
                             "noisy neighbour on a shared machine hits both alike")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--python-sink", action="store_true", help="use bench/sink.py even if smtp-sink exists")
    args = parser.parse_args()
    if args.database_url and args.rounds != 1:
        parser.error("--database-url needs --rounds 1 (each round needs an empty database)")

    port = free_port()
    sink, sink_name = start_sink(port, python_sink=args.python_sink)
    print(f"sink: {sink_name}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    try:
        rounds = [one_round(args, port, workdir, number) for number in range(args.rounds)]
    finally:
        sink.terminate()
        sink.wait()

    n = args.mails
    enqueue, deliver, bare = (statistics.median(r[i] for r in rounds) for i in range(3))
    deliver_cpu, bare_cpu = (statistics.median(r[i] for r in rounds) * 1e6 / n for i in (4, 5))
    ratios = [r.bare_seconds / r.deliver_seconds for r in rounds]
    database = (args.database_url or "sqlite").split(":")[0]
    print(f"mails: {n} of {rounds[0][3]:.0f} bytes, {args.connections} connections, batch {args.batch_size}, "
          f"database {database}, median of {args.rounds} round(s)")
    print(f"enqueue (bulk):        {n / enqueue:10.0f} mails/s  ({enqueue:.2f} s)")
    print(f"mailroom delivery:     {n / deliver:10.0f} mails/s  ({deliver:.2f} s)")
    print(f"bare aiosmtplib:       {n / bare:10.0f} mails/s  ({bare:.2f} s)")
    print(f"ratio delivery / bare: {statistics.median(ratios):10.2f}   per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}   (target >= 0.6; reference: 1 mail/s)")
    print(f"CPU per mail:          mailroom {deliver_cpu:.0f} us, bare aiosmtplib {bare_cpu:.0f} us "
          f"(the worker with its storage process; ratio {deliver_cpu / bare_cpu:.2f})")
    print(f"sink: {sink_name}")


if __name__ == "__main__":
    main()
