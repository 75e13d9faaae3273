"""Pure domain rules: addresses, mails, retry policy, server choice, staging, permissions."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom import (
    SYSTEM,
    Address,
    Attachment,
    InvalidAddress,
    InvalidHeader,
    InvalidInput,
    Mail,
    NoRecipients,
    PermissionDenied,
    Subject,
)
from mailroom.domain.delivery import judge
from mailroom.domain.outbox import MailStatus, time_ordered_id
from mailroom.domain.permissions import PERMISSIONS, SEND_MAIL
from mailroom.domain.retry import RetryPolicy
from mailroom.domain.servers import SmtpServer, servers_to_try
from mailroom.domain.staging import StagingPolicy
from mailroom.errors import SmtpPermanentError, SmtpTemporaryError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_address_parses_display_name_and_idn() -> None:
    a = Address.parse("Jörg Müller <joerg@bücher.de>")
    assert a.name == "Jörg Müller"
    assert a.email == "joerg@bücher.de"
    assert a.ascii_email == "joerg@xn--bcher-kva.de"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@", "@b.org", "a b@c.org", "x <y", "a@b..org"])
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        Address.parse(bad)


@pytest.mark.parametrize("field", ["subject", "to", "headers", "filename", "sender"])
def test_line_breaks_are_refused_everywhere(field: str) -> None:
    evil = "x\r\nBcc: victim@example.org"
    kwargs: dict[str, object] = {"to": "a@example.org", "subject": "s", "text": "t"}
    if field == "subject":
        kwargs["subject"] = evil
    elif field == "to":
        kwargs["to"] = "a@example.org" + evil
    elif field == "headers":
        kwargs["headers"] = {"X-Custom": evil}
    elif field == "sender":
        kwargs["sender"] = "Name\n <a@example.org>"
    else:
        with pytest.raises(InvalidHeader):
            Attachment(filename=evil, content=b"x")
        return
    with pytest.raises((InvalidHeader, InvalidAddress)):
        Mail(**kwargs)  # type: ignore[arg-type]


def test_mail_needs_recipient_and_body() -> None:
    with pytest.raises(NoRecipients):
        Mail(subject="s", text="t")
    with pytest.raises(InvalidInput, match="no body"):
        Mail(to="a@example.org", subject="s")


def test_reserved_and_malformed_headers_are_refused() -> None:
    with pytest.raises(InvalidHeader, match="mailroom sets"):
        Mail(to="a@example.org", text="t", headers={"Bcc": "x@example.org"})
    with pytest.raises(InvalidHeader):
        Mail(to="a@example.org", text="t", headers={"Bad Name": "x"})


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        Mail(to="a@example.org", text="t", send_at=datetime(2026, 1, 1))


def test_recipients_are_unique_in_order() -> None:
    mail = Mail(to=["a@example.org", "b@example.org"], cc="A@example.org", bcc="c@example.org", text="t")
    assert [r.email for r in mail.recipients] == ["a@example.org", "b@example.org", "c@example.org"]


def test_inline_attachment_needs_content_id() -> None:
    with pytest.raises(InvalidInput, match="content_id"):
        Attachment(filename="logo.png", content=b"x", inline=True)
    assert Attachment(filename="logo.png", content=b"x").content_type == "image/png"


def test_retry_policy_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(base_delay_seconds=10, factor=2, max_delay_seconds=100, jitter=0.5, max_attempts=5)
    rng = random.Random(1)
    for attempt, base in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delay = policy.delay_seconds(attempt, rng)
        assert base * 0.5 <= delay <= base
    assert policy.exhausted(5) and not policy.exhausted(4)


def test_judge_outcomes() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert judge(None, attempts_made=1, policy=policy, now=NOW).status is MailStatus.SENT
    temporary = SmtpTemporaryError("451 later", code=451)
    deferred = judge(temporary, attempts_made=1, policy=policy, now=NOW)
    assert deferred.status is MailStatus.DEFERRED and deferred.next_attempt_at and deferred.next_attempt_at > NOW
    assert judge(temporary, attempts_made=3, policy=policy, now=NOW).status is MailStatus.FAILED
    assert judge(SmtpPermanentError("550 no", code=550), attempts_made=1, policy=policy,
                 now=NOW).status is MailStatus.FAILED
    expiring = judge(temporary, attempts_made=1, policy=policy, now=NOW, expires_at=NOW + timedelta(seconds=1))
    assert expiring.status is MailStatus.FAILED and "expired" in str(expiring.error)


def _server(name: str, priority: int, enabled: bool = True) -> SmtpServer:
    return SmtpServer(id=f"id-{name}", name=name, host="h", priority=priority, enabled=enabled)


def test_server_order_hint_first_then_priority() -> None:
    servers = [_server("low", 1), _server("high", 9), _server("off", 99, enabled=False), _server("mid", 5)]
    assert [s.name for s in servers_to_try(servers, None)] == ["high", "mid", "low"]
    assert [s.name for s in servers_to_try(servers, "low")] == ["low", "high", "mid"]
    assert [s.name for s in servers_to_try(servers, "id-mid")] == ["mid", "high", "low"]
    assert [s.name for s in servers_to_try(servers, "unknown")] == ["high", "mid", "low"]
    assert servers_to_try([], None) == []


def test_staging_redirects_and_allows_domains() -> None:
    policy = StagingPolicy(redirect_to=Address.parse("qa@test.example"), allowed_domains=frozenset({"corp.example"}))
    envelope = policy.envelope((Address.parse("a@corp.example"), Address.parse("b@gmail.example"),
                                Address.parse("c@sub.corp.example")))
    assert [a.email for a in envelope] == ["a@corp.example", "c@sub.corp.example", "qa@test.example"]
    assert StagingPolicy().envelope((Address.parse("x@y.example"),))[0].email == "x@y.example"


def test_subject_permissions() -> None:
    user = Subject.user("u1", [SEND_MAIL])
    user.require(SEND_MAIL)
    with pytest.raises(PermissionDenied, match="u1"):
        user.require("mailroom.mail.delete")
    for permission in PERMISSIONS.all():
        SYSTEM.require(permission.id)


@given(st.text(alphabet=st.characters(blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
                                      blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=80))
def test_any_subject_without_control_characters_is_accepted(subject: str) -> None:
    assert Mail(to="a@example.org", subject=subject, text="t").subject == subject


def test_mail_ids_are_uuid7_and_grow_with_time() -> None:
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [time_ordered_id(earlier + timedelta(milliseconds=ms)) for ms in range(0, 50, 5)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert int(ids[0][:12], 16) == int(earlier.timestamp() * 1000)
