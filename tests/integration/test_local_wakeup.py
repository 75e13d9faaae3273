"""The SQLite wake-up across processes: real UNIX datagram sockets in a private folder beside the database.

Senders and listeners here are separate ``LocalSocketWakeup`` objects, as in separate processes (the
acceptance tests run real worker processes); each listener has its own socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailroom import Mailroom
from mailroom.adapters.storage.local_wakeup import FOLDER_SUFFIX, LocalSocketWakeup, local_wakeup_for
from mailroom.adapters.storage.wakeup import EventWakeup

WAKE_SECONDS = 5.0  # generous: a wake-up takes milliseconds, a miss waits the whole timeout


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / f"mailroom.db{FOLDER_SUFFIX}"


@pytest.fixture
async def listener(folder: Path) -> AsyncIterator[LocalSocketWakeup]:
    wakeup = LocalSocketWakeup(folder)
    await wakeup.start()
    try:
        yield wakeup
    finally:
        await wakeup.stop()


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _sockets(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def test_a_sender_wakes_every_listening_worker(folder: Path, listener: LocalSocketWakeup) -> None:
    other = LocalSocketWakeup(folder)
    await other.start()
    try:
        assert len(_sockets(folder)) == 2, "one socket per worker"
        LocalSocketWakeup(folder).notify()
        assert await listener.wait(WAKE_SECONDS)
        assert await other.wait(WAKE_SECONDS)
    finally:
        await other.stop()
    assert len(_sockets(folder)) == 1, "a stopped worker removes its socket"


async def test_a_worker_that_is_not_notified_waits_for_its_poll(folder: Path, listener: LocalSocketWakeup) -> None:
    assert not await listener.wait(0.2)


async def test_a_worker_woken_from_outside_does_not_wake_the_others_again(
        folder: Path, listener: LocalSocketWakeup, monkeypatch: pytest.MonkeyPatch) -> None:
    other = LocalSocketWakeup(folder)
    await other.start()
    monkeypatch.chdir(folder)  # a relative name: a deep temporary folder is beyond AF_UNIX's 108 bytes
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:  # a datagram to `listener` only
            (name,) = (n for n in _sockets(folder) if n != other._own_name)
            raw.sendto(b"\0", name)
        assert await listener.wait(WAKE_SECONDS)
        assert not await other.wait(0.3)
    finally:
        await other.stop()


async def test_the_folder_is_private_to_its_owner(folder: Path, open_umask: None,
                                                  listener: LocalSocketWakeup) -> None:
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert folder.stat().st_uid == os.getuid()


async def test_a_folder_others_may_enter_is_neither_listened_in_nor_sent_to(
        folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    wakeup = LocalSocketWakeup(folder)
    with caplog.at_level(logging.WARNING):
        await wakeup.start()
    try:
        assert _sockets(folder) == []
        assert "chmod 700" in caplog.text and "next poll" in caplog.text
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as planted:
            planted.bind(str(folder / "planted.sock"))
            planted.setblocking(False)
            LocalSocketWakeup(folder).notify()
            with pytest.raises(BlockingIOError):
                planted.recv(8)
    finally:
        await wakeup.stop()


async def test_a_socket_left_by_a_dead_worker_is_removed_by_the_next_sender(
        folder: Path, listener: LocalSocketWakeup) -> None:
    dead = folder / "1-deadbeef.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as crashed:
        crashed.bind(str(dead))  # closed without unlinking, as after SIGKILL
    sender = LocalSocketWakeup(folder)
    sender.notify()
    assert not dead.exists()
    assert await listener.wait(WAKE_SECONDS), "the live worker is woken all the same"


async def test_a_worker_started_after_a_senders_last_look_is_woken(folder: Path) -> None:
    folder.mkdir(mode=0o700)
    os.utime(folder, (1_000_000_000, 1_000_000_000))  # long unchanged: the sender keeps its (empty) listing
    sender = LocalSocketWakeup(folder)
    sender.notify()
    late = LocalSocketWakeup(folder)
    await late.start()
    try:
        sender.notify()
        assert await late.wait(WAKE_SECONDS)
    finally:
        await late.stop()


async def test_a_path_too_long_for_a_unix_socket_still_wakes(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    folder = deep / f"mailroom.db{FOLDER_SUFFIX}"
    listener = LocalSocketWakeup(folder)
    await listener.start()
    try:
        assert len(_sockets(folder)) == 1
        LocalSocketWakeup(folder).notify()
        assert await listener.wait(WAKE_SECONDS)
    finally:
        await listener.stop()
    assert _sockets(folder) == []


async def test_without_a_folder_the_worker_falls_back_to_polling(
        folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder.write_text("not a folder")  # mkdir fails, as in a read-only directory
    wakeup = LocalSocketWakeup(folder)
    with caplog.at_level(logging.WARNING):
        await wakeup.start()
    try:
        assert "next poll" in caplog.text
        wakeup.notify()  # senders do not fail either
        assert await wakeup.wait(0.1), "the in-process wake-up still works"
        assert not await wakeup.wait(0.1)
    finally:
        await wakeup.stop()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
async def test_a_database_in_a_read_only_folder_falls_back_to_polling(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        wakeup = local_wakeup_for(str(tmp_path / "mailroom.db"))
        await wakeup.start()
        wakeup.notify()
        assert await wakeup.wait(0.1)
        await wakeup.stop()
        assert list(tmp_path.iterdir()) == []
    finally:
        tmp_path.chmod(0o700)


def test_an_in_memory_database_has_the_in_process_wakeup_only(secret_key: str) -> None:
    assert type(local_wakeup_for(":memory:")) is EventWakeup
    assert type(local_wakeup_for(None)) is EventWakeup
    with Mailroom(database_url="sqlite://", secret_key=secret_key) as room:
        assert type(room.wakeup) is EventWakeup


def test_a_database_file_gets_the_folder_beside_it(tmp_path: Path) -> None:
    wakeup = local_wakeup_for(str(tmp_path / "mailroom.db"))
    assert isinstance(wakeup, LocalSocketWakeup)
    assert wakeup.folder == (tmp_path / "mailroom.db.wake").resolve()


def test_a_worker_run_listens_while_it_runs_and_cleans_up(sqlite_url: str, secret_key: str, tmp_path: Path) -> None:
    with Mailroom(database_url=sqlite_url, secret_key=secret_key) as room:
        assert isinstance(room.wakeup, LocalSocketWakeup)

        async def run() -> list[str]:
            worker = room.create_worker()
            task = asyncio.create_task(room.run_worker(worker=worker))
            for _ in range(200):
                if _sockets(tmp_path / "mailroom.db.wake"):
                    break
                await asyncio.sleep(0.02)
            seen = _sockets(tmp_path / "mailroom.db.wake")
            worker.stop()
            await task
            return seen

        assert len(asyncio.run(run())) == 1, "the running worker listened"
        assert _sockets(tmp_path / "mailroom.db.wake") == [], "and removed its socket when it stopped"
