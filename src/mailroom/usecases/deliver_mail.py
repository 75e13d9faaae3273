"""Deliver one claimed mail over one open SMTP session and judge the outcome.

Choosing a server, opening connections and reading passwords belong to the worker's sender tasks (one
per connection); this use case is the part that talks about one mail: given a claim and a session it
returns the DeliveryResult to record, and never raises for SMTP trouble.
"""

from __future__ import annotations

import time
from datetime import datetime

from mailroom.domain.delivery import RecipientAnswer, Verdict, judge, judge_recipients
from mailroom.domain.outbox import DeliveryAttempt, MailStatus, RecipientStatus
from mailroom.domain.retry import RetryPolicy
from mailroom.domain.servers import SmtpServer
from mailroom.errors import DeliveryError, SenderNotConfigured, Text, english
from mailroom.ports import ClaimedMail, Clock, DeliveryResult, MessageBuilder, SmtpSession

UNCERTAIN_RESEND = "resend"
UNCERTAIN_HOLD = "hold"


class DeliverMail:
    """Turns one claimed mail and one open session into a DeliveryResult."""

    def __init__(self, *, builder: MessageBuilder, clock: Clock, policy: RetryPolicy,
                 uncertain: str = UNCERTAIN_RESEND) -> None:
        if uncertain not in (UNCERTAIN_RESEND, UNCERTAIN_HOLD):
            raise ValueError(f"uncertain must be {UNCERTAIN_RESEND!r} or {UNCERTAIN_HOLD!r}")
        self._builder = builder
        self._clock = clock
        self._policy = policy
        self._uncertain = uncertain

    def settle_without_sending(self, claim: ClaimedMail) -> DeliveryResult | None:
        """The result of a claim that must not go out at all (expired, content dropped, out of attempts),
        or None when it should be sent."""
        now = self._clock.now()
        if claim.expires_at is not None and claim.expires_at <= now:
            reason = Text("expired: not sent before {expires_at}", {"expires_at": claim.expires_at.isoformat()})
        elif claim.message is None:
            reason = Text("the content was dropped by retention before delivery")
        elif claim.attempts > self._policy.max_attempts:
            # Only a worker that crashed while sending this mail, again and again, gets here.
            reason = Text("gave up after {attempts} attempts: the worker stopped during each of them",
                          {"attempts": claim.attempts - 1})
        else:
            return None
        return self._result(claim, now, time.perf_counter(), None, Verdict(
            status=_failed_or_partly(claim), next_attempt_at=None, error=reason), attempted=False)

    def sender_of(self, claim: ClaimedMail, server: SmtpServer) -> str | None:
        return claim.envelope_sender or server.from_address

    async def __call__(self, claim: ClaimedMail, server: SmtpServer, session: SmtpSession) -> DeliveryResult:
        started = self._clock.now()
        clock_start = time.perf_counter()
        sender = self.sender_of(claim, server)
        if sender is None or claim.message is None:
            # Nothing went over SMTP: a configuration error of ours, not an attempt, and no recipient's fault.
            return self._result(claim, started, clock_start, server.name, Verdict(
                status=_failed_or_partly(claim), next_attempt_at=None, error=SenderNotConfigured(server.name).text),
                attempted=False)
        message, new_message_id = (claim.message, None) if claim.has_from_header \
            else self._builder.with_from(claim.message, sender)
        try:
            report = await session.send(sender, claim.recipients, message)
        except DeliveryError as exc:
            return self._failure(claim, started, clock_start, server, exc)
        verdict = judge_recipients(
            recipients=claim.recipients, refused=report.refused, code=report.code, reply=report.reply,
            attempts_made=claim.attempts, policy=self._policy, now=self._clock.now(), expires_at=claim.expires_at,
            accepted_before=claim.accepted_before, refused_before=claim.refused_before)
        # The server got the message (DATA was answered): if it went out with a From lent by the server, the
        # stored copy must show it too.
        lent = (sender, message, new_message_id) if message is not claim.message and report.code is not None \
            else None
        if report.code is not None:
            return self._result(claim, started, clock_start, server.name, verdict, code=report.code,
                                reply=report.reply, lent_from=lent)
        return self._result(claim, started, clock_start, server.name, verdict, lent_from=lent)

    def _failure(self, claim: ClaimedMail, started: datetime, clock_start: float, server: SmtpServer,
                 error: DeliveryError) -> DeliveryResult:
        # The backoff counts from the end of the attempt: after a 30 s timeout the retry is not due at once.
        verdict = judge(error, attempts_made=claim.attempts, policy=self._policy, now=self._clock.now(),
                        expires_at=claim.expires_at)
        if error.uncertain and self._uncertain == UNCERTAIN_HOLD and verdict.status is MailStatus.DEFERRED:
            verdict = Verdict(status=MailStatus.FAILED, next_attempt_at=None,
                              error=Text("held for an operator: {reason}; retry the mail to send it again",
                                         {"reason": error.text}))
        status = verdict.status
        if status is MailStatus.FAILED:
            status = _failed_or_partly(claim)
        recipient_status = (RecipientStatus.DEFERRED if status is MailStatus.DEFERRED else RecipientStatus.REFUSED)
        answers: dict[str, RecipientAnswer] = {
            # A recipient keeps what the server answered; a dropped connection is no answer (the attempt says it).
            r: (recipient_status, error.code, error.reply) for r in claim.recipients}
        return self._result(claim, started, clock_start, error.server or server.name,
                            Verdict(status=status, next_attempt_at=verdict.next_attempt_at, error=verdict.error,
                                    recipients=answers),
                            code=error.code, reply=error.reply, reply_text=None if error.reply else error.text,
                            uncertain=error.uncertain)

    def _result(self, claim: ClaimedMail, started: datetime, clock_start: float, server: str | None,
                verdict: Verdict, *, code: int | None = None, reply: str | None = None,
                reply_text: Text | None = None, uncertain: bool = False, attempted: bool = True,
                lent_from: tuple[str, bytes, str | None] | None = None) -> DeliveryResult:
        if reply is None:  # no answer of the server's to show: the attempt says in mailroom's words what happened
            reply_text = reply_text or verdict.error
            reply = english(reply_text)
        return DeliveryResult(
            mail_id=claim.id, claim_token=claim.claim_token, status=verdict.status,
            next_attempt_at=verdict.next_attempt_at, error=verdict.error,
            recipients={r: (status.value, rcpt_code, rcpt_reply)
                        for r, (status, rcpt_code, rcpt_reply) in verdict.recipients.items()},
            all_recipients=claim.all_recipients, attempted=attempted, lent_from=lent_from,
            attempt=DeliveryAttempt(number=claim.attempts, started_at=started, duration_ms=_ms(clock_start),
                                    server_name=server, outcome=verdict.status, code=code,
                                    reply=reply, reply_text=reply_text, uncertain=uncertain),
        )


def _failed_or_partly(claim: ClaimedMail) -> MailStatus:
    """A mail that ends without reaching its remaining recipients: some got it at earlier attempts or none."""
    return MailStatus.PARTIALLY_FAILED if claim.accepted_before else MailStatus.FAILED


def _ms(clock_start: float) -> int:
    return int((time.perf_counter() - clock_start) * 1000)
