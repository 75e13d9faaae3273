"""What an SMTP attempt's result means for the mail and for each of its recipients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailroom.domain.outbox import MailStatus, RecipientStatus
from mailroom.domain.retry import RetryPolicy
from mailroom.errors import DeliveryError, Text

RecipientAnswer = tuple[RecipientStatus, int | None, str | None]
"""What became of one recipient: its status, the server's code and reply."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    status: MailStatus
    next_attempt_at: datetime | None
    error: Text | None
    """Why the mail is not (yet) sent, as words the edges translate; stored with the mail as its last error."""
    recipients: dict[str, RecipientAnswer] = field(default_factory=dict)


def judge(error: DeliveryError | None, *, attempts_made: int, policy: RetryPolicy, now: datetime,
          expires_at: datetime | None = None) -> Verdict:
    """Sent on success; failed on a permanent error, used-up attempts or a retry past expiry; else deferred.

    ``now`` is the end of the attempt: the backoff counts from there, so a slow timeout does not eat it.
    """
    if error is None:
        return Verdict(status=MailStatus.SENT, next_attempt_at=None, error=None)
    message = error.text
    if not error.temporary:
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None, error=message)
    return _retry_or_give_up(message, attempts_made=attempts_made, policy=policy, now=now, expires_at=expires_at)


def judge_recipients(*, recipients: Sequence[str], refused: Mapping[str, tuple[int, str]], code: int | None,
                     reply: str, attempts_made: int, policy: RetryPolicy, now: datetime,
                     expires_at: datetime | None, accepted_before: int = 0, refused_before: int = 0) -> Verdict:
    """The verdict of an attempt in which the server answered each RCPT on its own.

    A 4xx to a RCPT defers that recipient only: the next attempt goes to the deferred ones. The mail is
    ``sent`` when every recipient (over all attempts) was accepted, ``partially_failed`` when some were
    refused for good and others accepted, ``failed`` when none was accepted. ``accepted_before`` and
    ``refused_before`` count recipients settled by earlier attempts (they are not in ``recipients``).
    """
    answers: dict[str, RecipientAnswer] = {}
    deferred: list[str] = []
    refused_now: list[str] = []
    rcpt_code: int | None
    rcpt_reply: str | None
    for recipient in recipients:
        if recipient in refused:
            rcpt_code, rcpt_reply = refused[recipient]
            if rcpt_code < 500:
                deferred.append(recipient)
                answers[recipient] = (RecipientStatus.DEFERRED, rcpt_code, rcpt_reply)
            else:
                refused_now.append(recipient)
                answers[recipient] = (RecipientStatus.REFUSED, rcpt_code, rcpt_reply)
        else:
            answers[recipient] = (RecipientStatus.ACCEPTED, code, reply)
    accepted = len(recipients) - len(deferred) - len(refused_now) + accepted_before
    if deferred:
        summary = _summary("deferred", deferred, refused)
        verdict = _retry_or_give_up(summary, attempts_made=attempts_made, policy=policy, now=now,
                                    expires_at=expires_at)
        if verdict.status is MailStatus.DEFERRED:
            return Verdict(status=MailStatus.DEFERRED, next_attempt_at=verdict.next_attempt_at,
                           error=verdict.error, recipients=answers)
        for recipient in deferred:  # out of attempts or time: a deferral becomes a refusal
            _status, rcpt_code, rcpt_reply = answers[recipient]
            answers[recipient] = (RecipientStatus.REFUSED, rcpt_code, rcpt_reply)
        refused_now += deferred
        give_up = verdict.error
    else:
        give_up = None
    if refused_now or refused_before:
        error = give_up or _summary("refused", refused_now, refused) if refused_now else \
            Text("{count} recipient(s) refused at an earlier attempt", {"count": refused_before})
        status = MailStatus.PARTIALLY_FAILED if accepted else MailStatus.FAILED
        return Verdict(status=status, next_attempt_at=None, error=error, recipients=answers)
    return Verdict(status=MailStatus.SENT, next_attempt_at=None, error=None, recipients=answers)


def _retry_or_give_up(message: Text, *, attempts_made: int, policy: RetryPolicy, now: datetime,
                      expires_at: datetime | None) -> Verdict:
    if policy.exhausted(attempts_made):
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None,
                       error=Text("gave up after {attempts} attempts: {reason}",
                                  {"attempts": attempts_made, "reason": message}))
    retry_at = policy.next_attempt_at(attempts_made, now)
    if expires_at is not None and retry_at >= expires_at:
        return Verdict(status=MailStatus.FAILED, next_attempt_at=None,
                       error=Text("expired: the next try would come after {expires_at}: {reason}",
                                  {"expires_at": expires_at.isoformat(), "reason": message}))
    return Verdict(status=MailStatus.DEFERRED, next_attempt_at=retry_at, error=message)


_SUMMARIES = {"deferred": "{count} recipient(s) deferred ({answers})",
              "refused": "{count} recipient(s) refused ({answers})",
              "deferred+": "{count} recipient(s) deferred ({answers}; and {more} more)",
              "refused+": "{count} recipient(s) refused ({answers}; and {more} more)"}


def _summary(what: str, recipients: Sequence[str], answers: Mapping[str, tuple[int, str]]) -> Text:
    # The servers' answers stay as they were given; the words around them are translated.
    shown = "; ".join(f"{r}: {answers[r][0]} {answers[r][1]}" for r in recipients[:5])
    more = len(recipients) - 5
    return Text(_SUMMARIES[what + "+" if more > 0 else what],
                {"count": len(recipients), "answers": shown, "more": more})
