"""Migrations give exactly the schema of the tables module, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import metadata


def test_migrations_match_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()  # idempotent: a second start changes nothing
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "mailroom_alembic_version"})
            assert compare_metadata(context, metadata) == []
            assert "mailroom_mails" in inspect(conn).get_table_names()
    finally:
        db.dispose()


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()
