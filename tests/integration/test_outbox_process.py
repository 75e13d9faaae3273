"""The worker's outbox in a process of its own (OutboxProcess): used by default, ended with the Mailroom, and
a storage process that dies loses no mail and sends none twice. The contract suite runs it too
(tests/integration/test_outbox_contract.py)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.adapters.storage.outbox_process import OutboxProcess
from mailroom.domain.servers import Security
from mailroom.errors import MailNotFound, StorageError
from tests.support.smtp_servers import SmtpServerHandle


@pytest.fixture
def room(sqlite_url: str, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=sqlite_url, secret_key=secret_key, retry_jitter=0.0) as room:
        yield room


def add_server(room: Mailroom, handle: SmtpServerHandle) -> None:
    room.servers.add(SYSTEM, ServerSettings(name="relay", host=handle.host, port=handle.port,
                                            security=Security.NONE, sender="app@example.org"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that ended but was not reaped yet is a zombie: gone for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_worker_claims_and_records_in_a_child_process(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server)
    mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Hello", text="Hi"))
    outbox = room.outbox_for_workers()
    assert isinstance(outbox, OutboxProcess) and outbox is room.outbox_for_workers()
    assert room.deliver_pending() == 1
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT
    pid = outbox.pid
    assert pid is not None and pid != os.getpid() and alive(pid)
    assert room.deliver_pending() == 0 and outbox.pid == pid  # one child serves every run of the worker
    room.close()
    assert not alive(pid)


def test_without_the_setting_or_with_an_in_memory_database_the_store_serves_the_worker(
        sqlite_url: str, secret_key: str) -> None:
    with Mailroom(database_url=sqlite_url, secret_key=secret_key, worker_storage_process=False) as room:
        assert room.outbox_for_workers() is room.store
    with Mailroom(database_url="sqlite://", secret_key=secret_key) as room:
        assert room.outbox_for_workers() is room.store


def test_an_error_comes_back_as_it_was_raised(room: Mailroom) -> None:
    # MailNotFound takes a mail id, not its message: pickling by ``args`` alone would not rebuild it.
    with pytest.raises(MailNotFound) as raised:
        room.outbox_for_workers().requeue("no-such-mail", room.clock.now())
    assert raised.value.mail_id == "no-such-mail" and raised.value.text.params == {"mail_id": "no-such-mail"}
    error = pickle.loads(pickle.dumps(StorageError("the database is down", error_id="e-1")))
    assert isinstance(error, StorageError) and error.error_id == "e-1" and str(error) == "the database is down"


def test_a_killed_storage_process_loses_no_mail_and_sends_none_twice(
        room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server)
    count = 400
    ids = room.send_mails(SYSTEM, [Mail(to=f"u{i}@example.org", subject=f"m{i}", text="x") for i in range(count)])
    outbox = room.outbox_for_workers()
    assert isinstance(outbox, OutboxProcess)
    outbox.start()
    worker = room.create_worker(batch_size=40)
    kills: list[int] = []

    def kill_a_few() -> None:
        while len(kills) < 4 and len(smtp_server.received) < count:
            pid = outbox.pid
            if pid is not None and len(smtp_server.received) > (len(kills) + 1) * count // 6:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_few)
    killer.start()
    asyncio.run(room.run_worker(until_idle=True, worker=worker))
    killer.join()
    assert len(kills) >= 2, "the test should have killed the storage process mid-run"
    # Mails whose result was lost with a child are resent only after their lease: run until all are final.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
            room.get_mail(SYSTEM, i).status is not MailStatus.SENT for i in ids):
        room.deliver_pending()
    assert {room.get_mail(SYSTEM, i).status for i in ids} == {MailStatus.SENT}
    copies = Counter(received.message()["Message-ID"] for received in smtp_server.received)
    assert len(copies) == count and max(copies.values()) == 1
