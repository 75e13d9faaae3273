"""Migrations give exactly the schema of the tables module, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Executable, MetaData, insert, inspect, select, text

from mailroom.adapters.storage.claiming import LEASE
from mailroom.adapters.storage.database import MIGRATIONS, Database
from mailroom.adapters.storage.log_queries import LogSearch
from mailroom.adapters.storage.mail_store import CONTENT_TO_PURGE, MAILS_TO_PURGE, SqlMailStore
from mailroom.adapters.storage.tables import DIALECT_SEARCH_OBJECTS, mails, metadata
from mailroom.domain.log import LogQuery, PageCursor, SearchTerm, SortKey, TermField
from mailroom.domain.log_search import parse_search
from mailroom.domain.mail import Priority


def test_migrations_match_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()  # idempotent: a second start changes nothing
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "mailroom_alembic_version",
                                                             "include_name": _not_dialect_search_object})
            assert compare_metadata(context, metadata) == []
            assert "mailroom_mails" in inspect(conn).get_table_names()
    finally:
        db.dispose()


def _not_dialect_search_object(name: str | None, _type: str, _parents: object) -> bool:
    return name not in DIALECT_SEARCH_OBJECTS


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()


def _upgrade(db: Database, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def test_0005_moves_the_envelope_beside_the_content_and_keeps_queued_mail_deliverable(database_url: str) -> None:
    """Mails stored before 0005 are delivered to the same recipients after it, and a dropped content
    stays dropped; downgrading and upgrading again gives the same."""
    db = Database(database_url)
    try:
        _upgrade(db, "0004")
        old = MetaData()
        old.reflect(db.engine, only=["mailroom_mails", "mailroom_mail_recipients", "mailroom_mail_contents"])
        old_mails, old_recipients, old_contents = (old.tables[f"mailroom_{name}"]
                                                   for name in ("mails", "mail_recipients", "mail_contents"))
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            for mail_id, status in (("queued1", "queued"), ("sent1", "sent")):
                conn.execute(insert(old_mails).values(
                    id=mail_id, status=status, priority=2, subject="s", receiver="r", message_id="<m@x>",
                    queued_at=now, next_attempt_at=now - timedelta(seconds=1), attempts=0, updated_at=now,
                    size_bytes=10, has_from=False, finished_at=now if status == "sent" else None))
                conn.execute(insert(old_recipients), [
                    {"mail_id": mail_id, "position": position, "kind": "to", "email": email, "name": "",
                     "status": "pending"} for position, email in enumerate(["b@example.org", "a@example.org"])])
            conn.execute(insert(old_contents).values(mail_id="queued1", message=b"Subject: s\r\n\r\nx\r\n"))

        for _ in range(2):
            db.migrate()
            store = SqlMailStore(db)
            assert store.get("sent1").has_content is False
            assert store.get("queued1").has_content is True
            claims = store.claim(worker_id="w", limit=10, now=now, lease_seconds=60)
            assert [(c.id, c.recipients) for c in claims] == [("queued1", ("b@example.org", "a@example.org"))]
            store.release(claims, retry_at=now - timedelta(seconds=1))
            _upgrade(db, "0004", down=True)
    finally:
        db.dispose()


def _plan(conn: Connection, statement: Executable, values: dict[str, Any]) -> str:
    compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params(values)
    if conn.dialect.name == "sqlite":
        positional = tuple(str(params[name]) for name in compiled.positiontup or ())
        return "\n".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional))
    # The tables are tiny here, so the planner's choice proves nothing: ask whether an ordered index scan
    # is possible at all.
    for method in ("seqscan", "bitmapscan", "sort"):
        conn.exec_driver_sql(f"SET LOCAL enable_{method} = off")
    return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", params))


def test_the_claim_and_content_retention_read_their_partial_indexes(database_url: str) -> None:
    """No whole-queue scans: the worker's claim and the content purge each walk a partial index."""
    db = Database(database_url)
    try:
        db.migrate()
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            lease = {"now": now, "limit": 50, "token": "t", "lease_until": now}
            claim = _plan(conn, LEASE[Priority.NORMAL.rank], lease)
            purge = _plan(conn, CONTENT_TO_PURGE, {"finished_before": now, "limit": 50})
            purge_mails = _plan(conn, MAILS_TO_PURGE, {"status": "sent", "finished_before": now, "limit": 50})
        assert "ix_mailroom_mails_claim" in claim, claim
        assert "ix_mailroom_mails_content_finished" in purge, purge
        assert "ix_mailroom_mails_status_finished_at" in purge_mails, purge_mails
        for plan in (claim, purge, purge_mails):
            assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # read in index order, no sort
    finally:
        db.dispose()


@pytest.mark.parametrize(("query", "index"), [
    (LogQuery(server="relay"), "ix_mailroom_mails_server_name_queued_at"),
    (LogQuery(correlation_id="order-7"), "ix_mailroom_mails_correlation_id"),
])
def test_a_column_indexed_once_set_is_still_searched_from_its_index(database_url: str, query: LogQuery,
                                                                     index: str) -> None:
    """finished_at, server_name and correlation_id are indexed only where not NULL (0017: send_mail writes
    fewer B-trees); a query comparing them implies NOT NULL, and both databases can still read the index."""
    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.begin() as conn:
            matching = select(mails.c.id).where(*LogSearch(conn, query).conditions)
            if db.is_postgres:  # tiny tables: whether the partial index serves the condition at all
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                compiled = matching.compile(conn)
                plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params))
            else:
                plan = _plan(conn, matching, {})
        assert index in plan, plan
    finally:
        db.dispose()


@pytest.mark.parametrize(("value", "index"), [("ann@example.org", "ix_mailroom_mail_recipients_email_lower"),
                                              ("@example.org", "ix_mailroom_mail_recipients_domain")])
def test_a_whole_address_or_domain_search_reads_the_recipients_index(database_url: str, value: str,
                                                                      index: str) -> None:
    """`to:` with a whole address or domain: the recipients' indexes, not a scan of every mail (#12)."""
    db = Database(database_url)
    try:
        db.migrate()
        query = LogQuery(terms=(SearchTerm(TermField.RECIPIENT, value),))
        with db.engine.begin() as conn:
            plan = _plan(conn, LogSearch(conn, query).page(), {})
        assert index in plan, plan
    finally:
        db.dispose()


@pytest.mark.parametrize("search", ["invoice", "subject:invoice", "from:shop@", "to:ann", "tag:billing"])
def test_a_substring_search_reads_the_word_index(database_url: str, search: str) -> None:
    """A plain word, subject:, from:, a part of an address and tag: from an index, not a scan of every mail
    (#12): SQLite's word index and the partial index of the mails not in it yet (a rare term's page and every
    count), PostgreSQL's trigram indexes."""
    db = Database(database_url)
    try:
        db.migrate()
        query = parse_search(search)
        with db.engine.begin() as conn:
            if db.is_postgres:
                # Tiny tables: whether a trigram index can serve the condition at all, with nothing else allowed.
                for method in ("seqscan", "indexscan"):
                    conn.exec_driver_sql(f"SET LOCAL enable_{method} = off")
                page = LogSearch(conn, query).page().compile(conn)
                plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {page}", page.params))
                assert "Bitmap Index Scan on ix_mailroom_mails_" in plan and "_trigrams" in plan, plan
                return
            found = LogSearch(conn, query, with_word_index=True)
            indexed, not_yet = (_plan(conn, part, {}) for part in found.count_parts())
            page = _plan(conn, found.page(), {})
            for plan in (page, indexed):
                assert "mailroom_mail_words VIRTUAL TABLE INDEX" in plan, plan
            for plan in (page, not_yet):
                assert "ix_mailroom_mails_search_backlog" in plan, plan
    finally:
        db.dispose()


def test_a_page_after_a_cursor_starts_in_the_index_not_at_its_top(database_url: str) -> None:
    """Keyset paging: the page after a cursor is a range of the queued_at index from the cursor on."""
    db = Database(database_url)
    try:
        db.migrate()
        cursor = PageCursor(SortKey.QUEUED_AT, True, datetime(2024, 5, 1, tzinfo=UTC), "0" * 32).encode()
        with db.engine.begin() as conn:
            plan = _plan(conn, LogSearch(conn, LogQuery(after=cursor)).page(), {})
        assert "ix_mailroom_mails_queued_at" in plan, plan
        assert "queued_at<" in plan.replace(" ", "") or "Index Cond: (queued_at <=" in plan, plan
    finally:
        db.dispose()


def test_0014_gives_the_recipients_already_stored_their_domain(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        _upgrade(db, "0013_recipient_lookup", down=True)
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO mailroom_mails (id, status, priority, subject, receiver, message_id, "
                              "queued_at, attempts, updated_at, size_bytes, has_from, has_content, confidential) "
                              "VALUES ('m1', 'sent', 2, 's', 'r', '<m@x>', :now, 1, :now, 1, false, false, false)"),
                         {"now": now})
            for position, email in enumerate(["Ann@Example.ORG", '"odd@part"@Mail.Example.net']):
                conn.execute(text("INSERT INTO mailroom_mail_recipients (mail_id, position, kind, email, name, "
                                  "status) VALUES ('m1', :p, 'to', :e, '', 'accepted')"), {"p": position, "e": email})
        db.migrate()
        with db.engine.connect() as conn:
            domains = conn.execute(text("SELECT domain FROM mailroom_mail_recipients ORDER BY position")).scalars()
            assert list(domains) == ["example.org", "mail.example.net"]
    finally:
        db.dispose()


@pytest.mark.parametrize(("before", "tables"), [
    ("0008", {"mailroom_idempotency_keys"}),
    ("0010_idempotency_keys", {"mailroom_rate_limits", "mailroom_rate_limit_sends"}),
], ids=["0010 idempotency keys", "0011 rate limits"])
def test_a_migration_adds_its_tables_and_downgrades_cleanly(database_url: str, before: str, tables: set[str]) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        assert tables <= set(inspect(db.engine).get_table_names())
        _upgrade(db, before, down=True)
        assert not tables & set(inspect(db.engine).get_table_names())
        db.migrate()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "mailroom_alembic_version",
                                                             "include_name": _not_dialect_search_object})
            assert compare_metadata(context, metadata) == []
    finally:
        db.dispose()
