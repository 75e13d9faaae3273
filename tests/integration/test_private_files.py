"""The files that hold the database and the secret key are private to their owner."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mailroom.adapters.secrets import FernetSecretBox
from mailroom.adapters.storage.database import Database
from mailroom.errors import ConfigurationError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, so a file is only private when mailroom asks for it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_sqlite_database_is_created_readable_by_its_owner_only(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "mailroom.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    with database.write() as conn:  # WAL and shared-memory files appear with the first write
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    try:
        for file in tmp_path.iterdir():
            assert _mode(file) == 0o600, file
    finally:
        database.dispose()


def test_the_key_file_is_created_readable_by_its_owner_only(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "keys" / "mailroom.key"
    FernetSecretBox.from_settings(None, path)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "mailroom.key"
    path.write_bytes(Fernet.generate_key() + b"\n")
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match=f"chmod 600 {path}"):
        FernetSecretBox.from_settings(None, path)
    path.chmod(0o600)
    FernetSecretBox.from_settings(None, path)
