"""Processes that start together (a web app and its workers, containers scaled at once) each migrate the
database on start: on a fresh database all of them must succeed, one doing the work and the others finding it
done. Before, 3 of 4 failed on PostgreSQL (tables created twice) and 1 of 4 on SQLite (database is locked)."""

from __future__ import annotations

import subprocess
import sys

from mailroom.adapters.storage.database import Database

MIGRATE = "import sys; from mailroom.adapters.storage.database import Database; Database(sys.argv[1]).migrate()"


def test_processes_migrating_a_fresh_database_at_once_all_succeed(database_url: str) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", MIGRATE, database_url], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [(process.wait(timeout=180), process.stderr.read() if process.stderr else "") for process in processes]
    assert [code for code, _ in results] == [0, 0, 0, 0], [error[-500:] for _, error in results]
    database = Database(database_url)
    try:
        assert database.schema_revision().at_head
    finally:
        database.dispose()
