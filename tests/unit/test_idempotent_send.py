"""SendMail with idempotency keys on in-memory fakes (issue #14, item 3): what the use case decides, whatever
store is behind it. The same rules run against SQLite and PostgreSQL in tests/integration/test_idempotent_sends.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from mailroom import SYSTEM, Mail, Subject
from mailroom.adapters.smtp.mime import StdlibMessageBuilder
from mailroom.domain.idempotency import IdempotencyKey, mail_fingerprint
from mailroom.domain.permissions import SEND_MAIL
from mailroom.domain.staging import StagingPolicy
from mailroom.errors import IdempotencyConflict, PermissionDenied
from mailroom.usecases.send_mail import SendMail
from tests.support.fakes import FakeClock, MemoryEnqueue


class CountingWakeup:
    def __init__(self) -> None:
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1

    async def wait(self, timeout: float | None) -> bool:
        return False


@pytest.fixture
def world() -> tuple[SendMail, MemoryEnqueue, FakeClock, CountingWakeup]:
    outbox, clock, wakeup = MemoryEnqueue(), FakeClock(), CountingWakeup()
    send = SendMail(outbox=outbox, builder=StdlibMessageBuilder(), clock=clock, wakeup=wakeup,
                    staging=StagingPolicy(), max_attachment_bytes=1000, max_message_bytes=100_000,
                    idempotency_window=timedelta(hours=2))
    return send, outbox, clock, wakeup


def _mail(**changes: object) -> Mail:
    return Mail(to="ann@example.org", subject="Order 7", text="Thanks.").with_changes(**changes)


World = tuple[SendMail, MemoryEnqueue, FakeClock, CountingWakeup]


def test_a_send_without_a_key_is_one_plain_add(world: World) -> None:
    send, outbox, _clock, _wakeup = world
    send(SYSTEM, _mail())
    assert outbox.calls == ["add"]  # no key lookup, no extra round trip


def test_a_repeat_returns_the_first_id_and_wakes_no_worker(world: World) -> None:
    send, outbox, _clock, wakeup = world
    first = send.queue(SYSTEM, _mail(), idempotency_key="k")
    again = send.queue(SYSTEM, _mail(), idempotency_key="k")
    assert first.new and not again.new and again.mail_id == first.mail_id
    assert len(outbox.mails) == 1 and wakeup.notified == 1
    assert outbox.calls == ["add_once", "add_once"]


def test_concurrent_repeats_get_one_id(world: World) -> None:
    send, outbox, _clock, _wakeup = world
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: send(SYSTEM, _mail(), idempotency_key="k"), range(20)))
    assert len(ids) == 1 and len(outbox.mails) == 1


@pytest.mark.parametrize("change", [{"subject": "Order 8"}, {"to": "bob@example.org"}, {"text": "Other"},
                                    {"cc": "c@example.org"}, {"priority": "high"}, {"tags": ["x"]}])
def test_another_mail_under_a_live_key_is_a_conflict(world: World, change: dict[str, object]) -> None:
    send, outbox, _clock, _wakeup = world
    first = send(SYSTEM, _mail(), idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as caught:
        send(SYSTEM, _mail(**change), idempotency_key="k")
    assert caught.value.mail_id == first and len(outbox.mails) == 1


def test_the_key_expires_with_its_window(world: World) -> None:
    send, outbox, clock, _wakeup = world
    first = send(SYSTEM, _mail(), idempotency_key="k")
    clock.advance(2 * 3600 - 1)
    assert send(SYSTEM, _mail(), idempotency_key="k") == first
    clock.advance(1)
    assert send(SYSTEM, _mail(subject="Order 8"), idempotency_key="k") != first
    assert len(outbox.mails) == 2


def test_a_key_may_bring_its_own_window_and_request(world: World) -> None:
    send, _outbox, clock, _wakeup = world
    key = IdempotencyKey("reset/ann", window=timedelta(minutes=1), request="reset/ann")
    first = send(SYSTEM, _mail(text="code A"), idempotency_key=key)
    assert send(SYSTEM, _mail(text="code B"), idempotency_key=key) == first  # same request, other content
    clock.advance(60)
    assert send(SYSTEM, _mail(text="code C"), idempotency_key=key) != first


def test_keys_belong_to_their_caller(world: World) -> None:
    send, _outbox, _clock, _wakeup = world
    ann, bob = Subject.user("ann", [SEND_MAIL]), Subject.user("bob", [SEND_MAIL])
    assert send(ann, _mail(), idempotency_key="k") != send(bob, _mail(), idempotency_key="k")
    with pytest.raises(PermissionDenied):
        send(Subject.user("eve", []), _mail(), idempotency_key="k")


def test_the_fingerprint_ignores_nothing_that_is_sent() -> None:
    base = mail_fingerprint(_mail())
    assert mail_fingerprint(_mail()) == base
    assert len({base, mail_fingerprint(_mail(html="<p>Thanks.</p>")), mail_fingerprint(_mail(confidential=True)),
                mail_fingerprint(_mail(headers={"X-Campaign": "7"})), mail_fingerprint(_mail(sender="a@b.example"))}
               ) == 5
