"""The worker's outbox in a process of its own.

A worker is one Python process: its event loop speaks SMTP on every connection while its database thread
claims mails and writes results. Both need the interpreter lock, and SQLite hands it back after every row,
so the loop's socket writes wait behind the database's Python (measured: writing results costs a quarter of
delivery throughput although the thread's own work is ~50 µs per mail). ``OutboxProcess`` runs the real
``SqlMailStore`` in a child process and forwards each outbox call to it as one message over a socket pair:
the worker's side of a call is pickling a batch and waiting on a socket, without the lock.

A call whose child died or whose answer was lost raises ``StorageUnavailable``, like a dropped database
connection; the next call starts a new child. The worker already treats such calls as "maybe done"
(``resume_claim``, ``record(again=True)``), so nothing is claimed or logged twice.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any

from mailroom.domain.idempotency import IdempotencyRecord
from mailroom.domain.outbox import DeliveryAttempt, OutgoingMail
from mailroom.errors import StorageUnavailable, Text
from mailroom.ports import ClaimedMail, DeliveryResult, NewOutgoing

log = logging.getLogger(__name__)

# Results cross the socket as tuples of their fields: pickling a slotted dataclass runs Python code per object
# (dataclasses' __getstate__), which the worker's event loop would pay for every mail.
_RESULT_FIELDS = tuple(f.name for f in fields(DeliveryResult))
_ATTEMPT_FIELDS = tuple(f.name for f in fields(DeliveryAttempt))
_ATTEMPT_AT = _RESULT_FIELDS.index("attempt")
_result_values = attrgetter(*_RESULT_FIELDS)
_attempt_values = attrgetter(*_ATTEMPT_FIELDS)

# How long a new child may take to import, connect and answer its first call.
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class OutboxConfig:
    """What the child needs to open the same store (sent over the socket, never on the command line)."""

    database_url: str
    secret_key: str | None
    secret_key_file: str


class OutboxProcess:
    """An ``Outbox`` whose calls run in a child process holding its own ``SqlMailStore``.

    Thread-safe (one call at a time); the child starts on the first call and ends with ``close()`` or when
    this process goes away (its end of the socket closes).
    """

    def __init__(self, config: OutboxConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    # --- the Outbox port ----------------------------------------------------------------------------

    def add(self, mails: Sequence[NewOutgoing]) -> None:
        self._call("add", list(mails))

    def add_once(self, mail: NewOutgoing, record: IdempotencyRecord) -> IdempotencyRecord:
        result: IdempotencyRecord = self._call("add_once", mail, record)
        return result

    def claim(self, *, worker_id: str, limit: int, now: datetime, lease_seconds: float,
              max_bytes: int | None = None, token: str | None = None) -> list[ClaimedMail]:
        result: list[ClaimedMail] = self._call("claim", worker_id=worker_id, limit=limit, now=now,
                                               lease_seconds=lease_seconds, max_bytes=max_bytes, token=token)
        return result

    def resume_claim(self, token: str, *, now: datetime, lease_seconds: float) -> list[ClaimedMail]:
        result: list[ClaimedMail] = self._call("resume_claim", token, now=now, lease_seconds=lease_seconds)
        return result

    def record(self, results: Sequence[DeliveryResult], *, again: bool = False) -> None:
        self._call("record", [_result_to_wire(r) for r in results], again=again)

    def release(self, claims: Sequence[ClaimedMail], *, retry_at: datetime, error: Text | None = None) -> None:
        self._call("release", list(claims), retry_at=retry_at, error=error)

    def extend_leases(self, claims: Sequence[ClaimedMail], *, until: datetime) -> set[str]:
        result: set[str] = self._call("extend_leases", list(claims), until=until)
        return result

    def next_due_at(self) -> datetime | None:
        result: datetime | None = self._call("next_due_at")
        return result

    def requeue(self, mail_id: str, now: datetime) -> OutgoingMail:
        result: OutgoingMail = self._call("requeue", mail_id, now)
        return result

    def cancel(self, mail_id: str, now: datetime) -> OutgoingMail:
        result: OutgoingMail = self._call("cancel", mail_id, now)
        return result

    # --- the child ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and for measuring its CPU)."""
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def start(self) -> None:
        """Start the child now rather than at the first call (it takes a few hundred milliseconds)."""
        with self._lock:
            self._connected()

    def close(self) -> None:
        with self._lock:
            self._discard(wait=True)

    def _call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            connection = self._connected()
            try:
                connection.send((method, args, kwargs))
                ok, value = connection.recv()
            except (EOFError, OSError, pickle.PicklingError) as exc:
                self._discard(wait=False)
                raise StorageUnavailable(
                    "the worker's storage process ended during a call; a new one starts with the next call"
                ) from exc
        if ok:
            return value
        raise value

    def _connected(self) -> Connection:
        if self._connection is not None and self._child is not None and self._child.poll() is None:
            return self._connection
        self._discard(wait=False)
        ours, theirs = socket.socketpair()
        try:
            child = subprocess.Popen(  # noqa: S603 - this interpreter and this module
                [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            ours.close()
            raise StorageUnavailable("could not start the worker's storage process: {error}",
                                     {"error": str(exc)}) from exc
        finally:
            theirs.close()
        connection = Connection(ours.detach())
        self._child, self._connection = child, connection
        try:
            connection.send(self._config)
            if not connection.poll(START_TIMEOUT_SECONDS):
                raise TimeoutError
            ok, value = connection.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            self._discard(wait=False)
            raise StorageUnavailable("the worker's storage process did not start") from exc
        if not ok:
            self._discard(wait=True)
            raise value
        log.info("worker storage process %d started", child.pid)
        return connection

    def _discard(self, *, wait: bool) -> None:
        connection, child = self._connection, self._child
        self._connection = self._child = None
        if connection is not None:
            connection.close()  # the child sees EOF and ends
        if child is not None:
            if not wait:
                child.kill()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _serve(connection: Connection) -> None:
    """The child: open the store, then answer calls until the parent closes its end."""
    from mailroom.adapters.secrets import FernetSecretBox
    from mailroom.adapters.storage.database import Database
    from mailroom.adapters.storage.mail_store import SqlMailStore

    config: OutboxConfig = connection.recv()
    try:
        database = Database(config.database_url)
        store = SqlMailStore(database, FernetSecretBox.from_settings(config.secret_key, config.secret_key_file))
    except Exception as exc:  # the parent raises it as the reason it could not start
        connection.send((False, _sendable(exc)))
        return
    connection.send((True, None))
    try:
        while True:
            try:
                method, args, kwargs = connection.recv()
            except EOFError:
                return
            if method == "record":
                args = ([_result_from_wire(values) for values in args[0]], *args[1:])
            try:
                answer: tuple[bool, Any] = (True, getattr(store, method)(*args, **kwargs))
            except Exception as exc:  # every failure goes back to the caller
                answer = (False, _sendable(exc))
            connection.send(answer)
    finally:
        database.dispose()


def _result_to_wire(result: DeliveryResult) -> tuple[Any, ...]:
    values: tuple[Any, ...] = _result_values(result)
    return (*values[:_ATTEMPT_AT], _attempt_values(result.attempt), *values[_ATTEMPT_AT + 1:])


def _result_from_wire(values: tuple[Any, ...]) -> DeliveryResult:
    fields_ = dict(zip(_RESULT_FIELDS, values, strict=True))
    fields_["attempt"] = DeliveryAttempt(**dict(zip(_ATTEMPT_FIELDS, fields_["attempt"], strict=True)))
    return DeliveryResult(**fields_)


def _sendable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling, else its type and message as a RuntimeError."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, made a line above
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("MAILROOM_LOG_LEVEL", "WARNING"))
    _serve(Connection(int(sys.argv[1])))
