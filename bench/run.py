"""The benchmark suite (issue #12, item 5): every figure beside its baseline measured in the same run.

Runs, in one process (worker processes, the peer and the search bench in their own):

- delivery: mailroom's worker against a bare aiosmtplib client at 4, 8 and 16 SMTP connections (delivery.py);
- enqueue: ``send_mail`` and ``send_mails`` against a bare INSERT + COMMIT per mail, SQLite and PostgreSQL
  (enqueue.py);
- latency: ``send_mail`` in this process → an idle ``mailroom worker`` process → the sink, p50/p99, against
  the same mail sent straight to the sink, SQLite and PostgreSQL (latency.py);
- worker RSS at 10,000 and 200,000 queued mails against a worker idling after one mail (rss.py);
- scale-out: 1 against 2 worker processes on PostgreSQL, duplicates and losses counted at the sink
  (scaleout.py);
- the peer: django-post_office's ``mail.send``, ``send_many`` and ``send_queued_mail`` against mailroom's
  steps, SQLite and PostgreSQL (peers.py; needs the bench extra);
- log search at 1,000,000 mails: bench/search.py's ``run(args)`` when that file exists.

The SMTP server is Postfix's ``smtp-sink`` when installed (``make bench`` installs postfix), else
bench/sink.py, and the table says which. PostgreSQL is 127.0.0.1:5432 (``--pg-admin``): each part makes its
own scratch database and drops it. Sizes are smaller than the standalone scripts' defaults so that the
whole run fits in 10 minutes on 2 cores; each section says its sizes. ``--smoke`` runs everything at tiny
sizes (the figures mean nothing; tests/acceptance/test_bench_smoke.py uses it so that the runner does not
rot). Writes ``latest.md`` and ``latest.json`` to ``--output`` (bench/results/); exits 1 if a part failed.

    python bench/run.py [--smoke] [--only SECTION ...] [--output DIR] [--python-sink] [--pg-admin URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # the sibling bench modules, also when imported from elsewhere

import delivery
import enqueue
import latency
import peers
import rss
import scaleout
from enqueue import postgres_database

BENCH = Path(__file__).parent
SEARCH_SCRIPT = BENCH / "search.py"
SECTIONS = ("delivery", "enqueue", "latency", "rss", "scaleout", "peers", "search")


@dataclass(frozen=True)
class Sizes:
    delivery_mails: int = 6000
    delivery_rounds: int = 5
    connections: tuple[int, ...] = (4, 8, 16)
    enqueue_mails: int = 2000
    enqueue_batch: int = 1000
    enqueue_rounds: int = 3
    enqueue_warmup: int = 200
    latency_mails: int = 30
    latency_max_gap_seconds: float = 0.5
    rss_depths: tuple[int, ...] = (10_000, 200_000)
    rss_seconds: float = 20.0
    rss_idle_seconds: float = 2.0
    scaleout_mails: int = 6000
    scaleout_rounds: int = 2
    peer_mails: int = 1000
    search_mails: int = 1_000_000
    search_runs: int = 5  # the slow kinds take seconds per query at 1,000,000: 20 runs would not fit 10 minutes
    search_timeout_seconds: float = 480.0


SMOKE = Sizes(delivery_mails=30, delivery_rounds=1, enqueue_mails=40, enqueue_batch=20, enqueue_rounds=1,
              enqueue_warmup=5, latency_mails=2, latency_max_gap_seconds=0.05, rss_depths=(200, 1000),
              rss_seconds=2.0, rss_idle_seconds=0.2, scaleout_mails=40, scaleout_rounds=1, peer_mails=20,
              search_mails=2000, search_runs=2, search_timeout_seconds=120.0)


@dataclass
class Row:
    case: str
    measured: str
    baseline: str
    ratio: float | None
    target: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    name: str
    title: str
    status: str = "ok"  # ok, failed, not run
    note: str = ""
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Context:
    sizes: Sizes
    port: int
    sink_name: str
    pg_admin: str
    python_sink: bool


def rate(per_second: float, cpu_us: float | None = None) -> str:
    return f"{per_second:,.0f} mails/s" + (f", {cpu_us:,.0f} µs CPU/mail" if cpu_us is not None else "")


def pg_url(admin_url: str) -> str:
    return admin_url.replace("postgresql://", "postgresql+psycopg://", 1)


# --- the sections ---------------------------------------------------------------------------------------


def run_delivery(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    section.note = (f"{s.delivery_mails:,} mails of ~2 KB per round (the standalone bench/delivery.py: 5,000), "
                    f"median of {s.delivery_rounds} round(s), mailroom and the bare client taking turns; "
                    "SQLite; one worker in this process, its storage in a child process (the default); CPU per "
                    "mail counts both")
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-delivery-") as folder:
        for connections in s.connections:
            args = argparse.Namespace(mails=s.delivery_mails, connections=connections, batch_size=300,
                                      database_url=None)
            rounds = [delivery.one_round(args, ctx.port, Path(folder), connections * 100 + number)
                      for number in range(s.delivery_rounds)]
            ours = statistics.median(s.delivery_mails / r.deliver_seconds for r in rounds)
            bare = statistics.median(s.delivery_mails / r.bare_seconds for r in rounds)
            ours_cpu = statistics.median(r.deliver_cpu for r in rounds) * 1e6 / s.delivery_mails
            bare_cpu = statistics.median(r.bare_cpu for r in rounds) * 1e6 / s.delivery_mails
            ratio = statistics.median(r.bare_seconds / r.deliver_seconds for r in rounds)
            section.rows.append(Row(
                f"delivery, {connections} connections", rate(ours, ours_cpu),
                f"bare aiosmtplib, same connections: {rate(bare, bare_cpu)}", ratio, "≥ 0.6 of the bare client",
                {"connections": connections, "mails_per_second": ours, "cpu_us_per_mail": ours_cpu,
                 "bare_mails_per_second": bare, "bare_cpu_us_per_mail": bare_cpu}))


def run_enqueue(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    section.note = (f"{s.enqueue_mails:,} mails per case (distinct recipients and subjects, one 1.7 KB body), "
                    f"bulk in batches of {s.enqueue_batch:,}, median of {s.enqueue_rounds} round(s) after "
                    f"{s.enqueue_warmup} warm-up mails; CPU per mail is this process's; ratio: mails/s ÷ the "
                    "bare INSERT+COMMIT's")
    args = argparse.Namespace(mails=s.enqueue_mails, batch=s.enqueue_batch, rounds=s.enqueue_rounds,
                              distinct_bodies=False, warmup=s.enqueue_warmup)
    targets = {("SQLite", "single send_mail"): "≥ 2,500/s, ≤ 300 µs",
               ("PostgreSQL", "single send_mail"): "≥ 1,500/s",
               ("SQLite", "bulk send_mails"): "≥ 20,000/s, ≤ 50 µs",
               ("PostgreSQL", "bulk send_mails"): "≥ 20,000/s, ≤ 50 µs"}

    def rows(label: str, medians: dict[str, enqueue.Measure]) -> None:
        base = medians[enqueue.CASES[0]]
        for case in enqueue.CASES[1:]:
            m = medians[case]
            section.rows.append(Row(
                f"{case}, {label}", rate(m.per_second, m.cpu_us),
                f"bare INSERT+COMMIT per mail: {rate(base.per_second, base.cpu_us)}", m.per_second / base.per_second,
                targets[(label, case)],
                {"database": label, "case": case, "mails_per_second": m.per_second, "cpu_us_per_mail": m.cpu_us,
                 "baseline_mails_per_second": base.per_second, "baseline_cpu_us_per_mail": base.cpu_us}))

    with tempfile.TemporaryDirectory(prefix="mailroom-bench-enqueue-") as folder:
        rows("SQLite", enqueue.measure_backend(
            f"sqlite:///{folder}/mailroom.db",
            lambda: enqueue.baseline_sqlite(Path(folder) / "baseline.db", s.enqueue_mails), args))
    with postgres_database(ctx.pg_admin) as url:
        if url is None:
            raise RuntimeError(f"PostgreSQL is not reachable at {ctx.pg_admin}")
        rows("PostgreSQL", enqueue.measure_backend(
            pg_url(url), lambda: enqueue.baseline_postgres(url, s.enqueue_mails), args))


def run_latency(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    section.note = (f"{s.latency_mails} mails one at a time, each 0.1 to {0.1 + s.latency_max_gap_seconds:.1f} s "
                    "after the previous delivery, from this process to an idle `mailroom worker` process "
                    "(default settings: 2 s fallback poll) and an aiosmtpd sink in this process that notes the "
                    "arrival (smtp-sink cannot time a mail); the baseline is the same mail sent straight to that "
                    "sink with aiosmtplib; ratio: p99 ÷ the baseline's p99")
    targets = {"SQLite": "p99 < 100 ms", "PostgreSQL": "p50 ≈ 12 ms, p99 ≈ 17 ms (main today): keep"}

    def measure(label: str, url: str) -> None:
        result = latency.measure_latency(url, s.latency_mails, max_gap_seconds=s.latency_max_gap_seconds)
        p50, p99 = result.percentile(50), result.percentile(99)
        d50, d99 = result.percentile(50, result.direct_ms), result.percentile(99, result.direct_ms)
        section.rows.append(Row(
            f"send_mail → sink, {label}", f"p50 {p50:,.1f} ms, p99 {p99:,.1f} ms",
            f"direct aiosmtplib send: p50 {d50:,.1f} ms, p99 {d99:,.1f} ms", p99 / d99, targets[label],
            {"database": label, "p50_ms": p50, "p99_ms": p99, "max_ms": max(result.latencies_ms),
             "baseline_p50_ms": d50, "baseline_p99_ms": d99, "mails": len(result.latencies_ms)}))

    with tempfile.TemporaryDirectory(prefix="mailroom-bench-latency-") as folder:
        measure("SQLite", f"sqlite:///{folder}/latency.db")
    with postgres_database(ctx.pg_admin) as url:
        if url is None:
            raise RuntimeError(f"PostgreSQL is not reachable at {ctx.pg_admin}")
        measure("PostgreSQL", pg_url(url))


def run_rss(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    section.note = (f"SQLite; peak RSS (VmHWM) of one `mailroom worker` process while it drains the queue, "
                    f"stopped {s.rss_seconds:.0f} s after its first delivery when the queue is deeper than "
                    "that; "
                    f"the first {rss.COPY_BATCH:,} mails are queued with send_mails, the rest are copies of their "
                    "rows made in the database; the baseline is a worker that sent one mail and idled "
                    f"{s.rss_idle_seconds:.0f} s; ratio: peak ÷ the baseline's")
    baseline, *results = rss.run(list(s.rss_depths), seconds=s.rss_seconds, idle_seconds=s.rss_idle_seconds,
                                 port=ctx.port)
    for r in results:
        drained = "all sent" if r.drained >= r.queued else f"{r.drained:,} sent"
        section.rows.append(Row(
            f"worker RSS, {r.queued:,} queued ({drained} in {r.seconds:.0f} s)", f"{r.peak_mib:,.1f} MiB",
            f"worker after one mail, idle: {baseline.peak_mib:,.1f} MiB", r.peak_mib / baseline.peak_mib,
            "flat (88 MiB at 10,000, 95 MiB at 100,000 before)",
            {"queued": r.queued, "peak_mib": r.peak_mib, "last_mib": r.last_mib, "drained": r.drained,
             "seconds": r.seconds, "baseline_peak_mib": baseline.peak_mib}))


def run_scaleout(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    results, sink_name = scaleout.run(ctx.pg_admin, mails=s.scaleout_mails, rounds=s.scaleout_rounds,
                                      python_sink=ctx.python_sink)
    section.note = (f"PostgreSQL; {s.scaleout_mails:,} mails per run, median of {s.scaleout_rounds} round(s), "
                    "1 and 2 workers taking turns; `mailroom worker` processes with 4 SMTP connections each; "
                    "mails/s from the first sent_at to the last (start-up not counted); duplicates and losses "
                    f"counted from the Message-IDs the sink recorded ({sink_name}, recording every message); "
                    f"{os.cpu_count()} cores")
    by_workers = {n: [r for r in results if r.workers == n] for n in (1, 2)}
    one = statistics.median(r.per_second for r in by_workers[1])
    two = statistics.median(r.per_second for r in by_workers[2])

    def counted(runs: list[scaleout.Drain]) -> str:
        busy = statistics.median(r.busy for r in runs)
        return (f"{sum(r.duplicates for r in runs)} duplicates, {sum(r.lost for r in runs)} lost; "
                f"machine CPU {busy:.0%} busy while draining")

    section.rows.append(Row(
        "2 worker processes", f"{two:,.0f} mails/s; {counted(by_workers[2])}",
        f"1 worker process: {one:,.0f} mails/s; {counted(by_workers[1])}", two / one,
        "≥ 1.7 (2 cores); 0 duplicates, 0 lost",
        {"one_worker_mails_per_second": one, "two_workers_mails_per_second": two,
         "runs": [r._asdict() for r in results]}))


def run_peers(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    problem = peers.django_missing()
    if problem is not None:
        section.status, section.note = "not run", problem
        return
    connections = 4
    section.note = (f"{s.peer_mails:,} mails per step, each side in its own process on its own fresh database "
                    "after 50 warm-up mails: one by one (send_mail / mail.send), in batches of 1,000 "
                    "(send_mails / mail.send_many), then all delivered (one in-process worker with "
                    f"{connections} SMTP connections / send_queued_mail_until_done with {connections} threads); "
                    "post_office on its defaults otherwise, SQLite in WAL mode on both sides; ratio: mailroom's "
                    "mails/s ÷ post_office's (CPU per mail beside each)")
    steps = {"single": "single (send_mail / mail.send)", "bulk": "bulk (send_mails / mail.send_many)",
             "delivery": "delivery (worker / send_queued_mail)"}
    for comparison in peers.run(mails=s.peer_mails, connections=connections, port=ctx.port, pg_admin=ctx.pg_admin):
        for step, label in steps.items():
            ours, theirs = comparison.mailroom[step], comparison.post_office[step]
            section.rows.append(Row(
                f"{label}, {comparison.database}", rate(ours.per_second, ours.cpu_us),
                f"django-post_office: {rate(theirs.per_second, theirs.cpu_us)}",
                ours.per_second / theirs.per_second, "mailroom the faster",
                {"database": comparison.database, "step": step, "mails_per_second": ours.per_second,
                 "cpu_us_per_mail": ours.cpu_us, "post_office_mails_per_second": theirs.per_second,
                 "post_office_cpu_us_per_mail": theirs.cpu_us}))
        ours_cpu = comparison.mailroom["single"].cpu_us + comparison.mailroom["delivery"].cpu_us
        theirs_cpu = comparison.post_office["single"].cpu_us + comparison.post_office["delivery"].cpu_us
        section.rows.append(Row(
            f"end to end CPU per mail (single + delivery), {comparison.database}", f"{ours_cpu:,.0f} µs",
            f"django-post_office: {theirs_cpu:,.0f} µs", ours_cpu / theirs_cpu, "below post_office's",
            {"database": comparison.database, "step": "end_to_end_cpu", "cpu_us_per_mail": ours_cpu,
             "post_office_cpu_us_per_mail": theirs_cpu}))


SEARCH_SHIM = """
import argparse, json, runpy, sys
module = runpy.run_path(sys.argv[1])
args = argparse.Namespace(mails=int(sys.argv[2]), runs=int(sys.argv[3]), no_sqlite=False, no_postgres=False,
                          pg_admin=sys.argv[4])
print("BENCH-SEARCH-JSON " + json.dumps(module["run"](args)), flush=True)
"""


def run_search(ctx: Context, section: Section) -> None:
    s = ctx.sizes
    if not SEARCH_SCRIPT.exists():
        section.status, section.note = "not run", "search: not run (bench/search.py does not exist on this branch)"
        return
    section.note = (f"bench/search.py's run(): {s.search_mails:,} mails filled directly, {s.search_runs} runs per "
                    "kind with varying values, a page of 50 and the bounded total; ms; the target is the "
                    "baseline (issue #12: p95 < 50 ms for every kind, both databases); ratio: the worse p95 ÷ 50 ms")
    done = subprocess.run([sys.executable, "-c", SEARCH_SHIM, str(SEARCH_SCRIPT), str(s.search_mails),
                           str(s.search_runs), ctx.pg_admin], capture_output=True, text=True,
                          timeout=s.search_timeout_seconds, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-SEARCH-JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench/search.py failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    table: dict[str, dict[str, list[float]]] = json.loads(lines[-1].removeprefix("BENCH-SEARCH-JSON "))
    fills = [line.strip() for line in done.stdout.splitlines()
             if "filled in" in line or line.startswith(("generated", "indexed"))]
    section.note += "; " + "; ".join(fills)
    databases = list(table)
    for kind in next(iter(table.values()), {}):
        cells = {db: table[db][kind] for db in databases if kind in table[db]}
        measured = "; ".join(f"{db} p50 {p50:,.1f}, p95 {p95:,.1f}" for db, (p50, p95) in cells.items())
        worst = max(p95 for _, p95 in cells.values())
        section.rows.append(Row(kind, measured, "target p95 < 50 ms", worst / 50, "p95 < 50 ms",
                                {"kind": kind, **{f"{db}_p50_ms": v[0] for db, v in cells.items()},
                                 **{f"{db}_p95_ms": v[1] for db, v in cells.items()}}))


RUNNERS: dict[str, tuple[str, Callable[[Context, Section], None]]] = {
    "delivery": ("Delivery: mailroom's worker against a bare aiosmtplib client", run_delivery),
    "enqueue": ("Enqueue: send_mail and send_mails against a bare INSERT + COMMIT", run_enqueue),
    "latency": ("Latency: send_mail → idle worker process → sink", run_latency),
    "rss": ("Worker memory at depth", run_rss),
    "scaleout": ("Scale-out: 1 and 2 worker processes on PostgreSQL", run_scaleout),
    "peers": ("The peer: django-post_office", run_peers),
    "search": ("Log search at 1,000,000 mails", run_search),
}


# --- the report -----------------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=BENCH).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True,
                               check=True, cwd=BENCH).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (src changed)" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(meta: dict[str, Any], sections: list[Section]) -> str:
    lines = [
        "# mailroom benchmark: latest run",
        "",
        f"`{meta['command']}` — {meta['finished']} UTC, commit {meta['commit']}, {meta['seconds']:.0f} s"
        + (" — **smoke run: tiny sizes, the figures mean nothing**" if meta["smoke"] else ""),
        "",
        f"Machine: {meta['cores']} cores ({meta['cpu']}), load average {meta['load_before']} before and "
        f"{meta['load_after']} after (a shared machine: compare the ratios, measured side by side, more than "
        f"the absolute figures). SMTP sink: **{meta['sink']}**. PostgreSQL: {meta['postgres']}.",
        "",
        "Every row's baseline is measured in the same run; \"ratio\" is mailroom ÷ baseline as each section "
        "says (for mails/s above 1 is better, for time and memory below 1 is better).",
    ]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        if section.status != "ok":
            lines += [f"**{section.status}**: {section.note}"]
            continue
        lines += [f"{section.note}. ({section.seconds:.0f} s)", "",
                  "| case | mailroom | baseline, same run | ratio | target |", "|---|---|---|---:|---|"]
        for row in section.rows:
            ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
            lines.append(f"| {row.case} | {row.measured} | {row.baseline} | {ratio} | {row.target} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every part runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--output", type=Path, default=BENCH / "results")
    parser.add_argument("--python-sink", action="store_true", help="bench/sink.py even if smtp-sink is installed")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    started, load_before = time.perf_counter(), os.getloadavg()
    port = delivery.free_port()
    sink, sink_name = delivery.start_sink(port, python_sink=args.python_sink)
    ctx = Context(SMOKE if args.smoke else Sizes(), port, sink_name, args.pg_admin, args.python_sink)
    sections = []
    try:
        for name in args.only:
            title, runner = RUNNERS[name]
            section = Section(name, title)
            print(f"== {name}", flush=True)
            section_started = time.perf_counter()
            try:
                runner(ctx, section)
            except Exception as exc:
                traceback.print_exc()
                section.status, section.note = "failed", f"{type(exc).__name__}: {exc}".replace("\n", " ")[:600]
            section.seconds = time.perf_counter() - section_started
            for row in section.rows:
                print(f"   {row.case}: {row.measured} | {row.baseline} | "
                      f"{'' if row.ratio is None else f'{row.ratio:.2f}'}", flush=True)
            if section.status != "ok":
                print(f"   {section.status}: {section.note}", flush=True)
            sections.append(section)
    finally:
        sink.terminate()
        sink.wait()

    meta = {
        "command": " ".join(["python bench/run.py", *sys.argv[1:]]),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "seconds": time.perf_counter() - started,
        "commit": git_revision(), "smoke": args.smoke, "sink": sink_name, "postgres": args.pg_admin.split("@")[-1],
        "cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
        "load_before": " ".join(f"{v:.1f}" for v in load_before),
        "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "sizes": asdict(ctx.sizes),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.md").write_text(markdown(meta, sections))
    (args.output / "latest.json").write_text(json.dumps(
        {"meta": meta, "sections": {s.name: {"title": s.title, "status": s.status, "note": s.note,
                                             "seconds": s.seconds, "rows": [asdict(r) for r in s.rows]}
                                    for s in sections}}, indent=2, default=str) + "\n")
    print(f"wrote {args.output / 'latest.md'} and latest.json in {meta['seconds']:.0f} s")
    sys.exit(1 if any(s.status == "failed" for s in sections) else 0)


if __name__ == "__main__":
    main()
