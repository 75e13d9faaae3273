"""Idempotent sends (issue #14, item 3) against real SQLite and PostgreSQL: one key, one mail, also when
20 calls race with real connections; keys expire after their window; a key reused for another mail is
refused; a double click on "reset password" queues one mail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailroom import SYSTEM, Mail, Mailroom, Subject
from mailroom.adapters.storage.tables import idempotency_keys, mails, one_time_codes
from mailroom.domain.idempotency import IdempotencyKey
from mailroom.domain.permissions import SEND_MAIL
from mailroom.domain.users import Profile
from mailroom.errors import IdempotencyConflict, InvalidInput
from mailroom.usecases.retention import PurgeExpired, RetentionPolicy
from mailroom.usecases.send_mail import SendMail
from mailroom.usecases.users import ACCOUNT_MAIL_REPEAT_WINDOW
from tests.support.fakes import FakeClock


@pytest.fixture
def mailroom(database_url: str, secret_key: str) -> Iterator[Mailroom]:
    with Mailroom(database_url=database_url, secret_key=secret_key, reset_request_floor_seconds=0.001) as room:
        yield room


def _mail(subject: str = "Your order", to: str = "ann@example.org") -> Mail:
    return Mail(to=to, subject=subject, text="Thanks for your order.")


def _count(room: Mailroom, table: object, *where: object) -> int:
    with room.database.read() as conn:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(conn.execute(query).scalar_one())


def _send_with(room: Mailroom, clock: FakeClock, window: timedelta = timedelta(hours=24)) -> SendMail:
    """The real store behind a SendMail whose clock the test moves."""
    s = room.settings
    return SendMail(outbox=room.store, builder=room.builder, clock=clock, wakeup=room.wakeup,
                    staging=s.staging_policy, max_attachment_bytes=s.max_attachment_bytes,
                    max_message_bytes=s.max_message_bytes, idempotency_window=window)


def test_twenty_concurrent_sends_with_one_key_queue_one_mail(mailroom: Mailroom) -> None:
    """Each thread has its own connection (PostgreSQL's pool holds 20); they start together, so most
    inserts of the key meet another's uncommitted row."""
    start = threading.Barrier(20)
    ids: list[str] = []
    failures: list[BaseException] = []

    def send() -> None:
        try:
            start.wait()
            ids.append(mailroom.send_mail(SYSTEM, _mail(), idempotency_key="order-42/confirmation"))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(ids) == 20 and len(set(ids)) == 1
    assert _count(mailroom, mails) == 1
    assert _count(mailroom, idempotency_keys) == 1
    assert mailroom.get_mail(SYSTEM, ids[0]).subject == "Your order"


async def test_concurrent_async_sends_with_one_key_queue_one_mail(mailroom: Mailroom) -> None:
    import asyncio

    ids = await asyncio.gather(*(mailroom.send_mail_async(SYSTEM, _mail(), idempotency_key="k-async")
                                 for _ in range(20)))
    assert len(set(ids)) == 1
    assert _count(mailroom, mails) == 1


def test_sends_without_a_key_are_never_merged(mailroom: Mailroom) -> None:
    first, second = mailroom.send_mail(SYSTEM, _mail()), mailroom.send_mail(SYSTEM, _mail())
    assert first != second
    assert _count(mailroom, idempotency_keys) == 0


def test_the_same_key_with_another_mail_is_a_conflict_and_stores_nothing(mailroom: Mailroom) -> None:
    first = mailroom.send_mail(SYSTEM, _mail(), idempotency_key="k")
    for other in (_mail(subject="Another subject"), _mail(to="bob@example.org"),
                  Mail(to="ann@example.org", subject="Your order", text="Another body")):
        with pytest.raises(IdempotencyConflict, match="use a new key for a new mail") as caught:
            mailroom.send_mail(SYSTEM, other, idempotency_key="k")
        assert caught.value.mail_id == first and caught.value.field == "idempotency_key"
    assert _count(mailroom, mails) == 1
    assert mailroom.send_mail(SYSTEM, _mail(), idempotency_key="k") == first


def test_keys_are_per_caller(mailroom: Mailroom) -> None:
    ann = Subject.user("ann", [SEND_MAIL])
    bob = Subject.user("bob", [SEND_MAIL])
    ids = {mailroom.send_mail(who, _mail(), idempotency_key="k") for who in (ann, bob, SYSTEM)}
    assert len(ids) == 3
    assert mailroom.send_mail(ann, _mail(), idempotency_key="k") in ids


def test_a_key_expires_after_its_window_and_may_name_a_new_mail(mailroom: Mailroom) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    send = _send_with(mailroom, clock, window=timedelta(hours=1))
    first = send(SYSTEM, _mail(), idempotency_key="k")
    clock.advance(3599)
    assert send(SYSTEM, _mail(), idempotency_key="k") == first
    clock.advance(1)  # the window is over: the key is free, even for a different mail
    second = send(SYSTEM, _mail(subject="Next month's order"), idempotency_key="k")
    assert second != first
    assert send.queue(SYSTEM, _mail(subject="Next month's order"), idempotency_key="k").new is False
    assert _count(mailroom, mails) == 2
    assert _count(mailroom, idempotency_keys) == 1  # taken over, not added


def test_retention_purges_expired_keys(mailroom: Mailroom) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    send = _send_with(mailroom, clock, window=timedelta(hours=1))
    send(SYSTEM, _mail(), idempotency_key="old")
    clock.advance(1800)
    send(SYSTEM, _mail(), idempotency_key="young")
    clock.advance(1801)
    purge = PurgeExpired(store=mailroom.store, clock=clock, policy=RetentionPolicy(
        keep_sent_days=-1, keep_failed_days=-1, keep_content_days=-1, batch_size=10))
    assert purge.run_batch() == 1
    with mailroom.database.read() as conn:
        assert list(conn.execute(select(idempotency_keys.c.key)).scalars()) == ["young"]


def test_the_window_is_a_setting(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key, idempotency_window_seconds=90) as room:
        room.send_mail(SYSTEM, _mail(), idempotency_key="k")
        with room.database.read() as conn:
            row = conn.execute(select(idempotency_keys)).one()
    assert row.expires_at - row.created_at == timedelta(seconds=90)


@pytest.mark.parametrize("key", ["", "   ", "a" * 256, "line\nbreak", "esc\x1b"])
def test_unusable_keys_are_refused_before_anything_is_stored(mailroom: Mailroom, key: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        mailroom.send_mail(SYSTEM, _mail(), idempotency_key=key)
    assert caught.value.field == "idempotency_key"
    assert _count(mailroom, mails) == 0


def test_a_template_mail_takes_a_key(mailroom: Mailroom) -> None:
    options = {"to": "ann@example.org", "set_id": "mailroom.account", "name": "notification",
               "model": {"application_name": "Acme", "first_name": "Ann", "notification_title": "Export",
                         "message": "Your export is ready.", "action_label": "Download",
                         "action_url": "https://example.org/exports/7"}}
    first = mailroom.send_template_mail(SYSTEM, idempotency_key="export-7", **options)
    assert mailroom.send_template_mail(SYSTEM, idempotency_key="export-7", **options) == first
    assert _count(mailroom, mails) == 1


def _reset_mails(room: Mailroom) -> int:
    return _count(room, mails, mails.c.template.like("mailroom.account/password_reset"))


def test_a_double_click_on_reset_password_queues_one_mail(mailroom: Mailroom) -> None:
    ann = mailroom.users.create_user(SYSTEM, Profile(email="ann@example.org"), password="a good password",
                                     verified=True, notify_user=False)
    clicks = [threading.Thread(target=mailroom.users.request_password_reset, args=("ann@example.org",))
              for _ in range(2)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    mailroom.users.request_password_reset("Ann@Example.org")  # and a third, impatient one
    assert _reset_mails(mailroom) == 1
    # Only the mailed code works: the others were used up at once, so no link exists that nobody has.
    with mailroom.database.read() as conn:
        unused = conn.execute(select(func.count()).select_from(one_time_codes).where(
            one_time_codes.c.user_id == ann.id, one_time_codes.c.used_at.is_(None))).scalar_one()
    assert unused == 1


def test_a_reset_request_after_the_repeat_window_mails_again(mailroom: Mailroom) -> None:
    mailroom.users.create_user(SYSTEM, Profile(email="ann@example.org"), password="a good password",
                               verified=True, notify_user=False)
    mailroom.users.request_password_reset("ann@example.org")
    with mailroom.database.write() as conn:  # the first request is older than the window
        expires_at = conn.execute(select(idempotency_keys.c.expires_at)).scalar_one()
        conn.execute(idempotency_keys.update().values(expires_at=expires_at - ACCOUNT_MAIL_REPEAT_WINDOW))
    mailroom.users.request_password_reset("ann@example.org")
    assert _reset_mails(mailroom) == 2


def test_resend_verification_twice_keeps_the_mailed_link_working(mailroom: Mailroom) -> None:
    ann = mailroom.users.create_user(SYSTEM, Profile(email="ann@example.org"), notify_user=False)
    first = mailroom.users.resend_verification(SYSTEM, ann.id)
    assert mailroom.users.resend_verification(SYSTEM, ann.id) == first
    assert _count(mailroom, mails) == 1
    with mailroom.database.read() as conn:
        unused = conn.execute(select(func.count()).select_from(one_time_codes).where(
            one_time_codes.c.user_id == ann.id, one_time_codes.c.used_at.is_(None))).scalar_one()
    assert unused == 1


def test_idempotency_key_values_are_checked_in_the_domain() -> None:
    assert IdempotencyKey.of(None) is None
    assert IdempotencyKey.of("k") == IdempotencyKey("k")
    with pytest.raises(InvalidInput):
        IdempotencyKey("k", window=timedelta(0))
