"""DeliverMail: one claim and one open session → the result to record; with an in-memory session."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from mailroom.domain.outbox import MailStatus
from mailroom.domain.retry import RetryPolicy
from mailroom.errors import DeliveryError, SmtpOutcomeUnknown, SmtpPermanentError
from mailroom.ports import ClaimedMail, DeliveryResult, SendReport
from mailroom.usecases.deliver_mail import DeliverMail
from tests.support.fakes import FakeClock, server


class ScriptedSession:
    """Answers RCPTs from a table; ``error`` raises instead; the clock moves by ``takes`` seconds."""

    def __init__(self, clock: FakeClock, *, refused: dict[str, tuple[int, str]] | None = None,
                 error: DeliveryError | None = None, takes: float = 0.0) -> None:
        self.clock, self.refused, self.error, self.takes = clock, refused or {}, error, takes
        self.calls: list[tuple[str, ...]] = []

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        self.calls.append(tuple(recipients))
        self.clock.advance(self.takes)
        if self.error is not None:
            raise self.error
        refused = {r: self.refused[r] for r in recipients if r in self.refused}
        code = None if len(refused) == len(recipients) else 250
        return SendReport(code=code, reply="2.0.0 ok" if code else "no recipient was accepted", refused=refused)

    async def ensure_alive(self) -> bool:
        return True

    async def close(self) -> None:
        pass


class _Builder:
    def with_from(self, message: bytes, sender: str) -> tuple[bytes, str | None]:
        return b"From: " + sender.encode() + b"\r\n" + message, None


def claim(*recipients: str, attempts: int = 1, accepted_before: int = 0) -> ClaimedMail:
    return ClaimedMail(id="m1", claim_token="t", message=b"Subject: x\r\n\r\nbody\r\n",
                       envelope_sender="me@example.org", recipients=recipients or ("ann@example.org",),
                       smtp_hint=None, attempts=attempts,
                       expires_at=None, has_from_header=True, accepted_before=accepted_before)


def deliver(session: ScriptedSession, the_claim: ClaimedMail, clock: FakeClock, *, uncertain: str = "resend",
            max_attempts: int = 8) -> DeliveryResult:
    use_case = DeliverMail(builder=_Builder(), clock=clock, uncertain=uncertain,  # type: ignore[arg-type]
                           policy=RetryPolicy(base_delay_seconds=60, jitter=0, max_attempts=max_attempts))
    return asyncio.run(use_case(the_claim, server(), session))


def test_every_recipient_refused_keeps_each_ones_own_answer() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, refused={"a@example.org": (550, "5.1.1 no such user a"),
                                              "b@example.org": (553, "5.1.3 bad address b")})
    result = deliver(session, claim("a@example.org", "b@example.org"), clock)
    assert result.status is MailStatus.FAILED
    assert result.recipients == {"a@example.org": ("refused", 550, "5.1.1 no such user a"),
                                 "b@example.org": ("refused", 553, "5.1.3 bad address b")}


def test_a_temporary_rcpt_refusal_defers_only_that_recipient() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, refused={"b@example.org": (450, "4.2.1 try later")})
    result = deliver(session, claim("a@example.org", "b@example.org"), clock)
    assert result.status is MailStatus.DEFERRED
    assert result.recipients["a@example.org"][0] == "accepted"
    assert result.recipients["b@example.org"] == ("deferred", 450, "4.2.1 try later")


def test_a_permanent_refusal_of_some_is_partially_failed() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, refused={"b@example.org": (550, "5.1.1 unknown")})
    result = deliver(session, claim("a@example.org", "b@example.org"), clock)
    assert result.status is MailStatus.PARTIALLY_FAILED
    assert result.error is not None and "b@example.org: 550 5.1.1 unknown" in str(result.error)


def test_deferred_recipients_out_of_attempts_end_partially_failed() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, refused={"b@example.org": (450, "4.2.1 try later")})
    result = deliver(session, claim("b@example.org", attempts=3, accepted_before=1), clock, max_attempts=3)
    assert result.status is MailStatus.PARTIALLY_FAILED
    assert result.recipients["b@example.org"] == ("refused", 450, "4.2.1 try later")
    assert not result.all_recipients


def test_the_backoff_counts_from_the_end_of_the_attempt() -> None:
    clock = FakeClock()
    start = clock.now()
    session = ScriptedSession(clock, error=SmtpOutcomeUnknown("relay: no answer", server="relay"), takes=30)
    result = deliver(session, claim(), clock)
    assert result.status is MailStatus.DEFERRED
    assert result.next_attempt_at == start + timedelta(seconds=30 + 60)
    assert result.attempt.uncertain and result.attempt.started_at == start


def test_an_uncertain_outcome_can_be_held_for_an_operator() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, error=SmtpOutcomeUnknown("relay: no answer", server="relay"))
    result = deliver(session, claim(), clock, uncertain="hold")
    assert result.status is MailStatus.FAILED
    assert result.error is not None and "held for an operator" in str(result.error) and "retry" in str(result.error)


def test_a_permanent_error_fails_every_recipient_of_the_attempt() -> None:
    clock = FakeClock()
    session = ScriptedSession(clock, error=SmtpPermanentError("relay: 554 no", code=554, reply="5.7.1 no",
                                                              server="relay"))
    result = deliver(session, claim("a@example.org", accepted_before=1), clock)
    assert result.status is MailStatus.PARTIALLY_FAILED  # someone got it at an earlier attempt
    assert result.recipients == {"a@example.org": ("refused", 554, "5.7.1 no")}


@pytest.mark.parametrize("field", ["expired", "no content", "attempts"])
def test_a_claim_that_must_not_go_out_is_settled_without_a_session(field: str) -> None:
    clock = FakeClock()
    use_case = DeliverMail(builder=_Builder(), clock=clock,  # type: ignore[arg-type]
                           policy=RetryPolicy(max_attempts=3))
    the_claim = claim(attempts=4 if field == "attempts" else 1)
    if field == "expired":
        the_claim = ClaimedMail(**{**_fields(the_claim), "expires_at": clock.now()})
    if field == "no content":
        the_claim = ClaimedMail(**{**_fields(the_claim), "message": None})
    result = use_case.settle_without_sending(the_claim)
    assert result is not None and result.status is MailStatus.FAILED
    assert use_case.settle_without_sending(claim()) is None


def _fields(the_claim: ClaimedMail) -> dict[str, object]:
    return {name: getattr(the_claim, name) for name in ClaimedMail.__dataclass_fields__}
