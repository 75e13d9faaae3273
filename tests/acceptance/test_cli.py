"""The ``mailroom`` command, run as a subprocess the way operators and scripts run it.

Each test gets its own SQLite database and key file through the environment. Exit codes are part of the
contract: 0 ok, 1 usage, 2 not found / invalid input, 3 delivery or connection failure.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from mailroom.adapters.smtp.dev_sink import AnyPortController as Controller

PASSWORD = "pw-Zq8-never-print-me"
DEADLINE_SECONDS = 20.0


class Cli:
    """Runs ``python -m mailroom.cli`` against one database and keeps every byte it printed."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
        self.env.update(
            MAILROOM_DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}",
            MAILROOM_SECRET_KEY_FILE=str(tmp_path / "k"),
            MAILROOM_POLL_INTERVAL_SECONDS="0.2",
            MAILROOM_LOG_LEVEL="INFO",
            PYTHONIOENCODING="utf-8",
            COLUMNS="200",  # wide Rich tables, so cells are not cut in assertions
        )
        self.printed: list[bytes] = []

    def run(self, *args: str, code: int = 0, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([sys.executable, "-m", "mailroom.cli", *args], env=self.env | (env or {}),
                                input=stdin.encode() if stdin is not None else None, capture_output=True,
                                timeout=60, check=False)
        self.printed += [result.stdout, result.stderr]
        assert result.returncode == code, (
            f"mailroom {' '.join(args)} exited {result.returncode}, expected {code}\n"
            f"stdout: {result.stdout.decode(errors='replace')}\nstderr: {result.stderr.decode(errors='replace')}"
        )
        return result

    def out(self, *args: str, **kwargs: Any) -> str:
        return self.run(*args, **kwargs).stdout.decode()

    def err(self, *args: str, code: int, **kwargs: Any) -> str:
        """stderr of a failing call, checked to be one readable line without traceback."""
        stderr = self.run(*args, code=code, **kwargs).stderr.decode()
        assert "Traceback" not in stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("error: ")
        return lines[0]

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "--json"))

    def spawn(self, *args: str, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp_path / log_name
        with log.open("wb") as handle:
            process = subprocess.Popen([sys.executable, "-m", "mailroom.cli", *args], env=self.env,
                                       stdout=handle, stderr=subprocess.STDOUT)
        return process, log


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def free_port() -> int:
    """A port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK queued"


@pytest.fixture
def smtpd() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield handler, controller.server.sockets[0].getsockname()[1]
    finally:
        controller.stop()


def wait_for(predicate: Any, what: str, deadline_seconds: float = DEADLINE_SECONDS) -> Any:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {deadline_seconds} s waiting for {what}")


def test_send_then_log_json_shows_it_queued(cli: Cli) -> None:
    mail_id = cli.out("send", "--to", "a@example.org", "--to", "B <b@example.org>", "--subject", "hi",
                      "--text", "x", "--tag", "welcome", "--priority", "high").strip()
    assert len(mail_id) == 32 and mail_id.isalnum()
    second = cli.json("send", "--to", "c@example.org", "--subject", "other", "--text", "y")["id"]

    page = cli.json("log")
    assert page["total"] == 2
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id[mail_id]["status"] == "queued"
    assert by_id[mail_id]["subject"] == "hi"
    assert by_id[mail_id]["tags"] == ["welcome"]
    assert [r["email"] for r in by_id[mail_id]["recipients"]] == ["a@example.org", "b@example.org"]
    assert by_id[mail_id]["queued_at"].startswith("20")  # ISO 8601
    assert by_id[second]["status"] == "queued"

    filtered = cli.json("log", "--tag", "welcome", "--status", "queued")
    assert [item["id"] for item in filtered["items"]] == [mail_id]
    table = cli.out("log", "--search", "example.org")
    assert mail_id in table and "2 of 2" in table
    assert [i["id"] for i in cli.json("log", "-q", "tag:welcome -subject:other status:queued")["items"]] == [mail_id]
    assert cli.json("log", "--query", "-status:queued")["total"] == 0
    assert "unknown status 'snt'" in cli.err("log", "--query", "status:snt", code=2)
    assert "queued" in cli.out("show", mail_id)
    first = cli.json("log", "--limit", "1")
    assert first["items"][0]["id"] == second and first["next_after"]
    after = cli.json("log", "--limit", "1", "--after", first["next_after"])
    assert after["items"][0]["id"] == mail_id and after["next_after"]  # full: more may follow
    assert cli.json("log", "--limit", "1", "--after", after["next_after"]) | {"total": 2} == {
        "total": 2, "total_exact": True, "offset": 0, "limit": 1, "next_after": None, "items": []}
    assert f"next page: --after {first['next_after']}" in cli.out("log", "--limit", "1")
    assert "not a cursor" in cli.err("log", "--after", "nonsense", code=2)


def test_invalid_address_exits_2_and_stores_nothing(cli: Cli) -> None:
    line = cli.err("send", "--to", "not an address", "--subject", "hi", "--text", "x", code=2)
    assert "invalid e-mail address 'not an address'" in line
    assert cli.json("log")["total"] == 0


def test_send_with_an_idempotency_key_queues_once(cli: Cli) -> None:
    mail = ("send", "--to", "a@example.org", "--subject", "nightly report", "--text", "x")
    first = cli.out(*mail, "--idempotency-key", "report-2026-03-01").strip()
    assert cli.json(*mail, "--idempotency-key", "report-2026-03-01")["id"] == first
    line = cli.err("send", "--to", "a@example.org", "--subject", "another report", "--text", "x",
                   "--idempotency-key", "report-2026-03-01", code=2)
    assert "was used for a different mail" in line and first in line
    assert cli.json("log")["total"] == 1


def test_unknown_id_exits_2(cli: Cli) -> None:
    assert "no mail with id 'nope'" in cli.err("show", "nope", code=2)
    cli.err("show", "nope", "--raw", code=2)
    cli.err("retry", "nope", code=2)
    cli.err("smtp", "test", "nope", code=2)


def test_usage_errors_exit_1(cli: Cli) -> None:
    assert "--bogus" in cli.err("send", "--bogus", code=1)
    assert "Missing argument" in cli.err("show", code=1)
    cli.err("log", "--status", "lost", code=1)
    cli.err("send", "--to", "a@example.org", "--text", "x", "--text-file", "-", code=1)


def test_smtp_passwords_never_printed(cli: Cli) -> None:
    secret_env = {"MR_TEST_SMTP_PASSWORD": PASSWORD}
    cli.out("smtp", "add", "relay", "--host", "smtp.example.org", "--username", "app@example.org",
            "--password-env", "MR_TEST_SMTP_PASSWORD", "--priority", "5", env=secret_env)
    cli.out("smtp", "add", "backup", "--host", "smtp2.example.org", "--port", "465", "--security", "tls",
            "--username", "u2", "--password-stdin", stdin=PASSWORD + "\n")
    cli.out("smtp", "add", "plain", "--host", "relay.internal", "--security", "none", "--disabled")

    table = cli.out("smtp", "list")
    assert "relay" in table and "smtp.example.org" in table
    listed = {s["name"]: s for s in cli.json("smtp", "list")}
    assert listed["relay"]["has_password"] is True
    assert listed["backup"]["has_password"] is True and listed["backup"]["security"] == "tls"
    assert listed["plain"]["has_password"] is False and listed["plain"]["enabled"] is False

    cli.out("smtp", "update", "relay", "--priority", "6")  # no password option: the password stays
    # Another port is another destination: the stored password does not go there unless given again.
    assert "password" in cli.err("smtp", "update", "relay", "--port", "2525", code=2)
    cli.out("smtp", "update", "relay", "--port", "2525", "--password-env", "MR_TEST_SMTP_PASSWORD", env=secret_env)
    after = {s["name"]: s for s in cli.json("smtp", "list")}
    assert after["relay"]["port"] == 2525 and after["relay"]["has_password"] is True
    cli.out("smtp", "update", "backup", "--clear-password")
    assert {s["name"]: s for s in cli.json("smtp", "list")}["backup"]["has_password"] is False
    cli.out("smtp", "remove", "plain")
    assert "plain" not in {s["name"] for s in cli.json("smtp", "list")}
    cli.err("smtp", "add", "x", "--host", "h", "--username", "u", "--password-env", "MR_UNSET_VAR", code=2)
    # --username without a password source and without a terminal to ask on: usage error, no hang.
    cli.err("smtp", "add", "y", "--host", "h", "--username", "u", code=1, stdin="")

    printed = b"".join(cli.printed)
    assert PASSWORD.encode() not in printed
    assert PASSWORD.encode() not in (cli.tmp_path / "m.db").read_bytes()  # encrypted at rest


def test_smtp_test_against_unreachable_port_exits_3(cli: Cli) -> None:
    port = str(free_port())
    cli.out("smtp", "add", "down", "--host", "127.0.0.1", "--port", port, "--security", "none",
            "--timeout", "5")
    result = cli.run("smtp", "test", "down", code=3)
    stdout = result.stdout.decode()
    assert "✗" in stdout
    failed = [line for line in stdout.splitlines() if "✗" in line]
    assert failed and "connect" in failed[0]
    assert result.stderr.decode().startswith("error: SMTP server 'down' failed the test")


def test_smtp_test_passes_against_a_live_server(cli: Cli, smtpd: tuple[RecordingHandler, int]) -> None:
    _, port = smtpd
    cli.out("smtp", "add", "local", "--host", "127.0.0.1", "--port", str(port), "--security", "none")
    stdout = cli.out("smtp", "test", "local")
    assert "✓" in stdout and "✗" not in stdout


def test_send_deliver_and_inspect_with_a_worker_process(cli: Cli, smtpd: tuple[RecordingHandler, int]) -> None:
    handler, port = smtpd
    cli.out("smtp", "add", "local", "--host", "127.0.0.1", "--port", str(port), "--security", "none",
            "--sender", "app@example.org")
    body = cli.tmp_path / "body.txt"
    body.write_text("Hello from the CLI\n", encoding="utf-8")
    attachment = cli.tmp_path / "report.csv"
    attachment.write_text("a,b\n1,2\n", encoding="utf-8")
    mail_id = cli.out("send", "--to", "a@example.org", "--cc", "c@example.org", "--subject", "hi",
                      "--text-file", str(body), "--attach", str(attachment)).strip()

    worker, log = cli.spawn("worker", log_name="worker.log")
    try:
        def sent() -> bool:
            items = cli.json("log", "--status", "sent")["items"]
            return any(item["id"] == mail_id for item in items)

        wait_for(sent, "the worker to send the mail")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=DEADLINE_SECONDS) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert [(m[0], sorted(m[1])) for m in handler.messages] == [
        ("app@example.org", ["a@example.org", "c@example.org"])]
    details = cli.json("show", mail_id)
    assert details["status"] == "sent" and details["server_name"] == "local"
    assert [a["outcome"] for a in details["attempt_log"]] == ["sent"]
    assert {r["status"] for r in details["recipients"]} == {"accepted"}
    human = cli.out("show", mail_id)
    assert "Attempts" in human and "local" in human

    raw = cli.run("show", mail_id, "--raw").stdout
    message = message_from_bytes(raw, policy=default_policy)
    assert message["Subject"] == "hi"
    assert message["To"] == "a@example.org"
    assert [part.get_filename() for part in message.iter_attachments()] == ["report.csv"]


def test_retry_cancel_and_delete(cli: Cli) -> None:
    mail_id = cli.out("send", "--to", "a@example.org", "--subject", "later", "--text", "x",
                      "--send-at", "2999-01-01T09:00").strip()
    assert cli.err("retry", mail_id, code=2).endswith("only failed, cancelled or deferred mails can be retried")
    assert "cancelled" in cli.out("cancel", mail_id)
    # already final: an invalid transition, said in a whole sentence
    assert cli.err("cancel", mail_id, code=2).endswith("it is cancelled, and only queued or deferred mails can be "
                                                       "cancelled")
    assert "queued" in cli.out("retry", mail_id)
    assert cli.out("delete", mail_id).strip() == "deleted 1 mail(s)"
    cli.err("delete", mail_id, code=2)
    assert cli.json("log")["total"] == 0


def test_keygen_and_migrate(cli: Cli) -> None:
    key = cli.out("keygen").strip()
    Fernet(key.encode())  # a valid key
    assert "up to date" in cli.out("migrate")


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))


def _healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(address, timeout=5) as answer:
            return bool(json.loads(answer.read())["status"] == "ok")
    except OSError:
        return False


def test_dev_runs_a_sink_and_a_worker(cli: Cli) -> None:
    port, web_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "mailroom.cli", "dev", "--sink-port", str(port),
                                "--port", str(web_port)],
                               env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []

    def printed(text: str) -> bool:
        while True:
            try:
                seen.append(lines.get_nowait())
            except queue.Empty:
                return any(text in line for line in seen)

    try:
        wait_for(lambda: printed("mailroom send --to"), "the dev instructions")
        assert printed(f"created the first administrator: log in at http://127.0.0.1:{web_port}/login as "
                       "admin@example.org with password ")
        assert [u["roles"] for u in cli.json("user", "list")] == [["admin"]]
        assert printed(f"web UI on http://127.0.0.1:{web_port}")
        wait_for(lambda: _healthy(f"http://127.0.0.1:{web_port}/api/v1/health"), "the web UI to answer")
        servers = {s["name"]: s for s in cli.json("smtp", "list")}
        assert servers["dev-sink"]["port"] == port and servers["dev-sink"]["priority"] == 1000
        cli.out("send", "--to", "a@example.org", "--subject", "hello dev", "--text", "x")
        wait_for(lambda: printed("hello dev"), "the sink to print the received mail")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE_SECONDS) == 0, "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_dev_on_a_taken_web_port_fails_before_touching_the_database(cli: Cli) -> None:
    running_sink_port = free_port()  # where the dev-sink server of a running `mailroom dev` points
    cli.out("smtp", "add", "dev-sink", "--host", "127.0.0.1", "--port", str(running_sink_port), "--security", "none",
            "--sender", "mailroom-dev@example.org")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web_port = taken.getsockname()[1]
        line = cli.err("dev", "--sink-port", str(free_port()), "--port", str(web_port), code=2)
    assert f"cannot listen on 127.0.0.1:{web_port}" in line and "--port" in line
    [server] = cli.json("smtp", "list")
    assert server["port"] == running_sink_port  # the running instance still gets its mails
    assert cli.json("user", "list") == []  # and no administrator was created either
