"""send_mail, the log use cases and retention against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from mailroom import (
    SYSTEM,
    Attachment,
    AttachmentTooLarge,
    InvalidAddress,
    InvalidHeader,
    InvalidInput,
    InvalidTransition,
    Mail,
    MailNotFound,
    Mailroom,
    MailStatus,
    NoRecipients,
    PermissionDenied,
    SendMailRequested,
    Subject,
)
from mailroom.adapters.storage.mail_store import SqlMailStore
from mailroom.adapters.storage.tables import mail_contents, mail_recipients, mails
from mailroom.domain.log_search import parse_search
from mailroom.domain.outbox import DeliveryAttempt
from mailroom.domain.permissions import READ_MAIL
from mailroom.errors import Text
from mailroom.ports import DeliveryResult


@pytest.fixture
def mailroom(database_url: str, tmp_path: object, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=database_url, secret_key=secret_key, max_attachment_bytes=1000) as room:
        yield room


def _count(room: Mailroom, table: object) -> int:
    with room.database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_send_mail_stores_a_queued_record(mailroom: Mailroom) -> None:
    mail_id = mailroom.send_mail(SYSTEM, Mail(to="Ann <ann@example.org>", cc="cc@example.org",
                                              bcc="hidden@example.org", subject="Hello", text="Hi",
                                              tags=["welcome"], correlation_id="order-7"))
    stored = mailroom.get_mail(SYSTEM, mail_id)
    assert stored.status is MailStatus.QUEUED
    assert stored.subject == "Hello"
    assert [(r.email, r.kind.value) for r in stored.recipients] == [
        ("ann@example.org", "to"), ("cc@example.org", "cc"), ("hidden@example.org", "bcc")]
    assert stored.tags == ("welcome",) and stored.correlation_id == "order-7"
    assert stored.message_id.startswith("<") and stored.queued_at.tzinfo is not None
    raw = mailroom.log.raw_message(SYSTEM, mail_id)
    assert raw is not None and b"hidden@example.org" not in raw


@pytest.mark.parametrize(("build", "error"), [
    (lambda: Mail(to="not-an-address", subject="s", text="t"), InvalidAddress),
    (lambda: Mail(to="a@example.org", subject="a\r\nBcc: x@example.org", text="t"), InvalidHeader),
    (lambda: Mail(subject="s", text="t"), NoRecipients),
])
def test_invalid_mails_cannot_even_be_built(build: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()  # type: ignore[operator]


def test_oversized_attachment_is_refused_and_nothing_stored(mailroom: Mailroom) -> None:
    big = Mail(to="a@example.org", subject="s", text="t", attachments=[Attachment(filename="big.bin",
                                                                                   content=b"x" * 1001)])
    with pytest.raises(AttachmentTooLarge, match=r"big\.bin"):
        mailroom.send_mail(SYSTEM, big)
    ok = Mail(to="a@example.org", subject="s", text="t")
    with pytest.raises(AttachmentTooLarge):
        mailroom.send_mails(SYSTEM, [ok, big])  # bulk is all or nothing
    assert _count(mailroom, mails) == 0
    assert _count(mailroom, mail_recipients) == 0
    assert _count(mailroom, mail_contents) == 0


def test_permissions_are_checked(mailroom: Mailroom) -> None:
    reader = Subject.user("reader", [READ_MAIL])
    with pytest.raises(PermissionDenied):
        mailroom.send_mail(reader, Mail(to="a@example.org", text="t"))
    mail_id = mailroom.send_mail(SYSTEM, Mail(to="a@example.org", text="t"))
    assert mailroom.get_mail(reader, mail_id).id == mail_id
    for action in (mailroom.retry_mail, mailroom.cancel_mail):
        with pytest.raises(PermissionDenied):
            action(reader, mail_id)
    with pytest.raises(PermissionDenied):
        mailroom.delete_mails(reader, [mail_id])
    with pytest.raises(PermissionDenied):
        mailroom.get_mail(Subject.user("nobody", []), mail_id)


def test_bulk_send_and_search(mailroom: Mailroom) -> None:
    ids = mailroom.send_mails(SYSTEM, [
        Mail(to=f"user{i}@example.org", subject=f"Invoice {i}" if i % 2 else f"Newsletter {i}", text="t",
             tags=["billing"] if i % 2 else [])
        for i in range(30)
    ])
    assert len(set(ids)) == 30
    page = mailroom.search_mail_log(SYSTEM, text="invoice", limit=5)
    assert page.total == 15 and len(page.items) == 5
    assert mailroom.search_mail_log(SYSTEM, recipient="user7@").total == 1
    assert mailroom.search_mail_log(SYSTEM, tag="billing").total == 15
    assert mailroom.search_mail_log(SYSTEM, subject="newsletter 2").total == 6  # 2, 20..28 even
    by_subject = mailroom.search_mail_log(SYSTEM, sort="subject", descending=False, limit=3)
    assert [m.subject for m in by_subject.items] == ["Invoice 1", "Invoice 11", "Invoice 13"]
    second = mailroom.search_mail_log(SYSTEM, sort="subject", descending=False, limit=3, offset=3)
    assert second.items[0].subject == "Invoice 15"
    assert mailroom.search_mail_log(SYSTEM, statuses=frozenset({MailStatus.SENT})).total == 0
    future = datetime.now(UTC) + timedelta(hours=1)
    assert mailroom.search_mail_log(SYSTEM, queued_after=future).total == 0
    assert mailroom.search_mail_log(SYSTEM, queued_before=future).total == 30
    assert mailroom.search_mail_log(SYSTEM, text="100%_").total == 0  # LIKE wildcards are escaped


def test_to_with_a_whole_address_finds_that_recipient_and_a_part_any_containing_it(mailroom: Mailroom) -> None:
    mailroom.send_mails(SYSTEM, [Mail(to="Ann.Lee@Example.org", subject="exact", text="t"),
                                 Mail(to="jo@example.org", cc="ann.lee@example.org", subject="cc", text="t"),
                                 Mail(to="joann.lee@example.org", subject="longer", text="t"),
                                 Mail(to="ann.lee@example.org.uk", subject="other domain", text="t")])

    def subjects(query: str) -> set[str]:
        return {m.subject for m in mailroom.search_mail_log(SYSTEM, terms=parse_search(query).terms).items}

    assert subjects("to:ann.lee@example.org") == {"exact", "cc"}  # any case, any kind of recipient
    assert subjects("to:ANN.LEE@EXAMPLE.ORG") == {"exact", "cc"}
    assert subjects("-to:ann.lee@example.org") == {"longer", "other domain"}
    assert subjects("to:ann.lee") == {"exact", "cc", "longer", "other domain"}  # a part: any containing it
    assert subjects("to:@EXAMPLE.org") == {"exact", "cc", "longer"}  # a whole domain: anyone at exactly that one
    assert subjects("-to:@example.org") == {"other domain"}
    assert subjects("to:@example") == {"exact", "cc", "longer", "other domain"}  # a part of a domain
    assert mailroom.search_mail_log(SYSTEM, recipient="ann.lee@example.org").total == 2


def test_cancel_retry_delete(mailroom: Mailroom) -> None:
    mail_id = mailroom.send_mail(SYSTEM, Mail(to="a@example.org", text="t"))
    # Whole sentences: the refusal once ended "...and only failed or cancelled mails can be".
    with pytest.raises(InvalidTransition, match=r"it is queued, and only failed, cancelled or deferred mails can "
                                                r"be retried$"):
        mailroom.retry_mail(SYSTEM, mail_id)
    assert mailroom.cancel_mail(SYSTEM, mail_id).status is MailStatus.CANCELLED
    with pytest.raises(InvalidTransition, match=r"it is cancelled, and only queued or deferred mails can be "
                                                r"cancelled$"):
        mailroom.cancel_mail(SYSTEM, mail_id)
    assert mailroom.retry_mail(SYSTEM, mail_id).status is MailStatus.QUEUED
    assert mailroom.delete_mails(SYSTEM, [mail_id]) == 1
    with pytest.raises(MailNotFound):
        mailroom.get_mail(SYSTEM, mail_id)
    assert _count(mailroom, mail_recipients) == 0


def test_event_bus_enqueues_as_system(mailroom: Mailroom) -> None:
    mailroom.events.publish(SendMailRequested(to=["a@example.org"], subject="From an event", text="t",
                                              attachments={"a.txt": b"hello"}))
    page = mailroom.search_mail_log(SYSTEM)
    assert [m.subject for m in page.items] == ["From an event"]
    assert not page.items[0].confidential


def test_an_event_can_ask_for_a_confidential_mail(mailroom: Mailroom) -> None:
    mailroom.events.publish(SendMailRequested(to=["a@example.org"], subject="Your code", text="123456",
                                              confidential=True))
    [mail] = mailroom.search_mail_log(SYSTEM).items
    assert mail.confidential


def test_staging_redirects_and_records_original_recipients(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key, staging_redirect_to="qa@test.example",
                  staging_allowed_domains=("corp.example",)) as room:
        mail_id = room.send_mail(SYSTEM, Mail(to=["boss@corp.example", "customer@real.example"], text="t"))
        stored = room.get_mail(SYSTEM, mail_id)
    assert [r.email for r in stored.recipients] == ["boss@corp.example", "qa@test.example"]
    assert stored.original_recipients == ("boss@corp.example", "customer@real.example")


def test_retention_purges_in_batches_and_drops_content_first(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key, keep_sent_days=10, keep_content_days=1,
                  retention_batch_size=3) as room:
        ids = room.send_mails(SYSTEM, [Mail(to="a@example.org", text=str(i)) for i in range(8)])
        now = datetime.now(UTC)
        with room.database.write() as conn:
            for i, mail_id in enumerate(ids):
                finished = now - timedelta(days=20 if i < 4 else 2)
                conn.execute(update(mails).where(mails.c.id == mail_id).values(
                    status="sent", finished_at=finished, sent_at=finished))
        purge = room.create_worker()._purge
        assert purge is not None
        rounds = []
        while (n := purge.run_batch()) > 0:
            rounds.append(n)
        assert max(rounds) <= 6  # batch size 3, per kind
        remaining = room.search_mail_log(SYSTEM)
        assert remaining.total == 4  # sent 2 days ago: kept, content dropped
        assert all(not room.get_mail(SYSTEM, m.id).has_content for m in remaining.items)
        assert room.log.raw_message(SYSTEM, remaining.items[0].id) is None


def test_a_claim_stops_at_its_byte_budget_and_gives_the_rest_back_unchanged(database_url: str,
                                                                           secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        big = "x" * 5000
        ids = room.send_mails(SYSTEM, [Mail(to="a@example.org", subject=str(i), text=big) for i in range(4)])
        store = SqlMailStore(room.database)
        size = store.get(ids[0]).size_bytes
        now = datetime.now(UTC) + timedelta(seconds=1)

        claims = store.claim(worker_id="w", limit=4, now=now, lease_seconds=60, max_bytes=2 * size + size // 2)
        assert [c.id for c in claims] == ids[:2]
        rest = [store.get(mail_id) for mail_id in ids[2:]]
        assert [(m.status, m.attempts) for m in rest] == [(MailStatus.QUEUED, 0)] * 2

        # The first mail comes whatever its size, so a mail larger than the budget still goes out.
        one = store.claim(worker_id="w", limit=4, now=now, lease_seconds=60, max_bytes=10)
        assert [c.id for c in one] == ids[2:3] and one[0].message is not None


def _deferred(room: Mailroom, *recipients: str, answers: dict[str, str]) -> str:
    """A mail after one attempt that some recipients accepted and others deferred, due again in an hour."""
    mail_id = room.send_mail(SYSTEM, Mail(to=list(recipients), subject="s", text="t", sender="me@example.org"))
    [claim] = room.store.claim(worker_id="w", limit=1, now=datetime.now(UTC) + timedelta(seconds=1),
                               lease_seconds=60)
    room.store.record([DeliveryResult(
        mail_id=mail_id, claim_token=claim.claim_token, status=MailStatus.DEFERRED,
        next_attempt_at=datetime.now(UTC) + timedelta(hours=1), error=Text("451 4.7.1 try again later"),
        recipients={email: (state, 250 if state == "accepted" else 451, "reply") for email, state in answers.items()},
        all_recipients=claim.all_recipients,
        attempt=DeliveryAttempt(number=claim.attempts, started_at=datetime.now(UTC), duration_ms=1,
                                server_name="relay", outcome=MailStatus.DEFERRED))])
    return mail_id


def test_retry_now_makes_a_deferred_mail_due_keeping_its_attempts_and_answers(mailroom: Mailroom) -> None:
    mail_id = _deferred(mailroom, "a@example.org", "b@example.org",
                        answers={"a@example.org": "accepted", "b@example.org": "deferred"})
    waiting = mailroom.get_mail(SYSTEM, mail_id)
    assert waiting.status is MailStatus.DEFERRED and waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > datetime.now(UTC) + timedelta(minutes=30)
    assert mailroom.store.claim(worker_id="w", limit=10, now=datetime.now(UTC), lease_seconds=60) == []

    retried = mailroom.retry_mail(SYSTEM, mail_id)
    assert retried.status is MailStatus.DEFERRED and retried.attempts == 1
    assert retried.next_attempt_at is not None and retried.next_attempt_at <= datetime.now(UTC)
    assert retried.last_error == "451 4.7.1 try again later"  # what happened stays visible until the attempt
    assert {r.email: r.status.value for r in retried.recipients} == {"a@example.org": "accepted",
                                                                     "b@example.org": "deferred"}
    [again] = mailroom.store.claim(worker_id="w", limit=10, now=datetime.now(UTC) + timedelta(seconds=1),
                                   lease_seconds=60)
    assert again.id == mail_id and again.attempts == 2 and again.recipients == ("b@example.org",)


def test_a_filtered_search_counts_up_to_the_limit_and_then_says_more(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key, log_count_limit=10) as room:
        room.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Invoice {i}" if i % 2 else f"Other {i}",
                                      text="t") for i in range(30)])
        first = room.search_mail_log(SYSTEM, text="invoice", limit=5)
        assert (first.total, first.total_exact, len(first.items)) == (10, False, 5) and first.next_after
        # Paging on counts to the end of the page asked for, so a page past the limit still knows what is left.
        third = room.search_mail_log(SYSTEM, text="invoice", limit=5, offset=10)
        assert (third.total, third.total_exact, len(third.items), third.next_after) == (15, True, 5, None)
        assert room.search_mail_log(SYSTEM, text="other 1", limit=3).total == 5  # under the limit: exact
        whole = room.search_mail_log(SYSTEM, limit=5)  # the whole log is always counted exactly
        assert (whole.total, whole.total_exact) == (30, True) and whole.next_after
        assert room.search_mail_log(SYSTEM, text="invoice", with_total=False).total is None


@pytest.mark.parametrize("sort", ["queued_at", "sent_at", "subject", "status", "attempts"])
def test_a_page_near_the_end_is_the_same_read_from_either_end(mailroom: Mailroom, sort: str) -> None:
    ids = mailroom.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Mail {i % 7}", text="t")
                                       for i in range(23)])
    with mailroom.database.write() as conn:  # ties and NULLs in the sort column: some sent, most not
        conn.execute(update(mails).where(mails.c.id.in_(ids[::4])).values(
            status="sent", sent_at=datetime(2024, 5, 1, tzinfo=UTC), attempts=1))
    for descending in (True, False):
        everything = [m.id for m in mailroom.search_mail_log(SYSTEM, sort=sort, descending=descending,
                                                             limit=100).items]
        assert sorted(everything) == sorted(ids)
        for offset in (0, 5, 11, 12, 18, 20, 22, 23, 40):
            page = mailroom.search_mail_log(SYSTEM, sort=sort, descending=descending, limit=5, offset=offset)
            assert [m.id for m in page.items] == everything[offset:offset + 5], (descending, offset)
            assert page.total == 23


def test_the_last_page_is_read_from_the_end_not_past_every_mail_before_it(mailroom: Mailroom) -> None:
    from sqlalchemy import event

    mailroom.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Mail {i}", text="t") for i in range(40)])
    offsets: list[int] = []

    def remember(_conn: object, _cursor: object, statement: str, parameters: object, _context: object,
                 _many: bool) -> None:
        if "ORDER BY" in statement and "mailroom_mails" in statement:
            values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)  # type: ignore[call-overload]
            offsets.append(int(values[-1]))
    event.listen(mailroom.database.engine, "before_cursor_execute", remember)
    try:
        last = mailroom.search_mail_log(SYSTEM, limit=10, offset=30)
    finally:
        event.remove(mailroom.database.engine, "before_cursor_execute", remember)
    assert [m.subject for m in last.items] == [f"Mail {i}" for i in range(9, -1, -1)]
    assert offsets == [0]  # the first 10 from the other end, not 30 read and thrown away


@pytest.mark.parametrize("sort", ["queued_at", "subject", "status", "receiver", "attempts"])
def test_next_after_walks_every_page_once_in_order(mailroom: Mailroom, sort: str) -> None:
    """Keyset paging: each page's next_after continues right after its last mail (ties broken by the id), so
    the walk gives exactly the order an offset gives, and a mail queued meanwhile does not shift it."""
    mailroom.send_mails(SYSTEM, [Mail(to=f"user{i % 4}@example.org", subject=f"Mail {i % 3}", text="t")
                                 for i in range(23)])
    for descending in (True, False):
        everything = [m.id for m in mailroom.search_mail_log(SYSTEM, sort=sort, descending=descending,
                                                             limit=100).items]
        walked: list[str] = []
        page = mailroom.search_mail_log(SYSTEM, sort=sort, descending=descending, limit=5)
        while True:
            walked += [m.id for m in page.items]
            assert page.total == 23
            if page.next_after is None:
                break
            page = mailroom.search_mail_log(SYSTEM, sort=sort, descending=descending, limit=5,
                                            after=page.next_after)
        assert walked == everything, (sort, descending)


def test_a_cursor_that_is_not_one_or_belongs_to_another_order_is_refused(mailroom: Mailroom) -> None:
    mailroom.send_mails(SYSTEM, [Mail(to=f"user{i}@example.org", subject=f"Mail {i}", text="t") for i in range(3)])
    cursor = mailroom.search_mail_log(SYSTEM, limit=2).next_after
    assert cursor is not None
    for bad in ("nonsense", "W10", cursor[:-3]):
        with pytest.raises(InvalidInput, match="not a cursor") as caught:
            mailroom.search_mail_log(SYSTEM, after=bad)
        assert caught.value.field == "after"
    with pytest.raises(InvalidInput, match="another order"):
        mailroom.search_mail_log(SYSTEM, after=cursor, descending=False)
    with pytest.raises(InvalidInput, match="not both"):
        mailroom.search_mail_log(SYSTEM, after=cursor, offset=2)
    assert mailroom.search_mail_log(SYSTEM, sort="sent_at", limit=1).next_after is None  # NULLs: offsets only
