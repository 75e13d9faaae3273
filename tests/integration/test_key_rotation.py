"""Key rotation (issue #14, item 4) on SQLite and PostgreSQL: ``rotate`` re-encrypts SMTP passwords and
sealed confidential contents under the first key while a worker delivers with them, after which the old
key can go; ``check`` names the secrets no configured key opens."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.adapters.storage.secret_store import SqlStoredSecrets
from mailroom.adapters.storage.tables import mails
from mailroom.domain.servers import Security
from mailroom.domain.stored_secrets import SecretKind
from mailroom.usecases.secret_keys import SecretKeyUseCases
from tests.support.smtp_servers import SmtpServerHandle

USERNAME = "robot@example.org"
PASSWORD = "rotate-me-Pa55w0rd"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _room(database_url: str, keys: str, **settings: object) -> Mailroom:
    return Mailroom(database_url=database_url, secret_key=keys, retry_jitter=0.0, poll_interval_seconds=0.2,
                    **settings)


def _add_server(room: Mailroom, port: int) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="relay", host="127.0.0.1", port=port, security=Security.NONE,
                                            username=USERNAME, sender="app@example.org", timeout_seconds=10),
                     PASSWORD)


def _mail(n: int) -> Mail:
    # Every other mail confidential: its content is sealed with the key of the process that queued it.
    return Mail(to=f"user{n}@example.org", subject=f"mail {n}", text=f"body {n}", confidential=n % 2 == 0)


def _statuses(room: Mailroom) -> dict[str, int]:
    with room.database.read() as conn:
        return {status: count for status, count in
                conn.execute(select(mails.c.status, func.count()).group_by(mails.c.status))}


def test_rotating_while_a_worker_delivers_with_the_password_fails_no_delivery(
        database_url: str, smtp_server_factory: Callable[..., SmtpServerHandle]) -> None:
    smtp = smtp_server_factory(auth=(USERNAME, PASSWORD))
    old_process = _room(database_url, OLD)  # an application not yet restarted: it seals with the old key
    _add_server(old_process, int(smtp.port))
    for n in range(40):
        old_process.send_mail(SYSTEM, _mail(n))
    worker_room = _room(database_url, f"{NEW},{OLD}", smtp_connections_per_server=2)
    rotating_room = _room(database_url, f"{NEW},{OLD}")
    # One row per batch, so rotation is as many short transactions as there are secrets, interleaved with
    # the worker's claims (which open the sealed contents) and its logins (which open the password).
    rotation = SecretKeyUseCases(store=SqlStoredSecrets(rotating_room.database, rotating_room.secrets), batch_size=1)
    worker = worker_room.create_worker()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(worker_room.run_worker(worker=worker)))
    thread.start()
    try:
        rotated = 0
        for n in range(40, 100):
            old_process.send_mail(SYSTEM, _mail(n))
            if n % 10 == 0:
                report = rotation.rotate(SYSTEM)
                assert report.unopened == []
                rotated += sum(report.rotated.values())
        smtp.wait_for(100, timeout=60)
        report = rotation.rotate(SYSTEM)
        assert report.unopened == []
        rotated += sum(report.rotated.values())
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(timeout=30)
        loop.close()
    assert _statuses(worker_room) == {MailStatus.SENT.value: 100}
    assert rotated >= 2  # the password and at least one sealed content were rewritten under the new key
    assert smtp.logins and all(login == (USERNAME, PASSWORD) for login in smtp.logins)
    for room in (old_process, worker_room, rotating_room):
        room.close()

    # The old key can go now: the password opens with the new key alone, and a new mail goes out with it.
    with _room(database_url, NEW) as new_only:
        assert new_only.secret_keys.check(SYSTEM) == []
        assert new_only.server_store.password(new_only.server_store.get("relay").id) == PASSWORD
        new_only.send_mail(SYSTEM, _mail(100))
        new_only.deliver_pending()
        assert _statuses(new_only) == {MailStatus.SENT.value: 101}


def test_after_rotation_queued_confidential_mails_open_with_the_new_key_alone(
        database_url: str, smtp_server_factory: Callable[..., SmtpServerHandle]) -> None:
    smtp = smtp_server_factory(auth=(USERNAME, PASSWORD))
    with _room(database_url, OLD) as old:
        _add_server(old, int(smtp.port))
        ids = [old.send_mail(SYSTEM, _mail(n)) for n in range(6)]
    with _room(database_url, f"{NEW},{OLD}") as both:
        report = both.secret_keys.rotate(SYSTEM)
        assert report.rotated == {SecretKind.SMTP_PASSWORD: 1, SecretKind.MAIL_CONTENT: 3}
        again = both.secret_keys.rotate(SYSTEM)  # a second run finds everything current and rewrites nothing
        assert again.rotated == {SecretKind.SMTP_PASSWORD: 0, SecretKind.MAIL_CONTENT: 0}
        assert again.current == {SecretKind.SMTP_PASSWORD: 1, SecretKind.MAIL_CONTENT: 3}
    with _room(database_url, NEW) as new_only:
        new_only.deliver_pending()
        assert {new_only.get_mail(SYSTEM, i).status for i in ids} == {MailStatus.SENT}
    assert sorted(m.message()["Subject"] for m in smtp.wait_for(6)) == [f"mail {n}" for n in range(6)]


def test_check_names_the_secrets_no_configured_key_opens(database_url: str) -> None:
    with _room(database_url, OLD) as old:
        _add_server(old, 2525)
        sealed = old.send_mail(SYSTEM, _mail(0))
        old.send_mail(SYSTEM, _mail(1))  # not confidential: nothing sealed
    with _room(database_url, NEW) as new_only:
        found = new_only.secret_keys.check(SYSTEM)
        assert [(s.kind, s.owner) for s in found] == [(SecretKind.SMTP_PASSWORD, "relay"),
                                                      (SecretKind.MAIL_CONTENT, "mail 0")]
        assert found[1].id == sealed
        report = new_only.secret_keys.rotate(SYSTEM)  # rotation reports them too, and leaves them alone
        assert report.unopened == found
    with _room(database_url, f"{NEW},{OLD}") as both:
        assert both.secret_keys.check(SYSTEM) == []


def test_the_secrets_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with _room(url, OLD) as old:
        _add_server(old, 2525)
        old.send_mail(SYSTEM, _mail(0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")} | {"MAILROOM_DATABASE_URL": url}

    def run(keys: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailroom.cli", "secrets", *args], capture_output=True,
                              text=True, timeout=60, check=False, env=env | {"MAILROOM_SECRET_KEY": keys})

    check = run(NEW, "check")
    assert check.returncode == 2, check
    assert "SMTP password of server 'relay'" in check.stderr and "confidential mail" in check.stderr
    assert PASSWORD not in check.stdout + check.stderr
    assert run(f"{NEW},{OLD}", "check").returncode == 0
    rotate = run(f"{NEW},{OLD}", "rotate-key")
    assert rotate.returncode == 0, rotate
    assert "SMTP passwords: 1 re-encrypted" in rotate.stdout
    assert "confidential mail contents: 1 re-encrypted" in rotate.stdout
    after = run(NEW, "check", "--json")
    assert after.returncode == 0 and after.stdout.strip() == "[]"
