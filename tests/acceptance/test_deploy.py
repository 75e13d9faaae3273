"""deploy/: the systemd units name real commands and pass `systemd-analyze verify`; the container entry point
migrates, then becomes the web app or the worker (which then stop cleanly on SIGTERM), and its health check
tells a healthy process from a stopped one."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailroom.adapters.storage.database import Database

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
ENTRYPOINT = DEPLOY / "entrypoint.sh"
INSTALLED = "/opt/mailroom/bin/mailroom"
MAILROOM = Path(sys.executable).parent / "mailroom"


def _directives(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` → values, in order (systemd allows a key more than once, so configparser will not do)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / "mailroom.env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_mailroom_command_in_the_units_exists() -> None:
    calls = [call for unit in UNITS for call in re.findall(rf"{re.escape(INSTALLED)}([^'\n|]*)",
                                                           unit.read_text(encoding="utf-8"))]
    assert len(calls) >= 5
    for call in calls:
        words = shlex.split(call)
        command = [w for w in words if not w.startswith("-")]
        options = [w for w in words if w.startswith("-")]
        shown = subprocess.run([str(MAILROOM), *command, "--help"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, f"mailroom {call}: {shown.stderr}"
        for option in options:
            assert option in shown.stdout, f"mailroom {' '.join(command)} has no option {option}"


def test_the_units_supervise_as_the_readme_says() -> None:
    web = _directives(DEPLOY / "systemd" / "mailroom-web.service")
    worker = _directives(DEPLOY / "systemd" / "mailroom-worker@.service")
    for unit in (web, worker):
        assert unit["Service.Restart"] == ["on-failure"]
        assert unit["Service.EnvironmentFile"] == ["/etc/mailroom/mailroom.env"]
        assert unit["Service.ExecStartPre"] == [f"{INSTALLED} migrate"]
    assert web["Service.ExecStart"] == [f"{INSTALLED} serve"]
    assert worker["Service.ExecStart"] == [f"{INSTALLED} worker"]
    grace = float(_env_example()["MAILROOM_SHUTDOWN_GRACE_SECONDS"])
    stop_timeout = float(worker["Service.TimeoutStopSec"][0])
    assert grace + 5 <= stop_timeout <= grace + 30, "SIGKILL only well after the worker's grace period"
    liveness = worker["Service.Environment"][0].removeprefix("MAILROOM_WORKER_LIVENESS_FILE=")
    check = _directives(DEPLOY / "systemd" / "mailroom-worker-check@.service")
    assert check["Service.Environment"] == [f"MAILROOM_WORKER_LIVENESS_FILE={liveness}"], "the check reads its file"


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (the directives are still checked above)")
    env_file = tmp_path / "mailroom.env"
    shutil.copy(DEPLOY / "mailroom.env.example", env_file)
    for unit in UNITS:  # the paths of an installation, made real on this machine
        text = unit.read_text(encoding="utf-8").replace(INSTALLED, str(MAILROOM))
        (tmp_path / unit.name).write_text(text.replace("/etc/mailroom/mailroom.env", str(env_file)))
    instances = [name.replace("@.", "@1.") for name in sorted(p.name for p in UNITS)]
    result = subprocess.run(["systemd-analyze", "verify", *[f"./{name}" for name in instances]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    # verify reports an unknown key or a bad value on stderr and still exits 0: both must be silent.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# --- the container entry point -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _eventually(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.1)


@pytest.fixture
def container_env(tmp_path: Path, secret_key: str) -> dict[str, str]:
    """What a container has: settings in MAILROOM_* variables and mailroom on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(PATH=f"{MAILROOM.parent}{os.pathsep}{env.get('PATH', '')}",
               MAILROOM_DATABASE_URL=f"sqlite:///{tmp_path / 'mailroom.db'}", MAILROOM_SECRET_KEY=secret_key,
               MAILROOM_LOG_LEVEL="WARNING", MAILROOM_WEB_PORT=str(_free_port()),
               MAILROOM_WORKER_LIVENESS_FILE=str(tmp_path / "worker.alive"),
               MAILROOM_WORKER_LIVENESS_INTERVAL_SECONDS="0.5")
    return env


@pytest.fixture
def entrypoint() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sh", str(ENTRYPOINT), *args], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=120)


def _at_head(env: dict[str, str]) -> bool:
    database = Database(env["MAILROOM_DATABASE_URL"])
    try:
        return database.schema_revision().at_head
    finally:
        database.dispose()


def test_worker_migrates_then_runs_as_the_container_process_and_stops_on_sigterm(
        container_env: dict[str, str], entrypoint: Callable[..., subprocess.Popen[bytes]]) -> None:
    liveness = Path(container_env["MAILROOM_WORKER_LIVENESS_FILE"])
    worker = entrypoint(container_env, "worker")
    _eventually(liveness.exists, "the worker runs")
    assert _at_head(container_env)
    healthy = _run(container_env, "check")
    assert healthy.returncode == 0, healthy.stderr
    worker.send_signal(signal.SIGTERM)  # to the shell's pid: exec made it the worker's
    assert worker.wait(timeout=60) == 0
    assert _run(container_env, "check", "worker").returncode == 1


def test_web_migrates_serves_the_probes_and_stops_on_sigterm(
        container_env: dict[str, str], entrypoint: Callable[..., subprocess.Popen[bytes]]) -> None:
    web = entrypoint(container_env, "web")
    ready = f"http://127.0.0.1:{container_env['MAILROOM_WEB_PORT']}/readyz"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    _eventually(answers, "/readyz answers 200")
    healthy = _run(container_env, "check")  # no worker file: the web's /healthz is asked
    assert healthy.returncode == 0, healthy.stderr
    web.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then ends by the signal it caught (systemd and Docker count that as a stop).
    assert web.wait(timeout=60) in (0, -signal.SIGTERM)
    stopped = _run(container_env, "check", "web")
    assert stopped.returncode == 1
    assert "/healthz does not answer" in stopped.stderr


def test_migrate_gives_up_at_once_on_a_bad_setting_and_after_the_wait_on_a_missing_database(
        container_env: dict[str, str]) -> None:
    bad = _run(container_env | {"MAILROOM_DATABASE_URL": "mysql://nowhere/db"}, "migrate")
    assert bad.returncode == 2
    assert "trying again" not in bad.stderr
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/mailroom"
    down = _run(container_env | {"MAILROOM_DATABASE_URL": unreachable, "MAILROOM_MIGRATE_WAIT_SECONDS": "0"},
                "migrate")
    assert down.returncode == 3
    assert "migrations failed (exit 3)" in down.stderr


def test_other_commands_run_as_given(container_env: dict[str, str]) -> None:
    version = _run(container_env, "mailroom", "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("mailroom ")
