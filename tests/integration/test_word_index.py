"""Substring searches from an index (#12): SQLite's FTS5 word index, filled off the enqueue path, and
PostgreSQL's trigram GIN indexes find exactly what a scan of every mail finds, before and after indexing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, Security, ServerSettings
from mailroom.adapters.storage import log_queries, word_index
from mailroom.adapters.storage.tables import mails
from mailroom.domain.log import LogQuery
from mailroom.domain.log_search import parse_search
from tests.support.smtp_servers import SmtpServerHandle

SEARCHES = ["invoice", "INVOICE", "in", '"invoice 1"', "subject:voic", "from:shop@", "from:billing", "to:ann",
            "to:@example", "to:ann@example.org", "to:@example.org", "tag:billing", "tag:bill", "tag:dunning",
            "Grüße", "GRÜSSE", "100%", "a_b", '"say ""hi"""', "-invoice", "invoice -tag:billing", "nothing-like-it",
            "ann status:queued", "ex"]


@pytest.fixture
def room(database_url: str, secret_key: str) -> Iterator[Mailroom]:
    yield from _filled(database_url, secret_key)


@pytest.fixture
def sqlite_room(sqlite_url: str, secret_key: str) -> Iterator[Mailroom]:
    yield from _filled(sqlite_url, secret_key)


def _filled(url: str, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=url, secret_key=secret_key, log_count_limit=5) as room:
        mails_ = []
        for i in range(24):
            mails_.append(Mail(
                to=f"ann{i}@example.org" if i % 3 else f"bob{i}@example.org.uk",
                cc="joann@example.org" if i % 5 == 0 else None,
                sender="Shop <shop@example-shop.com>" if i % 2 else "billing@example-shop.com",
                subject=["Invoice 1", "Your invoice 12", "Über uns", "Grüße", "100% off", "a_b and ab",
                         'say "hi"', "news"][i % 8],
                text="t", tags=[["billing"], ["billing", "dunning"], [], ["news"]][i % 4]))
        room.send_mails(SYSTEM, mails_)
        yield room


def _found(room: Mailroom, search: str) -> list[str]:
    page = room.search_mail_log(SYSTEM, parse_search(search, LogQuery(limit=100)))
    return [m.id for m in page.items]


def _totals(room: Mailroom, search: str) -> tuple[int | None, bool]:
    page = room.search_mail_log(SYSTEM, parse_search(search, LogQuery(limit=2)))
    return page.total, page.total_exact


def test_a_search_finds_the_same_mails_before_and_after_they_are_indexed(room: Mailroom,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    before = {search: (_found(room, search), _totals(room, search)) for search in SEARCHES}
    assert len(before["invoice"][0]) == 6 and before["invoice"][1] == (5, False)
    assert len(before["tag:billing"][0]) == 12 and len(before["tag:dunning"][0]) == 6
    assert before["tag:bill"][0] == []  # a tag is matched whole
    assert before["nothing-like-it"][0] == []
    indexed = room.store.index_for_search(10) + room.store.index_for_search(100)
    assert indexed == (0 if room.database.is_postgres else 24)
    assert room.store.index_for_search(100) == 0
    after = {search: (_found(room, search), _totals(room, search)) for search in SEARCHES}
    assert after == before
    # Beyond ASCII the index folds case as PostgreSQL's lower() does; SQLite's own lower(), used for the mails not
    # indexed yet, folds ASCII only.
    assert len(_found(room, "über")) == 3
    # A term in many mails walks the log instead of the index: the same answer.
    monkeypatch.setattr(log_queries, "COMMON", 2)
    assert {search: (_found(room, search), _totals(room, search)) for search in SEARCHES} == before
    # Half indexed, half not: still the same.
    monkeypatch.setattr(log_queries, "COMMON", 2_000)
    room.send_mails(SYSTEM, [Mail(to="ann99@example.org", subject="Invoice late", text="t", tags=["billing"])])
    assert len(_found(room, "invoice")) == 7 and len(_found(room, "tag:billing")) == 13


def test_deleted_mails_leave_the_word_index(sqlite_room: Mailroom) -> None:
    room = sqlite_room
    room.store.index_for_search(100)
    gone = _found(room, "invoice")[:2]
    room.delete_mails(SYSTEM, gone)
    with room.database.read() as conn:
        rows = conn.execute(select(func.count()).select_from(word_index.words)).scalar_one()
    assert rows == 22
    assert not set(gone) & set(_found(room, "invoice"))
    # The search_key of a mail that is not in the index any more must not find another one's row.
    assert len(_found(room, "invoice")) == 4


def test_the_word_index_is_not_written_by_send_mail(sqlite_room: Mailroom) -> None:
    room = sqlite_room
    with room.database.read() as conn:
        assert conn.execute(select(func.count()).select_from(word_index.words)).scalar_one() == 0
        assert conn.execute(select(func.count()).where(mails.c.search_key.is_(None))).scalar_one() == 24
    room.store.index_for_search(100)
    with room.database.read() as conn:
        keys = conn.execute(select(mails.c.search_key)).scalars().all()
    assert sorted(keys) == list(range(1, 25))


def test_a_sender_lent_by_the_server_is_what_the_index_finds(database_url: str, secret_key: str,
                                                           smtp_server: SmtpServerHandle) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Hello", text="t"))  # no server: no From
        room.store.index_for_search(100)
        assert _found(room, "from:shop.example") == []
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="Shop <app@shop.example>"))
        room.deliver_pending()
        smtp_server.wait_for(1)
        assert _found(room, "from:shop.example") == [mail_id]  # from the backlog: out of the index until
        assert room.store.index_for_search(100) == (0 if room.database.is_postgres else 1)
        assert _found(room, "from:shop.example") == [mail_id]  # ... it is indexed again, with its new sender


def test_the_word_index_survives_a_vacuum(sqlite_room: Mailroom) -> None:
    """Keyed on search_key, a column of its own: a VACUUM renumbers the rowids of mailroom_mails (no INTEGER
    PRIMARY KEY), which must not send the index to other mails."""
    room = sqlite_room
    room.store.index_for_search(100)
    room.delete_mails(SYSTEM, _found(room, "news")[:3])  # gaps in the rowids for the VACUUM to close
    before = {search: _found(room, search) for search in SEARCHES}
    pooled = room.database.engine.raw_connection()  # VACUUM runs outside any transaction
    try:
        pooled.dbapi_connection.execute("VACUUM")  # type: ignore[union-attr]
    finally:
        pooled.close()
    assert {search: _found(room, search) for search in SEARCHES} == before
