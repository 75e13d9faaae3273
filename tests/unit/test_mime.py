"""MIME shapes built by the standard library, parsed back the way a mail client would."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from mailroom import Attachment, Mail
from mailroom.adapters.smtp.mime import StdlibMessageBuilder
from mailroom.errors import InvalidHeader

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
builder = StdlibMessageBuilder(message_id_domain="mail.example.org")


def build(mail: Mail) -> EmailMessage:
    raw = builder.build(mail, message_id=builder.make_message_id(mail), date=NOW)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "SMTP wire form uses CRLF only"
    parsed = message_from_bytes(raw, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def shape(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def test_text_only() -> None:
    message = build(Mail(to="a@example.org", subject="Hi", text="Hello\nworld"))
    assert shape(message) == ["text/plain"]
    assert message.get_content().replace("\r\n", "\n") == "Hello\nworld\n"
    assert message["Date"] == "Wed, 25 Nov 2026 09:30:00 +0000"
    assert message["Message-ID"].endswith("@mail.example.org>")
    assert message["From"] is None, "From is added at delivery from the server's sender"


def test_html_only() -> None:
    assert shape(build(Mail(to="a@example.org", subject="Hi", html="<p>Hi</p>"))) == ["text/html"]


def test_text_and_html_are_alternatives() -> None:
    message = build(Mail(to="a@example.org", subject="Hi", text="Hi", html="<p>Hi</p>"))
    assert shape(message) == ["multipart/alternative", "text/plain", "text/html"]


def test_attachments_and_inline_images() -> None:
    logo = Attachment(filename="logo.png", content=b"\x89PNG fake", inline=True, content_id="logo@x")
    report = Attachment(filename="Bericht über Größe.pdf", content=b"%PDF-1.4 fake")
    message = build(Mail(to="a@example.org", subject="Hi", text="Hi", html='<img src="cid:logo@x">',
                         attachments=[logo, report]))
    assert shape(message) == ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
                              "text/html", "image/png", "application/pdf"]
    parts = {part.get_filename(): part for part in message.walk() if part.get_filename()}
    assert parts["Bericht über Größe.pdf"].get_content() == b"%PDF-1.4 fake"
    assert parts["Bericht über Größe.pdf"].get_content_disposition() == "attachment"
    assert parts["logo.png"]["Content-ID"] == "<logo@x>"
    assert parts["logo.png"].get_content_disposition() == "inline"


def test_non_ascii_subject_and_names_are_encoded() -> None:
    mail = Mail(to="Jürgen Müßig <j@bücher.example>", sender="Zoë <z@example.org>", subject="Grüße aus 東京",
                text="Grüße")
    raw = builder.build(mail, message_id="<x@y>", date=NOW)
    assert raw.isascii(), "non-ASCII text is encoded (RFC 2047), internationalised domains become IDNA"
    message = message_from_bytes(raw, policy=default_policy)
    assert message["Subject"] == "Grüße aus 東京"
    assert message["To"].addresses[0].display_name == "Jürgen Müßig"
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert message["From"].addresses[0].display_name == "Zoë"
    assert message.get_content().strip() == "Grüße"


def test_bcc_never_appears_in_headers() -> None:
    raw = builder.build(Mail(to="a@example.org", bcc="secret@example.org", subject="s", text="t"),
                        message_id="<x@y>", date=NOW)
    assert b"secret@example.org" not in raw
    assert b"Bcc" not in raw


def test_extra_headers_and_reply_to() -> None:
    message = build(Mail(to="a@example.org", reply_to="help@example.org", subject="s", text="t",
                         headers={"X-Campaign": "welcome"}))
    assert message["Reply-To"] == "help@example.org"
    assert message["X-Campaign"] == "welcome"


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nBcc: victim@example.org"}, {"X-Evil": "a\nb"}])
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidHeader, match=r"U\+000D|U\+000A"):
        Mail(to="a@example.org", subject="s", text="t", headers=headers)


def test_with_from_prepends_an_encoded_header() -> None:
    raw = builder.build(Mail(to="a@example.org", subject="s", text="t"), message_id="<x@y>", date=NOW)
    lent, new_message_id = builder.with_from(raw, "Büro <office@example.org>")
    message = message_from_bytes(lent, policy=default_policy)
    assert new_message_id is None and message["Message-ID"] == "<x@y>"
    assert message["From"].addresses[0].display_name == "Büro"
    assert message["From"].addresses[0].addr_spec == "office@example.org"
    assert message.get_content().strip() == "t"


def test_message_id_domain_falls_back_to_the_sender() -> None:
    plain = StdlibMessageBuilder()
    assert plain.make_message_id(Mail(to="a@example.org", sender="x@sender.example", subject="s", text="t")
                                 ).endswith("@sender.example>")
    assert plain.make_message_id(Mail(to="a@example.org", subject="s", text="t")).endswith("@mailroom.localhost>")


@pytest.mark.parametrize("to", ["a@example.org", "jürgen@example.org"])  # the spliced build and the EmailMessage one
def test_a_message_id_made_without_a_domain_takes_the_lent_senders(to: str) -> None:
    mail = Mail(to=to, subject="s", text="t")
    message_id = StdlibMessageBuilder().make_message_id(mail)
    assert message_id.endswith("@mailroom.localhost>")
    raw = StdlibMessageBuilder().build(mail, message_id=message_id, date=NOW)
    lent, new_message_id = StdlibMessageBuilder().with_from(raw, "Shop <app@shop.example>")
    assert new_message_id == message_id.replace("@mailroom.localhost>", "@shop.example>")
    message = message_from_bytes(lent, policy=default_policy)
    assert message["Message-ID"] == new_message_id and message["From"].addresses[0].domain == "shop.example"
    assert lent.split(b"\r\n", 1)[1].replace(new_message_id.encode(), message_id.encode()) == raw
    configured = StdlibMessageBuilder(message_id_domain="ids.example")
    assert configured.with_from(raw, "app@shop.example") == (b"From: app@shop.example\r\n" + raw, None)
