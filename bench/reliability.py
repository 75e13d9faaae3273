"""The reliability report: run the fault and chaos suites, write docs/reliability.md.

    python bench/reliability.py [--quick] [--output docs/reliability.md]

Runs, with pytest, the chaos tests (worker processes killed with SIGKILL, the database restarted and cut
for 15 s, a SQLite disk that fills up, a worker started during an outage, batches that outlast their
lease), the rate limit held by three workers across a restart (600 mails at 100 per minute: about six
minutes; ``--quick`` runs 90 mails at 10 per second instead), the scripted SMTP faults (421 at connect,
4xx/5xx at RCPT, 554 after DATA, 535, a drop mid-DATA, a stall after DATA, connection limits), the stop
within its grace, and the hostile-input suites. The chaos tests record their figures through
tests/support/reliability.py; the rest count as passed or failed tests. Exits 1 when a test failed or a
mail was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUITES = {
    "Chaos: kills, outages, a full disk, slow servers": ["tests/acceptance/test_chaos.py"],
    "Rate limits under three workers": ["tests/acceptance/test_rate_limit_processes.py",
                                        "tests/integration/test_rate_limit_contract.py"],
    "Scripted SMTP faults": ["tests/integration/test_delivery_faults.py", "tests/integration/test_delivery.py"],
    "SIGTERM and SIGKILL of worker processes": ["tests/acceptance/test_graceful_stop.py",
                                                "tests/acceptance/test_worker_processes.py",
                                                "tests/acceptance/test_worker_liveness.py"],
    "Database errors in the worker's logic (in-memory fakes)": ["tests/unit/test_worker.py",
                                                                "tests/integration/test_storage_errors.py"],
    "Hostile inputs": ["tests/web/test_input_limits.py", "tests/acceptance/test_cli_input.py",
                       "tests/acceptance/test_cli_escapes.py", "tests/unit/test_header_input.py",
                       "tests/web/test_template_limits.py", "tests/integration/test_render_isolation.py",
                       "tests/web/test_sessions_and_throttling.py"],
}


def run_suites(quick: bool, workdir: Path) -> tuple[Path, Path, float]:
    figures, junit = workdir / "figures.jsonl", workdir / "junit.xml"
    env = dict(os.environ, MAILROOM_RELIABILITY_OUT=str(figures), CI=os.environ.get("CI", "true"))
    if not quick:
        env["MAILROOM_RELIABILITY_FULL"] = "1"
    files = [path for paths in SUITES.values() for path in paths]
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *files],
                   cwd=ROOT, env=env, check=False)
    return figures, junit, time.monotonic() - started


def test_results(junit: Path) -> dict[str, list[tuple[str, str]]]:
    """Per test file: (test name, "passed" / "failed" / "skipped")."""
    results: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        path = case.get("classname", "").replace(".", "/") + ".py"
        results[path].append((case.get("name", ""), outcome))
    return results


def render(figures: list[dict[str, object]], results: dict[str, list[tuple[str, str]]], seconds: float,
           quick: bool) -> str:
    lines = ["# Reliability report", "",
             f"Written by `make reliability` (`python bench/reliability.py{' --quick' if quick else ''}`) in "
             f"{seconds / 60:.1f} min on {time.strftime('%Y-%m-%d')}. Every figure below comes from a test that ran "
             "real worker processes, a real PostgreSQL or SQLite, and an SMTP server in its own process.", "",
             "## Faults injected and what came out", "",
             "| scenario | faults injected | mails | sent | lost | duplicates | bound on duplicates | kills | "
             "max attempts |", "|---|---|---|---|---|---|---|---|---|"]
    for f in figures:
        bound = "-" if f.get("duplicate_bound") is None else f["duplicate_bound"]
        lines.append(f"| {f['scenario']} | {f['faults']} | {f['mails']} | {f['sent']} | {f['lost']} | "
                     f"{f['duplicates']} | {bound} | {f['kills']} | {f['max_attempts']} |")
    lines += ["", "The bound on duplicates is the mails that can be in flight at the kills: per SMTP connection the "
              "mail being sent and the results not yet written (`UNWRITTEN_PER_CONNECTION`). Without kills it is 0.",
              "", "## Rate limits", ""]
    limited = [f for f in figures if "rate_limit" in f]
    for f in limited:
        lines.append(f"- {f['scenario']}: busiest window {f['busiest_window']} mails against a limit of "
                     f"{f['rate_limit']}; overshoot {f['overshoot']} (allowed: at most one in-flight mail per "
                     f"connection, {f['in_flight_allowance']}).")
    if not limited:
        lines.append("- not run")
    lines += ["", "## Suites", "", "| suite | tests | passed | failed | skipped |", "|---|---|---|---|---|"]
    for suite, paths in SUITES.items():
        cases = [c for p in paths for c in results.get(p, [])]
        counts = {k: sum(1 for _, o in cases if o == k) for k in ("passed", "failed", "skipped")}
        lines.append(f"| {suite} | {len(cases)} | {counts['passed']} | {counts['failed']} | {counts['skipped']} |")
    lines += ["", "## Hostile inputs tried and refused", ""]
    for path in SUITES["Hostile inputs"]:
        for name, outcome in results.get(path, []):
            lines.append(f"- {'✔' if outcome == 'passed' else '✘ ' + outcome} `{path}` {name}")
    failed = [f"{p}::{n}" for p, cases in results.items() for n, o in cases if o == "failed"]
    lines += ["", "## Failures", ""] + ([f"- {name}" for name in failed] or ["None."])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the rate-limit run at 90 mails instead of 600")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailroom-reliability-") as tmp:
        figures_path, junit, seconds = run_suites(args.quick, Path(tmp))
        figures = [json.loads(line) for line in figures_path.read_text().splitlines()] if figures_path.exists() else []
        results = test_results(junit)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(figures, results, seconds, args.quick), encoding="utf-8")
    print(f"wrote {args.output}")
    failed = any(o == "failed" for cases in results.values() for _, o in cases)
    lost = sum(int(f["lost"]) for f in figures)
    sys.exit(1 if failed or lost else 0)


if __name__ == "__main__":
    main()
