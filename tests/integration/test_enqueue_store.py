"""The outbox's insert path (one executemany per table on the DBAPI cursor) stores what the Core insert
stored, keeps a bulk all-or-nothing and translates database errors (issue #12, item 1)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from mailroom import SYSTEM, Mail, Mailroom, MailStatus
from mailroom.adapters.storage.tables import mail_contents, mail_recipients, mails
from mailroom.errors import StorageError


def test_a_bulk_is_stored_whole_with_every_column(database_url: str) -> None:
    send_at = datetime(2030, 1, 2, 3, 4, 5, 600, tzinfo=UTC)
    with Mailroom(database_url=database_url, secret_key=Fernet.generate_key().decode()) as room:
        ids = room.send_mails(SYSTEM, [
            Mail(to=["Ann <ann@example.org>"], cc="cc@example.org", bcc="bcc@example.org", subject="one",
                 text="t", sender="Shop <shop@example.org>", tags=["a", "b"], correlation_id="c-1",
                 send_at=send_at, expires_at=send_at + timedelta(days=1), priority="high"),
            Mail(to="bob@bücher.example", subject="two", html="<p>h</p>", confidential=True),
        ])
        first, second = (room.get_mail(SYSTEM, mail_id) for mail_id in ids)
        assert first.status is MailStatus.QUEUED and second.status is MailStatus.QUEUED
        assert first.has_content and second.has_content and second.confidential
        assert [(r.email, r.kind.value, r.name) for r in first.recipients] == [
            ("ann@example.org", "to", "Ann"), ("cc@example.org", "cc", ""), ("bcc@example.org", "bcc", "")]
        assert first.send_at == send_at and first.next_attempt_at == send_at
        assert first.tags == ("a", "b") and first.correlation_id == "c-1" and first.priority == "high"
        assert first.sender == "Shop <shop@example.org>"
        with room.database.read() as conn:
            row = conn.execute(select(mails.c.envelope_sender, mails.c.receiver, mails.c.size_bytes)
                               .where(mails.c.id == ids[0])).one()
            envelope, message = conn.execute(select(mail_contents.c.envelope, mail_contents.c.message)
                                             .where(mail_contents.c.mail_id == ids[0])).one()
            sealed = conn.execute(select(mail_contents.c.message).where(mail_contents.c.mail_id == ids[1])).scalar()
        assert row == ("shop@example.org", "ann@example.org, cc@example.org, bcc@example.org", len(message))
        assert envelope == "ann@example.org\ncc@example.org\nbcc@example.org"
        assert b"Subject: one" in message
        assert sealed is not None and b"<p>h</p>" not in sealed


def test_a_failing_bulk_stores_nothing_and_raises_a_storage_error(database_url: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with Mailroom(database_url=database_url, secret_key=Fernet.generate_key().decode()) as room:
        prepared = [room._send.prepare(Mail(to=f"u{i}@example.org", subject="s", text="secret body")) for i in range(3)]
        room.store.add(prepared[:1])
        with caplog.at_level(logging.INFO, logger="mailroom.storage"), pytest.raises(StorageError) as caught:
            room.store.add(prepared[1:] + prepared[:1])  # the last one is already there: the whole bulk fails
        assert caught.value.error_id
        assert "secret body" not in caplog.text, "no message content in the log"
        with room.database.read() as conn:
            assert conn.execute(select(mails.c.id)).scalars().all() == [prepared[0].id]
            assert len(conn.execute(select(mail_recipients.c.mail_id)).all()) == 1
