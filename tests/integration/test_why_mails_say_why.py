"""Mails that cannot go out say why (issue #13, items 1-3), against SQLite and a real aiosmtpd server.

- With no enabled SMTP server a mail is still queued, and its last error says so from the start.
- A mail without a From is refused at ``send_mail`` when no enabled server has a sender address to lend it;
  when that still happens at delivery (servers changed meanwhile) it is a configuration error on the mail,
  not a refused recipient.
- A missing From is filled in when the mail is queued, so the stored message is the one that went out.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings
from mailroom.domain.outbox import RecipientStatus
from mailroom.domain.servers import Security
from mailroom.errors import NoSenderAddress
from tests.support.smtp_servers import SmtpServerHandle


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'why.db'}", secret_key_file=str(tmp_path / "key"),
                  retry_jitter=0.0) as room:
        yield room


def add_server(room: Mailroom, handle: SmtpServerHandle, *, name: str = "relay", sender: str = "",
               enabled: bool = True, priority: int = 0) -> None:
    room.servers.add(SYSTEM, ServerSettings(name=name, host=handle.host, port=handle.port, security=Security.NONE,
                                            sender=sender, enabled=enabled, priority=priority, timeout_seconds=10))


def mail(**changes: Any) -> Mail:
    return Mail(**({"to": "ann@example.org", "subject": "Hello", "text": "Hi Ann"} | changes))


def test_with_no_server_the_mail_is_queued_and_says_why_at_once(room: Mailroom) -> None:
    mail_id = room.send_mail(SYSTEM, mail())

    queued = room.get_mail(SYSTEM, mail_id)
    assert queued.status is MailStatus.QUEUED
    assert queued.last_error is not None
    assert "no enabled SMTP server" in queued.last_error
    assert "mailroom smtp add" in queued.last_error and "admin UI" in queued.last_error
    # The log (search) shows the same, without a worker having run.
    assert [m.last_error for m in room.search_mail_log(SYSTEM).items] == [queued.last_error]


def test_a_disabled_server_counts_as_none(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server, sender="app@shop.example", enabled=False)

    queued = room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail(sender="me@example.org")))

    assert queued.last_error is not None and "no enabled SMTP server" in queued.last_error
    readiness = room.sending_readiness(SYSTEM)
    assert readiness is not None and not readiness.can_deliver


def test_the_waiting_mail_goes_out_once_a_server_is_added(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    mail_id = room.send_mail(SYSTEM, mail(sender="me@example.org"))
    add_server(room, smtp_server, sender="app@shop.example")

    room.deliver_pending()

    sent = room.get_mail(SYSTEM, mail_id)
    assert sent.status is MailStatus.SENT
    assert sent.last_error is None


def test_with_a_server_the_queued_mail_has_no_error(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server, sender="app@shop.example")

    assert room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail())).last_error is None


def test_a_mail_without_from_is_refused_when_no_server_has_a_sender(room: Mailroom,
                                                                   smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server, name="relay")

    with pytest.raises(NoSenderAddress) as refused:
        room.send_mail(SYSTEM, mail())

    assert refused.value.field == "sender"
    assert "no From address" in str(refused.value) and "'relay'" not in str(refused.value)
    assert "relay" in str(refused.value) and "--sender" in str(refused.value)
    assert room.search_mail_log(SYSTEM).total == 0, "nothing was stored"
    # With a From of its own the same mail is fine.
    room.send_mail(SYSTEM, mail(sender="me@example.org"))


def test_bulk_sends_are_refused_as_a_whole(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server)

    with pytest.raises(NoSenderAddress):
        room.send_mails(SYSTEM, [mail(sender="me@example.org"), mail()])

    assert room.search_mail_log(SYSTEM).total == 0


def test_a_sender_set_in_another_process_is_seen_before_refusing(room: Mailroom, tmp_path: Path,
                                                                 smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server)
    with pytest.raises(NoSenderAddress):
        room.send_mail(SYSTEM, mail())  # this process now holds a copy of the servers without a sender
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'why.db'}", secret_key_file=str(tmp_path / "key")) as other:
        server = other.servers.get(SYSTEM, "relay")
        other.servers.update(SYSTEM, "relay", ServerSettings(
            name="relay", host=server.host, port=server.port, security=server.security, sender="late@shop.example"))

    assert room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail())).sender == "late@shop.example"


def test_the_stored_message_is_the_one_that_went_out(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server, sender="Shop <app@shop.example>")
    mail_id = room.send_mail(SYSTEM, mail())

    queued = room.get_mail(SYSTEM, mail_id)
    assert queued.sender == "Shop <app@shop.example>"
    assert queued.message_id.endswith("@shop.example>")
    room.deliver_pending()

    received = smtp_server.wait_for(1)[0]
    stored = room.log.raw_message(SYSTEM, mail_id)
    assert stored is not None
    assert received.data.replace(b"\r\n", b"\n") == stored.replace(b"\r\n", b"\n")
    assert received.mail_from == "app@shop.example"
    sent = message_from_bytes(stored, policy=default_policy)
    assert email.utils.parseaddr(str(sent["From"])) == ("Shop", "app@shop.example")
    assert sent["Message-ID"] == queued.message_id
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT


def test_a_mail_queued_before_any_server_is_stored_as_it_went_out(room: Mailroom,
                                                                   smtp_server: SmtpServerHandle) -> None:
    """Queued without a From while no server could lend one: the server that delivers it adds its From, and the
    log's copy gets the same header, so the .eml is the bytes that were sent (#13 item 3)."""
    mail_id = room.send_mail(SYSTEM, mail())
    add_server(room, smtp_server, sender="Shop <app@shop.example>")

    room.deliver_pending()

    received = smtp_server.wait_for(1)[0]
    stored = room.log.raw_message(SYSTEM, mail_id)
    assert stored is not None
    assert received.data.replace(b"\r\n", b"\n") == stored.replace(b"\r\n", b"\n")
    sent = room.get_mail(SYSTEM, mail_id)
    assert sent.status is MailStatus.SENT
    assert sent.sender == "Shop <app@shop.example>"
    # The Message-ID was made with no domain known; it goes out under the sender's, and the log says so.
    assert received.message()["Message-ID"] == sent.message_id
    assert sent.message_id.endswith("@shop.example>")


def test_a_configured_message_id_domain_is_kept_when_a_from_is_lent(sqlite_url: str, secret_key: str,
                                                                     smtp_server: SmtpServerHandle) -> None:
    with Mailroom(database_url=sqlite_url, secret_key=secret_key, message_id_domain="ids.example") as room:
        mail_id = room.send_mail(SYSTEM, mail())
        add_server(room, smtp_server, sender="app@shop.example")
        room.deliver_pending()
        sent = room.get_mail(SYSTEM, mail_id)
        assert sent.status is MailStatus.SENT and sent.message_id.endswith("@ids.example>")
        assert smtp_server.wait_for(1)[0].message()["Message-ID"] == sent.message_id


def test_the_hinted_server_lends_its_sender(room: Mailroom, smtp_server_factory: Any) -> None:
    first, second = smtp_server_factory(), smtp_server_factory()
    add_server(room, first, name="main", sender="main@shop.example", priority=10)
    add_server(room, second, name="news", sender="news@letters.example")
    add_server(room, second, name="bare", priority=20)  # first by priority, but without a sender

    assert room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail())).sender == "main@shop.example"
    hinted = room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail(smtp_hint="news")))
    assert hinted.sender == "news@letters.example"
    assert hinted.message_id.endswith("@letters.example>")


def test_a_changed_sender_applies_to_the_next_mail(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    add_server(room, smtp_server, sender="old@shop.example")
    assert room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail())).sender == "old@shop.example"

    room.servers.update(SYSTEM, "relay", ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                        security=Security.NONE, sender="new@shop.example"))

    assert room.get_mail(SYSTEM, room.send_mail(SYSTEM, mail())).sender == "new@shop.example"


def test_no_sender_at_delivery_is_a_configuration_error_not_a_refusal(room: Mailroom,
                                                                      smtp_server: SmtpServerHandle) -> None:
    mail_id = room.send_mail(SYSTEM, mail())  # no server yet: it waits without a From
    add_server(room, smtp_server, name="relay")  # the server that comes has no sender address

    room.deliver_pending()

    failed = room.get_mail(SYSTEM, mail_id)
    assert failed.status is MailStatus.FAILED
    assert failed.last_error is not None
    assert failed.last_error.startswith("configuration error")
    assert "'relay'" in failed.last_error and "--sender" in failed.last_error and "retry" in failed.last_error
    assert [r.status for r in failed.recipients] == [RecipientStatus.PENDING]
    assert failed.attempts == 0 and failed.attempt_log == (), "no SMTP attempt was made"
    assert smtp_server.received == []

    room.servers.update(SYSTEM, "relay", ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                        security=Security.NONE, sender="app@shop.example"))
    room.retry_mail(SYSTEM, mail_id)
    room.deliver_pending()
    assert room.get_mail(SYSTEM, mail_id).status is MailStatus.SENT
