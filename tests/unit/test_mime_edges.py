"""The cheap MIME path (compat32 API) against the edges a message must survive: folding, encoded words,
line ends, SMTPUTF8 and long parameters (issue #12, item 1). Parsed back as a mail client would."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from io import BytesIO

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailroom import Attachment, Mail
from mailroom.adapters.smtp import mime
from mailroom.adapters.smtp.mime import StdlibMessageBuilder
from mailroom.domain.addresses import Address

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
builder = StdlibMessageBuilder(message_id_domain="mail.example.org")


def raw_of(mail: Mail) -> bytes:
    return builder.build(mail, message_id="<x@mail.example.org>", date=NOW)


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def header_block(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_long_subjects_names_and_many_recipients_fold_within_the_line_limits() -> None:
    long_word = "x" * 1200
    names = [f"Jürgen Müßig-Überlänge {i} " + "ö" * 40 for i in range(3)]
    mail = Mail(to=[f'"{name}" <user{i}@example.org>' for i, name in enumerate(names)]
               + [f"person{i}@example.org" for i in range(60)],
               subject=f"Rechnung {long_word} Grüße " + "日本語 " * 30, text="t",
               headers={"X-Long": "word " * 100})
    raw = raw_of(mail)
    assert raw.isascii()
    assert all(len(line) <= 998 for line in header_block(raw)), "RFC 5322 line limit"
    assert all(len(word) <= 75 for word in re.findall(rb"=\?[^?]+\?[bqBQ]\?[^?]*\?=", raw)), "RFC 2047 limit"
    message = parse(raw)
    assert str(message["Subject"]) == mail.subject
    assert str(message["X-Long"]) == ("word " * 100).strip() or str(message["X-Long"]) == "word " * 100
    addresses = message["To"].addresses
    assert [a.addr_spec for a in addresses] == [a.email for a in mail.to]
    assert [a.display_name.replace(" ", "") for a in addresses[:3]] == [n.strip().replace(" ", "") for n in names]


def test_text_that_looks_like_an_encoded_word_stays_text() -> None:
    mail = Mail(to='"=?utf-8?q?Boss?=" <a@example.org>', subject="=?utf-8?q?Hacked?=", text="t",
                headers={"X-Note": "=?utf-8?b?SGk=?="})
    message = parse(raw_of(mail))
    assert str(message["Subject"]) == "=?utf-8?q?Hacked?="
    assert str(message["X-Note"]) == "=?utf-8?b?SGk=?="
    assert message["To"].addresses[0].display_name == "=?utf-8?q?Boss?="


def test_body_line_ends_from_lines_and_trailing_spaces_survive() -> None:
    text = "From the shop\r\nline with trailing spaces   \rlast line = end\n.\nFrom again"
    raw = raw_of(Mail(to="a@example.org", subject="s", text=text))
    assert b"\n>From" not in raw, "no mbox From-mangling in a mail sent over SMTP"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    body = parse(raw).get_content().replace("\r\n", "\n")
    assert body == "From the shop\nline with trailing spaces   \nlast line = end\n.\nFrom again\n"


def test_mostly_non_ascii_text_is_base64_and_round_trips() -> None:
    text = "日本語のテキストです。" * 20
    message = parse(raw_of(Mail(to="a@example.org", subject="s", text=text, html=f"<p>{text}</p>")))
    parts = list(message.walk())
    assert [p.get("Content-Transfer-Encoding") for p in parts[1:]] == ["base64", "base64"]
    assert parts[1].get_content().strip() == text
    assert parts[2].get_content().strip() == f"<p>{text}</p>"


def test_an_smtputf8_local_part_is_written_in_utf8() -> None:
    mail = Mail(to="Jörg <jörg@bücher.example>", sender="zoë@example.org", subject="Grüße", text="t")
    raw = raw_of(mail)
    assert "jörg@".encode() in raw, "a non-ASCII local part has no ASCII form: SMTPUTF8 carries it as UTF-8"
    message = message_from_string(raw.decode(), policy=default_policy)  # an SMTPUTF8 reader decodes UTF-8
    assert isinstance(message, EmailMessage)
    assert message["To"].addresses[0].username == "jörg"
    assert message["From"].addresses[0].username == "zoë"
    assert str(message["Subject"]) == "Grüße"


def test_long_file_names_and_content_ids_round_trip() -> None:
    name = "Überweisungsbestätigung für das Geschäftsjahr " * 6 + ".pdf"
    logo = Attachment(filename="logo.png", content=b"\x89PNG", inline=True, content_id="logo-" + "x" * 200)
    mail = Mail(to="a@example.org", subject="s", text="t", html=f'<img src="cid:{logo.content_id}">',
                attachments=[logo, Attachment(filename=name, content=b"%PDF")])
    raw = raw_of(mail)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    files = {part.get_filename(): part for part in parse(raw).walk() if part.get_filename()}
    assert files[name].get_content() == b"%PDF"
    assert files["logo.png"]["Content-ID"] == f"<{logo.content_id}>"


def test_html_only_with_inline_images_is_related() -> None:
    logo = Attachment(filename="logo.png", content=b"\x89PNG", inline=True, content_id="logo")
    message = parse(raw_of(Mail(to="a@example.org", subject="s", html='<img src="cid:logo">', attachments=[logo])))
    assert [p.get_content_type() for p in message.walk()] == ["multipart/related", "text/html", "image/png"]
    assert message["MIME-Version"] == "1.0"


def _whole_message_flattened(mail: Mail) -> bytes:
    """What the generator writes for the whole message in one flatten (how mails were built before the body
    was flattened apart): the reference the spliced build must equal."""
    message = mime._compat_body(mail.text, mail.html, mail.attachments)
    if mail.sender:
        message["From"] = mime._mailbox(mail.sender)
    message["To"] = mime._mailboxes(mail.to)
    if mail.cc:
        message["Cc"] = mime._mailboxes(mail.cc)
    message["Subject"] = mime._unstructured(mail.subject)
    message["Date"] = mime._date_header(NOW)
    message["Message-ID"] = "<x@mail.example.org>"
    for name, value in mail.headers.items():
        message[name] = mime._unstructured(value)
    out = BytesIO()
    mime._WireGenerator(out, policy=mime._WIRE).flatten(message)
    return out.getvalue()


_BOUNDARY = re.compile(rb"={15}\d+==")
_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=120)


@settings(max_examples=150, deadline=None)
@given(subject=_words, name=_words, text=st.none() | st.text(max_size=3000), html=st.none() | _words,
       header=_words, attached=st.booleans())
def test_a_mail_is_the_bytes_one_flatten_of_the_whole_message_gives(
        subject: str, name: str, text: str | None, html: str | None, header: str, attached: bool) -> None:
    assume(text is not None or html is not None)
    attachments = [Attachment(filename="a.txt", content=b"abc", content_type="text/plain")] if attached else []
    mail = Mail(to=[Address(email="to@example.org", name=name)], cc=["cc@example.org"], sender="me@example.org",
                subject=subject.strip(), text=text, html=html, headers={"X-Note": header.strip()},
                attachments=attachments)
    assert _BOUNDARY.sub(b"B", raw_of(mail)) == _BOUNDARY.sub(b"B", _whole_message_flattened(mail))
