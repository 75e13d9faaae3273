"""Rate limits held by three worker processes together, on PostgreSQL, across a restart of all of them.

The sink (tests/support/fault_smtp.py, its own process) stamps each mail it takes; in no window of the
limit's length may it take more than the limit, plus at most one mail per connection that was already on
its way when its count was taken. ``MAILROOM_RELIABILITY_FULL=1`` (``make reliability``) runs the issue's
figures: 600 mails at 100 per minute, about six minutes.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from mailroom import SYSTEM, Mailroom
from mailroom.domain.rate_limits import RateLimit, Window
from tests.acceptance.test_chaos import Workers, _env, _outcome, _queue, _wait_until_final
from tests.support.fault_smtp import FaultSmtpProcess

pytestmark = pytest.mark.slow

FULL = os.environ.get("MAILROOM_RELIABILITY_FULL") == "1"


def most_within(times: list[float], window: float) -> int:
    """The most stamps in any half-open window [t, t + window)."""
    ordered, most, first = sorted(times), 0, 0
    for last, stamp in enumerate(ordered):
        while stamp - ordered[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.postgres
def test_three_workers_together_keep_a_servers_rate_limit_across_a_restart(
        postgres_url: str, secret_key: str, tmp_path: Path) -> None:
    total, limit = (600, RateLimit(100, Window.MINUTE)) if FULL else (90, RateLimit(10, Window.SECOND))
    connections = 2
    logs = tmp_path / "workers"
    logs.mkdir()
    with FaultSmtpProcess("--delay-ms", "20") as sink, \
            Mailroom(database_url=postgres_url, secret_key=secret_key) as room:
        _queue(room, sink.port, total)
        room.rate_limits.set_for_server(SYSTEM, "fault", [limit])
        workers = Workers(_env(postgres_url, secret_key, smtp_connections_per_server=str(connections),
                               poll_interval_seconds="0.5", lease_seconds="30"), logs)
        expected = total / limit.count * limit.window.seconds
        deadline = time.monotonic() + expected * 2 + 60
        workers.start(3)
        try:
            time.sleep(expected / 2)
            # A restart of all of them mid-run (one still starting up on a busy machine ends by the signal).
            assert set(workers.stop()) <= {0, -15}, workers.last_errors()
            workers.start(3)
            left = _wait_until_final(room, workers, deadline)
        finally:
            workers.stop()
        outcome = _outcome(room, sink, workers)
        times = sink.stats()["accept_times"]
    busiest = most_within(times, limit.window.seconds)
    report = (f"{outcome.report()}; unfinished {left}; busiest {limit.window.label}: {busiest} "
              f"(limit {limit.count}); took {max(times) - min(times):.1f} s\n{workers.last_errors()}")
    print(report)
    outcome.record(f"3 workers on PostgreSQL, {total} mails, limit {limit}", "a restart of every worker mid-run",
                   duplicate_bound=0, rate_limit=str(limit), busiest_window=busiest,
                   overshoot=max(0, busiest - limit.count), in_flight_allowance=3 * connections)
    assert outcome.statuses == Counter({"sent": total}), report
    assert not outcome.lost and outcome.duplicates == 0, report
    assert busiest <= limit.count, report
    assert outcome.max_attempts == 1, report  # waiting for the limit spends no attempt
