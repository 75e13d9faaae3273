"""Confidential mails in the store, on SQLite and PostgreSQL: sealed at rest, opened only for the worker,
never read back, dropped once final; and the files holding the database and the key are private."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from mailroom import SYSTEM, InvalidTransition, Mail, Mailroom, MailStatus
from mailroom.adapters.storage.tables import mail_contents
from mailroom.domain.log import LogQuery, SearchTerm, TermField
from mailroom.domain.outbox import DeliveryAttempt
from mailroom.errors import ConfidentialContent, Text
from mailroom.ports import ClaimedMail, DeliveryResult

SECRET = "the-code-Zq8xY3"


@pytest.fixture
def room(database_url: str, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        yield room


def _secret_mail(**changes: object) -> Mail:
    return Mail(to="ann@example.org", subject="Your code", text=f"use {SECRET}", html=f"<p>{SECRET}</p>",
                confidential=True, **changes)  # type: ignore[arg-type]


def _stored(room: Mailroom, mail_id: str) -> bytes | None:
    with room.database.read() as conn:
        found: bytes | None = conn.execute(
            select(mail_contents.c.message).where(mail_contents.c.mail_id == mail_id)).scalar()
        return found


def _claim(room: Mailroom) -> list[ClaimedMail]:
    return room.store.claim(worker_id="w", limit=10, now=datetime.now(UTC) + timedelta(seconds=1), lease_seconds=60)


def _result(claim: ClaimedMail, status: MailStatus) -> DeliveryResult:
    code = {MailStatus.SENT: 250, MailStatus.DEFERRED: 451, MailStatus.FAILED: 550}[status]
    now = datetime.now(UTC)
    return DeliveryResult(
        mail_id=claim.id, claim_token=claim.claim_token, status=status,
        next_attempt_at=now if status is MailStatus.DEFERRED else None, error=None if code == 250 else Text("no"),
        attempt=DeliveryAttempt(number=1, started_at=now, duration_ms=1, server_name="relay", outcome=status,
                                code=code, reply="ok"),
        recipients={r: ("accepted" if code == 250 else "refused", code, "ok") for r in claim.recipients})


def test_the_content_is_sealed_at_rest_and_opened_only_for_the_worker(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    at_rest = _stored(room, mail_id)
    assert at_rest is not None and SECRET.encode() not in at_rest and b"Your code" not in at_rest

    mail = room.get_mail(SYSTEM, mail_id)
    assert mail.confidential and mail.subject == "Your code" and mail.has_content
    with pytest.raises(ConfidentialContent, match=f"the content of confidential mail '{mail_id}' is hidden"):
        room.log.raw_message(SYSTEM, mail_id)

    [claim] = _claim(room)
    assert claim.message is not None and SECRET.encode() in claim.message


def test_no_search_matches_the_content(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    for query in (LogQuery(text=SECRET), LogQuery(terms=(SearchTerm(TermField.TEXT, SECRET),)),
                  LogQuery(terms=(SearchTerm(TermField.SUBJECT, "code"), SearchTerm(TermField.TEXT, "use"))),
                  LogQuery(text="<p>")):
        assert room.search_mail_log(SYSTEM, query).total == 0, query
    # The metadata is searchable as for any mail.
    assert [m.id for m in room.search_mail_log(SYSTEM, text="your code").items] == [mail_id]


@pytest.mark.parametrize("status", [MailStatus.SENT, MailStatus.FAILED])
def test_the_content_is_dropped_once_the_mail_is_final(room: Mailroom, status: MailStatus) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    ordinary = room.send_mail(SYSTEM, Mail(to="bob@example.org", subject="plain", text="kept"))
    claims = _claim(room)
    room.store.record([_result(c, status) for c in claims])

    assert _stored(room, mail_id) is None
    assert room.get_mail(SYSTEM, mail_id).has_content is False
    assert _stored(room, ordinary) is not None  # only confidential contents go
    if status is MailStatus.FAILED:
        with pytest.raises(InvalidTransition, match="confidential") as refused:
            room.retry_mail(SYSTEM, mail_id)
        assert "send it again" in str(refused.value)


def test_a_deferred_mail_keeps_its_sealed_content_for_the_next_attempt(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    room.store.record([_result(c, MailStatus.DEFERRED) for c in _claim(room)])
    assert _stored(room, mail_id) is not None
    [again] = _claim(room)
    assert again.message is not None and SECRET.encode() in again.message


def test_a_result_whose_claim_was_lost_drops_nothing(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    [claim] = _claim(room)
    # Another worker took the mail over after the lease: the first worker's late answer must not take the
    # content away from the worker now delivering it.
    stale = ClaimedMail(id=claim.id, claim_token="someone-else", message=None, envelope_sender=None,
                        recipients=claim.recipients, smtp_hint=None, attempts=1, expires_at=None,
                        has_from_header=False)
    room.store.record([_result(stale, MailStatus.SENT)])
    assert _stored(room, mail_id) is not None


def test_cancelling_drops_the_content(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, _secret_mail())
    room.cancel_mail(SYSTEM, mail_id)
    assert _stored(room, mail_id) is None
    with pytest.raises(InvalidTransition, match="confidential"):
        room.retry_mail(SYSTEM, mail_id)


def test_sealed_contents_survive_a_key_rotation(database_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with Mailroom(database_url=database_url, secret_key=old) as room:
        mail_id = room.send_mail(SYSTEM, _secret_mail())
    with Mailroom(database_url=database_url, secret_key=f"{new},{old}") as room:
        [claim] = _claim(room)
        assert claim.id == mail_id and claim.message is not None and SECRET.encode() in claim.message


def test_a_sealed_content_no_key_opens_waits_in_the_queue_without_blocking_the_others(database_url: str) -> None:
    with Mailroom(database_url=database_url, secret_key=Fernet.generate_key().decode()) as room:
        sealed = room.send_mail(SYSTEM, _secret_mail())
    with Mailroom(database_url=database_url, secret_key=Fernet.generate_key().decode()) as room:
        ordinary = room.send_mail(SYSTEM, Mail(to="bob@example.org", subject="plain", text="kept"))
        assert [c.id for c in _claim(room)] == [ordinary]
        waiting = room.get_mail(SYSTEM, sealed)
        assert waiting.status is MailStatus.QUEUED and waiting.attempts == 0
        assert waiting.last_error is not None and "cannot be decrypted" in waiting.last_error
        assert _stored(room, sealed) is not None
