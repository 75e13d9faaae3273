"""Waking SQLite workers in other processes on this machine: a UNIX datagram socket per worker.

SQLite has no LISTEN/NOTIFY, so without this a mail queued by another process (the web app, the CLI)
waits for the worker's next poll. Each worker binds ``<database>.wake/<pid>-<random>.sock``; ``notify()``
sends one byte to every socket in that folder, and the worker's event loop sets its wake-up event when
one arrives. The folder is private (mode 0700): only processes of the same user wake the workers, and a
folder with wider permissions or another owner is not used. Everything here is best effort: when the
folder cannot be made (a read-only directory, an in-memory database) or a datagram is lost, the worker's
poll (``poll_interval_seconds``) still finds the mail.

POSIX only (``AF_UNIX`` datagram sockets and ``loop.add_reader``); Windows is not a target, and there
``local_wakeup_for`` gives the in-process wake-up alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailroom.adapters.storage.wakeup import EventWakeup

log = logging.getLogger(__name__)

FOLDER_SUFFIX = ".wake"
SOCKET_SUFFIX = ".sock"
# sun_path holds 108 bytes on Linux (104 on the BSDs) with the terminating NUL; longer paths are reached
# through /proc/self/fd/<folder fd>/<name> where /proc exists, else the worker falls back to polling.
MAX_SOCKET_PATH_BYTES = 103
PROC_FD = Path("/proc/self/fd")
# A directory's mtime comes from the kernel's coarse clock (a tick of 1-10 ms): a socket bound in the same
# tick as a listing leaves the mtime unchanged. A listing is only reused once the folder has been still for
# this long before it was read (git's "racily clean" rule).
SETTLED_NS = 100_000_000


def local_wakeup_for(database: str | None) -> EventWakeup:
    """The wake-up for a SQLite database: cross-process for a database file, in-process otherwise."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return EventWakeup()  # no file to sit beside: only the poll reaches other processes
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        return EventWakeup()  # Windows: not a target, it polls
    # Resolved, so that processes naming the file by different relative paths or links meet in one folder.
    path = Path(database).resolve()
    return LocalSocketWakeup(path.with_name(path.name + FOLDER_SUFFIX))


@dataclass(frozen=True, slots=True)
class _Listing:
    key: tuple[int, int, int, int]  # device, inode, mtime and size of the folder when it was read
    names: tuple[str, ...]  # the sockets of the other workers
    addresses: tuple[bytes, ...] | None  # their paths, None when too long for sun_path (see _FolderAddress)
    settled: bool  # the folder had not changed for SETTLED_NS when it was read: reusable while the key holds


_NOTHING = _Listing(key=(0, 0, 0, 0), names=(), addresses=(), settled=False)


class LocalSocketWakeup(EventWakeup):
    """``EventWakeup`` plus a socket that wakes this worker when a process on this machine queues mail.

    ``notify()`` (every ``send_mail``) costs a ``stat`` of the folder when no worker listens; the folder
    listing is cached while the folder's mtime stays the same. Sockets of workers that died without
    removing theirs refuse the datagram and are deleted then.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._folder = str(folder)  # os.stat takes a str without the Path's __fspath__ call: on every send_mail
        self._uid = os.getuid()
        self._send_lock = threading.Lock()
        self._listing = _NOTHING
        self._sender: socket.socket | None = None
        self._starts = 0
        self._receiver: socket.socket | None = None
        self._receiver_loop: asyncio.AbstractEventLoop | None = None
        self._own_name: str | None = None

    # --- sending: any process that queues mail --------------------------------------------------

    def notify(self) -> None:
        super().notify()
        with self._send_lock:  # threads share the cached listing and the sending socket
            listing = self._current_listing()
            if listing.names:
                self._send_to(listing)

    def _current_listing(self) -> _Listing:
        try:
            folder = os.stat(self._folder, follow_symlinks=False)
        except OSError:
            return _NOTHING  # no worker ever listened here (or the folder is unreachable): the poll covers it
        key = (folder.st_dev, folder.st_ino, folder.st_mtime_ns, folder.st_size)
        if self._listing.settled and self._listing.key == key:
            return self._listing
        if not self._private(folder):
            return _NOTHING
        read_at = time.time_ns()
        try:
            names = tuple(name for name in os.listdir(self._folder)
                          if name.endswith(SOCKET_SUFFIX) and name != self._own_name)
        except OSError:
            return _NOTHING
        addresses = tuple(os.fsencode(os.path.join(self._folder, name)) for name in names)
        self._listing = _Listing(
            key=key, names=names, settled=read_at - folder.st_mtime_ns > SETTLED_NS,
            addresses=addresses if all(len(a) <= MAX_SOCKET_PATH_BYTES for a in addresses) else None)
        return self._listing

    def _send_to(self, listing: _Listing) -> None:
        sender = self._sender
        if sender is None:
            sender = self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)  # a worker that does not read must never hold up send_mail
            weakref.finalize(self, sender.close)
        if listing.addresses is not None:
            self._send_each(sender, listing.names, listing.addresses)
            return
        try:
            with _FolderAddress(self.folder) as long_address:
                self._send_each(sender, listing.names, [long_address(name) for name in listing.names])
        except OSError:
            pass  # no /proc to shorten the path: the workers could not bind here either, they poll

    def _send_each(self, sender: socket.socket, names: Sequence[str], addresses: Sequence[bytes]) -> None:
        for name, address in zip(names, addresses, strict=True):
            try:
                sender.sendto(b"\0", address)
            except BlockingIOError:
                pass  # its queue is full of wake-ups it has not read yet: it is awake already
            except ConnectionRefusedError:
                # Nothing is bound to it any more: a worker that died without removing its socket.
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self._folder, name))
                self._listing = _NOTHING
            except OSError:
                self._listing = _NOTHING  # gone meanwhile, or not a socket: read the folder again next time

    # --- listening: a worker ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind this worker's socket and wake on every datagram; on failure log why and rely on polling."""
        self._starts += 1
        if self._starts > 1:
            return  # several workers of one Mailroom share the socket
        try:
            self._ensure_private_folder()
            name = f"{os.getpid()}-{secrets.token_hex(4)}{SOCKET_SUFFIX}"
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                receiver.setblocking(False)
                with _FolderAddress(self.folder) as address:
                    receiver.bind(address(name))
                loop = asyncio.get_running_loop()
                loop.add_reader(receiver.fileno(), self._on_datagrams, receiver)
            except BaseException:
                receiver.close()
                raise
        except (OSError, NotImplementedError, _FolderRefused) as exc:
            log.warning("mail queued by other processes wakes this worker only at its next poll: %s", exc)
            return
        self._receiver, self._receiver_loop, self._own_name = receiver, loop, name

    async def stop(self) -> None:
        self._starts = max(0, self._starts - 1)
        if self._starts or self._receiver is None:
            return
        receiver, loop, name = self._receiver, self._receiver_loop, self._own_name
        self._receiver = self._receiver_loop = self._own_name = None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(receiver.fileno())
        receiver.close()
        with contextlib.suppress(OSError):
            os.unlink(self.folder / str(name))

    def _on_datagrams(self, receiver: socket.socket) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once drained
            while receiver.recv(64):
                pass
        # Only this process's event: EventWakeup.notify, not self.notify, which would wake everyone again.
        EventWakeup.notify(self)

    def _ensure_private_folder(self) -> None:
        try:
            os.mkdir(self.folder, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(self.folder, 0o700)  # the umask may have taken bits from the owner too
        folder = os.stat(self.folder, follow_symlinks=False)
        if not self._private(folder):
            raise _FolderRefused(
                f"{self.folder} is not a folder private to this user (owner uid {os.getuid()}, mode 0700); "
                f"remove it or run 'chmod 700 {self.folder}' as its owner")

    def _private(self, folder: os.stat_result) -> bool:
        return (stat.S_ISDIR(folder.st_mode) and folder.st_uid == self._uid
                and not stat.S_IMODE(folder.st_mode) & 0o077)


class _FolderRefused(Exception):
    """The wake-up folder exists but others could plant or reach sockets in it."""


class _FolderAddress:
    """Socket addresses in a folder, through ``/proc/self/fd`` when the plain path is too long for sun_path."""

    def __init__(self, folder: Path) -> None:
        self._folder = os.fsencode(folder)
        self._fd: int | None = None

    def __enter__(self) -> _FolderAddress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)

    def __call__(self, name: str) -> bytes:
        plain = self._folder + b"/" + os.fsencode(name)
        if len(plain) <= MAX_SOCKET_PATH_BYTES:
            return plain
        if self._fd is None:
            if not PROC_FD.is_dir():
                raise OSError(f"the socket path {plain!r} is too long for a UNIX socket")
            self._fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        return os.fsencode(f"{PROC_FD}/{self._fd}/{name}")
