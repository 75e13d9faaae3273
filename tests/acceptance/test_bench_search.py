"""bench/search.py's generator: the rows it writes are rows mailroom could have written, and every query kind
finds what it looks for. Timings are not checked."""

from __future__ import annotations

import importlib.util
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import inspect, select

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.mail_store import SqlMailStore
from mailroom.adapters.storage.tables import DIALECT_SEARCH_OBJECTS, mail_recipients, mails
from mailroom.domain.outbox import MailStatus

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "search.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_generated_log_is_one_mailroom_could_have_written(database_url: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bench = load()
    corpus = bench.Corpus.make()
    end = datetime.now(UTC).replace(microsecond=0)
    database = Database(database_url)
    try:
        bench.fill(database, corpus, 600, end)
        printed = capsys.readouterr().out
        assert re.search(r"^generated 600 mails \(\d+ recipients\) in [\d.]+ s", printed, re.M), printed
        assert re.search(r"^(sqlite|postgresql) filled in [\d.]+ s", printed, re.M), printed

        with database.read() as conn:
            if database.dialect == "sqlite":  # the fill's big page cache must not flatter the searches
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
            rows = conn.execute(select(mails).order_by(mails.c.id)).all()
            recipients = conn.execute(select(mail_recipients).order_by(mail_recipients.c.mail_id,
                                                                       mail_recipients.c.position)).all()
        inspector = inspect(database.engine)
        assert not [t for t in inspector.get_table_names() if t.startswith("bench_")]
        for table in (mails, mail_recipients):  # dropped for the inserts, and back
            if database.dialect == "sqlite":  # the inspector leaves out SQLite's expression indexes
                with database.read() as conn:
                    found = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                                     "sql IS NOT NULL AND tbl_name = ?", (table.name,)).scalars())
            else:
                found = {ix["name"] for ix in inspector.get_indexes(table.name)}
            assert {ix.name for ix in table.indexes} == found - DIALECT_SEARCH_OBJECTS
        claim = next(ix for ix in inspector.get_indexes(mails.name) if ix["name"] == "ix_mailroom_mails_claim")
        assert "deferred" in " ".join(str(where) for where in claim["dialect_options"].values()), claim  # partial
        assert len(rows) == 600
        assert all(re.fullmatch(r"[0-9a-f]{32}", row.id) for row in rows)
        queued = [row.queued_at for row in rows]
        assert queued == sorted(queued), "id order is queued_at order"
        assert end - timedelta(days=90) <= queued[0] and queued[-1] <= end
        by_mail: dict[str, list[str]] = {}
        for r in recipients:
            by_mail.setdefault(r.mail_id, []).append(r.email)
        assert all(row.receiver == ", ".join(by_mail[row.id]).lower() for row in rows)
        assert 600 < len(recipients) < 900
        statuses = [MailStatus(row.status) for row in rows]
        assert statuses.count(MailStatus.SENT) > 450
        assert {MailStatus.FAILED, MailStatus.QUEUED} <= set(statuses)
        assert 60 < sum(row.tags is not None for row in rows) < 200
        assert {row.server_name for row in rows} == {*bench.SERVERS, None}

        store = SqlMailStore(database)
        queries = bench.Queries(corpus, 600, end)
        totals = {kind: store.search(queries.build(kind)).total for kind in bench.KINDS}
        assert all(totals[kind] for kind in ("exact recipient (to:)", "recipient domain", "sender", "tag",
                                             "server")), totals
        assert totals["landing page"] == 600 and totals["no match"] == 0
        # SQLite: the word index holds every mail, as the worker would have left it; none waits to be indexed.
        assert store.index_for_search(1000) == 0
        with_index = {kind: [m.id for m in store.search(bench.Queries(corpus, 600, end).build(kind)).items]
                      for kind in ("subject words", "rare subject word", "tag", "sender")}
        assert all(with_index[kind] for kind in ("subject words", "tag", "sender")), with_index
        last = store.search(queries.build("last page"))
        assert len(last.items) == 50 and last.items[-1].id == rows[0].id
    finally:
        database.dispose()
