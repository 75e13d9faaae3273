"""Which database errors the worker waits out (StorageUnavailable) and which are plain refusals (StorageError)."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select, text

from mailroom import SYSTEM, Mail, Mailroom
from mailroom.adapters.storage import database
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import mail_recipients
from mailroom.errors import MailNotFound, StorageError, StorageUnavailable


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


def test_a_send_whose_insert_fails_midway_stores_none_of_its_mails(database_url: str, secret_key: str) -> None:
    """``send_mails`` writes on the driver's connection (Database.driver_write): a failure after some rows
    went in rolls them all back and is a plain refusal, not an outage."""
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        first, second = (room._send.prepare(Mail(to="a@example.org", subject=s, text="t", sender="me@example.org"))
                         for s in ("first", "second"))
        room.store.add([first])
        with pytest.raises(StorageError) as caught:
            room.store.add([second, first])  # `second` is inserted, then `first` breaks the primary key
        assert not isinstance(caught.value, StorageUnavailable)
        assert "error id" in str(caught.value) and "example.org" not in str(caught.value)
        with pytest.raises(MailNotFound):
            room.get_mail(SYSTEM, second.id)
        room.store.add([second])  # the connection went back to the pool in a usable state
        assert room.get_mail(SYSTEM, second.id).subject == "second"


def test_a_big_send_whose_copy_fails_midway_stores_none_of_its_mails(database_url: str, secret_key: str) -> None:
    """From 32 mails on, PostgreSQL takes a batch by COPY: a failure after rows went in rolls them all back."""
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        batch = [room._send.prepare(Mail(to=f"u{n}@example.org", subject=f"m{n}", text="t", sender="me@example.org"))
                 for n in range(40)]
        with pytest.raises(StorageError) as caught:
            room.store.add([*batch, batch[0]])  # the last row breaks the primary key
        assert not isinstance(caught.value, StorageUnavailable)
        with room.database.read() as conn:
            assert conn.execute(select(func.count()).select_from(mail_recipients)).scalar_one() == 0
        room.store.add(batch)  # the connection went back to the pool in a usable state
        stored = room.get_mail(SYSTEM, batch[39].id)
        assert stored.subject == "m39" and [r.email for r in stored.recipients] == ["u39@example.org"]
        assert stored.queued_at == batch[39].queued_at and stored.sender == "me@example.org"
        assert str(stored.last_error) == str(batch[39].last_error) and stored.tags == ()
        assert room.log.raw_message(SYSTEM, batch[39].id) == batch[39].message  # bytes through COPY unchanged
        assert room.search_mail_log(SYSTEM, text="m3").total == 11  # m3, m30..m39


def test_a_single_send_whose_last_insert_fails_stores_nothing(database_url: str, secret_key: str) -> None:
    """One mail goes in as one statement on PostgreSQL (three INSERTs in CTEs, in autocommit): a failure in its
    last INSERT must leave no mail and no recipient behind, as a transaction would."""
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        mail = room._send.prepare(Mail(to=["a@example.org", "b@example.org"], subject="s", text="t",
                                       sender="me@example.org"))
        with room.database.write() as conn:  # the content's INSERT, the last one, is refused
            if room.database.is_postgres:
                conn.exec_driver_sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                                     "$$ BEGIN RAISE EXCEPTION 'refused'; END $$")
                conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON mailroom_mail_contents "
                                     "FOR EACH ROW EXECUTE FUNCTION refuse()")
            else:
                conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON mailroom_mail_contents "
                                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(StorageError) as caught:
            room.store.add([mail])
        assert not isinstance(caught.value, StorageUnavailable)
        with pytest.raises(MailNotFound):
            room.get_mail(SYSTEM, mail.id)
        with room.database.read() as conn:
            assert conn.execute(select(func.count()).select_from(mail_recipients)).scalar_one() == 0
        with room.database.write() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse" + (" ON mailroom_mail_contents" if room.database.is_postgres
                                                          else ""))
        room.store.add([mail])  # the connection went back to the pool in a usable state
        assert [r.email for r in room.get_mail(SYSTEM, mail.id).recipients] == ["a@example.org", "b@example.org"]


@pytest.mark.postgres
def test_a_connection_lost_inside_a_driver_write_is_an_outage_and_not_reused(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        db.migrate()
        with pytest.raises(StorageUnavailable), db.driver_write() as transaction:
            pid = transaction.connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            with db.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            transaction.connection.execute("SELECT 1")
        with db.driver_write() as transaction:  # a new connection, not the dead one
            assert transaction.connection.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    finally:
        db.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged_again(postgres_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A ping is a round trip: before every send_mail it was a third of the time on PostgreSQL (#12). A
    connection that was in use less than PING_AFTER_IDLE_SECONDS ago is taken as it is."""
    db = Database(postgres_url)
    pings: list[object] = []
    real_ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    try:
        db.migrate()
        for _ in range(5):
            with db.driver_write() as transaction:
                transaction.connection.execute("SELECT 1")
        assert len(pings) <= 1  # the first checkout of a connection the pool had kept
    finally:
        db.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_it_is_used(postgres_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    db = Database(postgres_url)
    try:
        db.migrate()
        with db.driver_write() as transaction:
            pid = transaction.connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        other = Database(postgres_url)  # the server ends the pooled connection while nobody uses it
        with other.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.dispose()
        with db.driver_write() as transaction:
            assert transaction.connection.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    finally:
        db.dispose()
