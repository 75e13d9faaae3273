"""BulkStatement writes exactly what SQLAlchemy itself would, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.dialects import sqlite

from mailroom.adapters.storage.bulk import BulkStatement, sqlite_utc_text
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import UtcDateTime, mail_attempts, mails


def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        # Whole seconds too: a text format that drops ".000000" would sort and compare wrongly on SQLite.
        moments = [datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, 0, 250, tzinfo=UTC)]
        with db.write() as conn:
            conn.execute(insert(mails), [{
                "id": f"m{i}", "status": "sending", "priority": 2, "subject": "s", "receiver": "r",
                "message_id": "<m@x>", "queued_at": at, "attempts": 1, "updated_at": at, "size_bytes": 1,
                "has_from": False} for i, at in enumerate(moments)])
            rows = [{"mail_id": f"m{i}", "number": 1, "started_at": at, "duration_ms": 5, "server_name": "s",
                     "outcome": "sent", "code": 250, "reply": "OK", "uncertain": False} for i, at in enumerate(moments)]
            conn.execute(insert(mail_attempts), rows)
            BulkStatement(insert(mail_attempts)).execute(conn, rows)
        with db.read() as conn:
            raw = conn.execute(text("SELECT mail_id, started_at, code FROM mailroom_mail_attempts ORDER BY id")).all()
            by_orm = conn.execute(select(mail_attempts.c.started_at).order_by(mail_attempts.c.id)).scalars().all()
        assert raw[:2] == raw[2:]  # the same stored values, byte for byte
        assert by_orm == moments + moments
    finally:
        db.dispose()


@given(st.datetimes(timezones=st.timezones()))
def test_the_sqlite_datetime_shortcut_writes_what_the_two_type_layers_write(moment: datetime) -> None:
    dialect = sqlite.dialect()
    layered = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert layered is not None
    assert sqlite_utc_text(moment) == layered(moment)


def test_the_sqlite_datetime_shortcut_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(datetime(2026, 3, 1, 12, 0))
