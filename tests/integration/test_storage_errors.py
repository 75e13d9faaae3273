"""Which database errors the worker waits out (StorageUnavailable) and which are plain refusals (StorageError)."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import text

from mailroom.adapters.storage.database import Database
from mailroom.errors import StorageError, StorageUnavailable


def test_a_missing_table_is_a_refusal_not_an_outage(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with pytest.raises(StorageError) as caught, db.read() as conn:
            conn.execute(text("SELECT 1 FROM no_such_table"))
        assert not isinstance(caught.value, StorageUnavailable)
    finally:
        db.dispose()


def test_an_unreachable_server_is_an_outage() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres?connect_timeout=2")
    try:
        with pytest.raises(StorageUnavailable), db.read() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        db.dispose()
