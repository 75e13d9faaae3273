"""The peer: django-post_office's enqueue and delivery, timed as bench/peers.py times mailroom's.

Run in its own process (Django is configured once per process): ``bench/postoffice_settings.py`` is set up
from BENCH_PO_DATABASE and BENCH_PO_SMTP_PORT, the tables are migrated, 50 mails are queued and delivered to
warm up, then ``--mails`` mails go through ``mail.send`` one by one (each built in the loop, as an
application does), ``--mails`` through ``mail.send_many`` in batches of ``--batch`` (prepared before the
clock starts), and ``send_queued_mail_until_done`` (what ``manage.py send_queued_mail`` runs: one process,
THREADS_PER_PROCESS threads each with its SMTP connection) delivers them all. Printed: one JSON line,
``{"single": [mails/s, CPU us per mail], "bulk": [...], "delivery": [...], "sent": n}``.

    BENCH_PO_DATABASE=/tmp/po.db BENCH_PO_SMTP_PORT=2525 python bench/postoffice.py [--mails 1000]

Needs the bench extra: pip install -c constraints.txt -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30)[:1700]  # as bench/delivery.py's


def measure(count: int, run: Callable[[], None]) -> list[float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return [count / wall, cpu / count * 1e6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "postoffice_settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from post_office import mail
    from post_office.models import STATUS, Email

    def kwargs(i: int) -> dict[str, object]:
        return {"recipients": [f"user{i}@example.org"], "sender": "bench@example.org",
                "subject": f"Benchmark mail {i}", "message": BODY}

    lockfile = str(Path(tempfile.mkdtemp(prefix="post-office-lock-")) / "send_queued")

    def deliver() -> None:
        mail.send_queued_mail_until_done(lockfile=lockfile, processes=1)

    for i in range(50):  # warm-up: imports, the first statements, a first delivery
        mail.send(**kwargs(1_000_000 + i))  # type: ignore[arg-type]
    deliver()

    n = args.mails

    def single() -> None:
        for i in range(n):
            mail.send(**kwargs(i))  # type: ignore[arg-type]

    prepared = [kwargs(n + i) for i in range(n)]

    def bulk() -> None:
        for start in range(0, n, args.batch):
            mail.send_many(prepared[start:start + args.batch])

    result = {"single": measure(n, single), "bulk": measure(n, bulk), "delivery": measure(2 * n, deliver)}
    result["sent"] = Email.objects.filter(status=STATUS.sent).count() - 50
    print(json.dumps(result))


if __name__ == "__main__":
    main()
