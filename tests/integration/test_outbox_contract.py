"""One contract for every Outbox: the in-memory fake the worker's unit tests use, and the SQL store on SQLite
and PostgreSQL. What the worker relies on (claim tokens fence results, leases renew only for their holder,
a give-back spends no attempt, a retry goes only to unsettled recipients) holds for all of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from mailroom import SYSTEM, Mail, Mailroom
from mailroom.domain.outbox import DeliveryAttempt, MailStatus, new_claim_token
from mailroom.domain.retry import RetryPolicy
from mailroom.errors import Text
from mailroom.ports import ClaimedMail, DeliveryResult, Outbox
from mailroom.usecases.deliver_mail import DeliverMail
from tests.support.fakes import FakeOutbox


class Backend:
    """Queues mails and reads their state back, for one kind of outbox."""

    def __init__(self, outbox: Outbox, room: Mailroom | None) -> None:
        self.outbox = outbox
        self.room = room

    def queue(self, *recipients: str) -> str:
        if self.room is None:
            assert isinstance(self.outbox, FakeOutbox)
            mail_id = f"m{len(self.outbox.mails)}"
            self.outbox.put(mail_id, recipients)
            return mail_id
        return self.room.send_mail(SYSTEM, Mail(to=list(recipients), subject="s", text="t", sender="me@example.org"))

    def status_and_attempts(self, mail_id: str) -> tuple[MailStatus, int]:
        if self.room is None:
            assert isinstance(self.outbox, FakeOutbox)
            mail = self.outbox.mails[mail_id]
            return mail.status, mail.attempts
        stored = self.room.get_mail(SYSTEM, mail_id)
        return stored.status, stored.attempts

    def attempt_numbers(self, mail_id: str) -> list[int]:
        if self.room is None:
            assert isinstance(self.outbox, FakeOutbox)
            return [a.number for a in self.outbox.mails[mail_id].attempt_log]
        return [a.number for a in self.room.get_mail(SYSTEM, mail_id).attempt_log]


@pytest.fixture(params=["fake", "sqlite", "sqlite, worker process",
                        pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "fake":
        yield Backend(FakeOutbox(), None)
        return
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "sqlite_url")
    room = Mailroom(database_url=url, secret_key=Fernet.generate_key().decode())
    try:
        # The worker's outbox: the store itself, or (the default) the store in a process of its own.
        outbox = room.outbox_for_workers() if request.param == "sqlite, worker process" else room.store
        yield Backend(outbox, room)
    finally:
        room.close()


def later(seconds: float = 1.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def claim(backend: Backend, worker: str = "w1", limit: int = 10, lease: float = 60.0) -> list[ClaimedMail]:
    return backend.outbox.claim(worker_id=worker, limit=limit, now=later(), lease_seconds=lease)


def result(the_claim: ClaimedMail, status: MailStatus, answers: dict[str, str]) -> DeliveryResult:
    return DeliveryResult(
        mail_id=the_claim.id, claim_token=the_claim.claim_token, status=status,
        next_attempt_at=later(-1) if status is MailStatus.DEFERRED else None, error=None,
        recipients={email: (state, 250 if state == "accepted" else 450, "reply") for email, state in answers.items()},
        all_recipients=the_claim.all_recipients,
        attempt=DeliveryAttempt(number=the_claim.attempts, started_at=datetime.now(UTC), duration_ms=1,
                                server_name="relay", outcome=status))


def test_a_claim_leases_each_due_mail_once(backend: Backend) -> None:
    ids = {backend.queue("a@example.org"), backend.queue("b@example.org")}
    first = claim(backend)
    assert {c.id for c in first} == ids and {c.attempts for c in first} == {1}
    assert claim(backend, "w2") == []
    assert backend.status_and_attempts(first[0].id) == (MailStatus.SENDING, 1)


def test_a_claim_is_taken_up_again_under_its_token(backend: Backend) -> None:
    """What a worker does when a claim's answer was lost: the same mails, leased anew, nothing else."""
    ids = {backend.queue("a@example.org"), backend.queue("b@example.org")}
    token = new_claim_token("w1")
    first = backend.outbox.claim(worker_id="w1", limit=10, now=later(), lease_seconds=60.0, token=token)
    later_one = backend.queue("c@example.org")  # queued after the claim: not part of it
    again = backend.outbox.resume_claim(token, now=later(30), lease_seconds=60.0)
    assert {c.id for c in first} == {c.id for c in again} == ids
    assert {c.claim_token for c in again} == {token} and {c.attempts for c in again} == {1}
    assert [c.recipients for c in again] == [c.recipients for c in first]
    assert {c.id for c in claim(backend)} == {later_one}  # the claim's mails stay with their holder
    backend.outbox.record([result(c, MailStatus.SENT, {r: "accepted" for r in c.recipients}) for c in again])
    assert backend.outbox.resume_claim(token, now=later(), lease_seconds=60.0) == []
    assert backend.outbox.resume_claim(new_claim_token("w1"), now=later(), lease_seconds=60.0) == []


def test_results_written_again_log_each_attempt_once(backend: Backend) -> None:
    """The worker's second try of a write whose first commit may have gone through unseen."""
    mail_id = backend.queue("a@example.org")
    [held] = claim(backend)
    sent = result(held, MailStatus.SENT, {"a@example.org": "accepted"})
    backend.outbox.record([sent])
    backend.outbox.record([sent], again=True)
    assert backend.status_and_attempts(mail_id) == (MailStatus.SENT, 1)
    assert backend.attempt_numbers(mail_id) == [1]


def test_a_lease_is_renewed_only_for_its_holder(backend: Backend) -> None:
    backend.queue("a@example.org")
    [mine] = claim(backend, lease=0.5)
    assert backend.outbox.extend_leases([mine], until=later(120)) == {mine.id}
    assert claim(backend, "w2") == []  # renewed: not claimable a second after the first lease
    stranger = replace(mine, claim_token="w2:other")
    assert backend.outbox.extend_leases([stranger], until=later(120)) == set()


def test_a_result_under_a_lost_claim_does_not_overwrite(backend: Backend) -> None:
    mail_id = backend.queue("a@example.org")
    [old] = claim(backend, lease=0.0)
    [new] = claim(backend, "w2", lease=60)  # the lease ran out: another worker took it over
    assert new.id == old.id == mail_id and new.claim_token != old.claim_token
    backend.outbox.record([result(old, MailStatus.SENT, {"a@example.org": "accepted"})])
    assert backend.status_and_attempts(mail_id) == (MailStatus.SENDING, 2)
    backend.outbox.record([result(new, MailStatus.SENT, {"a@example.org": "accepted"})])
    assert backend.status_and_attempts(mail_id)[0] is MailStatus.SENT


def test_a_give_back_spends_no_attempt(backend: Backend) -> None:
    mail_id = backend.queue("a@example.org")
    claims = claim(backend)
    backend.outbox.release(claims, retry_at=later(-1), error=Text("server cools down"))
    assert backend.status_and_attempts(mail_id) == (MailStatus.QUEUED, 0)
    assert [c.attempts for c in claim(backend)] == [1]


def test_a_retry_goes_only_to_unsettled_recipients(backend: Backend) -> None:
    mail_id = backend.queue("a@example.org", "b@example.org", "c@example.org")
    [first] = claim(backend)
    assert first.all_recipients and set(first.recipients) == {"a@example.org", "b@example.org", "c@example.org"}
    backend.outbox.record([result(first, MailStatus.DEFERRED, {"a@example.org": "accepted",
                                                               "b@example.org": "deferred",
                                                               "c@example.org": "refused"})])
    [second] = claim(backend)
    assert second.id == mail_id and second.recipients == ("b@example.org",)
    assert (second.accepted_before, second.refused_before) == (1, 1) and not second.all_recipients


def test_a_mail_settled_without_sending_keeps_attempts_within_the_limit(backend: Backend) -> None:
    """A worker that dies during the last allowed attempt leaves the mail to be claimed once more, only to be
    failed: that claim is no attempt, so ``attempts`` stays at the limit (it was limit + 1, with a phantom
    attempt in the log)."""
    mail_id = backend.queue("a@example.org")
    [_dead] = claim(backend, lease=0.0)  # the worker died while sending: the lease runs out
    [again] = claim(backend, "w2")
    assert again.attempts == 2
    settled = DeliverMail(builder=None, clock=_Clock(), policy=RetryPolicy(max_attempts=1)  # type: ignore[arg-type]
                          ).settle_without_sending(again)
    assert settled is not None and not settled.attempted
    backend.outbox.record([settled])
    assert backend.status_and_attempts(mail_id) == (MailStatus.FAILED, 1)
    if backend.room is not None:
        assert backend.room.get_mail(SYSTEM, mail_id).attempt_log == ()


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)
