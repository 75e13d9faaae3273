"""The worker's liveness file and `mailroom worker --check-alive`, with real worker processes: alive while it
runs, dead when it hangs (SIGSTOP) or has stopped, and alive while it waits for a database that is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailroom.cli.errors import FAILURE, INVALID, OK
from tests.support.pg_proxy import PgProxy


def _env(database_url: str, secret_key: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=database_url, MAILROOM_SECRET_KEY=secret_key, MAILROOM_LOG_LEVEL="WARNING",
               **{f"MAILROOM_{k.upper()}": v for k, v in extra.items()})
    return env


def _check(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailroom.cli", "worker", "--check-alive", *options], env=env,
                          capture_output=True, text=True, timeout=60)


def _eventually(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.1)


@pytest.fixture
def start_worker() -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "mailroom.cli", "worker"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(timeout=30)


def test_alive_while_running_dead_when_hung_or_stopped(
        sqlite_url: str, secret_key: str, tmp_path: Path,
        start_worker: Callable[[dict[str, str]], subprocess.Popen[bytes]]) -> None:
    liveness = tmp_path / "worker.alive"
    env = _env(sqlite_url, secret_key, worker_liveness_file=str(liveness), worker_liveness_interval_seconds="0.2")
    worker = start_worker(env)
    _eventually(liveness.exists, "the worker creates its liveness file")
    alive = _check(env)
    assert alive.returncode == OK, alive.stderr
    assert "worker alive" in alive.stdout

    worker.send_signal(signal.SIGSTOP)  # a hung worker: its loop no longer turns
    try:
        _eventually(lambda: _check(env, "--max-age", "1").returncode == FAILURE, "a hung worker is reported dead")
        assert "stuck or gone" in _check(env, "--max-age", "1").stderr
    finally:
        worker.send_signal(signal.SIGCONT)
    _eventually(lambda: _check(env, "--max-age", "1").returncode == OK, "alive again once it runs on")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert not liveness.exists(), "a stopped worker removes its file"
    stopped = _check(env)
    assert stopped.returncode == FAILURE
    assert "no worker is running" in stopped.stderr


def test_check_alive_needs_the_setting_and_opens_no_database(tmp_path: Path, secret_key: str) -> None:
    database = tmp_path / "never.db"
    unset = _check(_env(f"sqlite:///{database}", secret_key))
    assert unset.returncode == INVALID
    assert "MAILROOM_WORKER_LIVENESS_FILE" in unset.stderr
    missing = _check(_env(f"sqlite:///{database}", secret_key, worker_liveness_file=str(tmp_path / "none")))
    assert missing.returncode == FAILURE
    assert not database.exists(), "a health check neither creates nor migrates a database"


def test_an_unwritable_liveness_file_stops_the_worker_with_the_setting_named(
        sqlite_url: str, secret_key: str, tmp_path: Path) -> None:
    env = _env(sqlite_url, secret_key, worker_liveness_file=str(tmp_path / "no-such-folder" / "worker.alive"))
    result = subprocess.run([sys.executable, "-m", "mailroom.cli", "worker"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == INVALID
    assert "MAILROOM_WORKER_LIVENESS_FILE" in result.stderr and "no-such-folder" in result.stderr


@pytest.mark.postgres
def test_a_worker_waiting_for_its_database_is_alive(
        postgres_url: str, secret_key: str, pg_proxy: PgProxy, tmp_path: Path,
        start_worker: Callable[[dict[str, str]], subprocess.Popen[bytes]]) -> None:
    liveness = tmp_path / "worker.alive"
    pg_proxy.outage(600)  # down before the worker starts
    env = _env(pg_proxy.url(postgres_url), secret_key, worker_liveness_file=str(liveness))
    worker = start_worker(env)
    _eventually(liveness.exists, "the waiting worker creates its liveness file")
    assert _check(env).returncode == OK, "restarting it would not bring the database back"
    assert worker.poll() is None, "still waiting for the database"
