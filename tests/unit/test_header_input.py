"""Header-bound text: every string that ends up in a header is refused with control or separator characters,
naming the field, and every valid mail survives a MIME round trip unchanged (issue #11, item 7)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.policy import compat32
from email.policy import default as default_policy
from email.utils import getaddresses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailroom import Attachment, Mail
from mailroom.adapters.smtp.mime import StdlibMessageBuilder
from mailroom.domain.addresses import Address, header_text_problem
from mailroom.domain.mail import RESERVED_HEADERS
from mailroom.errors import InvalidInput

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
builder = StdlibMessageBuilder(message_id_domain="mail.example.org")

# VT, FF, FS, GS, RS, NEL, LS, PS: str.splitlines() breaks at each, so the email package refuses them late
# (a 500); ESC, DEL, NUL, BEL reach a terminal or a header raw; RLO reverses what a reader sees.
BAD = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b", "\x7f", "\x00", "\x07",
       "\r", "\n", "\t", "\u202e", "\u2066", "\ud800"]


def mail(**fields: object) -> Mail:
    base: dict[str, object] = {"to": "ann@example.org", "subject": "Hello", "text": "Hi"}
    return Mail(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("char", BAD, ids=[f"U+{ord(c):04X}" for c in BAD])
@pytest.mark.parametrize(("build", "field"), [
    (lambda c: mail(subject=f"a{c}b"), "subject"),
    (lambda c: mail(headers={"X-Note": f"a{c}b"}), "X-Note"),
    (lambda c: mail(attachments=[Attachment(filename=f"a{c}b.txt", content=b"x")]), "attachments.filename"),
    (lambda c: mail(html='<img src="cid:x">', attachments=[
        Attachment(filename="a.png", content=b"x", inline=True, content_id=f"x{c}y@example.org")]),
     "attachments.content_id"),
    (lambda c: mail(to=f'"Ann{c}Example" <ann@example.org>'), "to"),
    (lambda c: mail(sender=f'"Ann{c}Example" <ann@example.org>'), "from"),
    (lambda c: mail(reply_to=[f'"Ann{c}Example" <ann@example.org>']), "reply_to"),
    (lambda c: Address(email="ann@example.org", name=f"Ann{c}"), None),
    (lambda c: mail(tags=[f"a{c}b"]), "tags"),
    (lambda c: mail(smtp_hint=f"a{c}b"), "smtp_hint"),
    (lambda c: mail(correlation_id=f"a{c}b"), "correlation_id"),
])
def test_control_and_separator_characters_are_refused_naming_the_field(build: object, field: str | None,
                                                                         char: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build(char)  # type: ignore[operator]
    assert caught.value.field == field
    assert f"U+{ord(char):04X}" in str(caught.value)


@pytest.mark.parametrize("name", ["X-Custom\n", "X-Custom\r\n", "X Custom", "X-Cüstom", "X:Custom", ""])
def test_a_malformed_header_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        mail(headers={name: "value"})
    assert caught.value.field == name  # the API answers headers.<name>


def test_ordinary_unicode_is_kept() -> None:
    # Emoji with a zero-width joiner, right-to-left text and a soft hyphen are format characters that mail
    # clients show as intended: only the dangerous ones are refused.
    kept = mail(subject="Grüße 👩‍💻 שלום co\u00adop", to='"Zoë Ål" <zoe@example.org>')
    assert kept.subject == "Grüße 👩‍💻 שלום co\u00adop"
    assert header_text_problem("Grüße") is None


# --- the MIME round trip, as a property ----------------------------------------------------------------

_header_char = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"),
                             exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Whitespace at the ends and runs of it are folded by any header writer; the property is about content.
_header_text = st.text(_header_char, max_size=40).map(lambda s: " ".join(s.split()))
_names = st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=20)
_local = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"), min_size=1, max_size=12)
_addresses = st.builds(lambda local, name: Address(email=f"{local}@example.org", name=name),
                       _local, st.one_of(st.just(""), _names))
_header_names = st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z").filter(lambda n: n.lower() not in RESERVED_HEADERS)
# A body may hold any text, but line ends are the writer's: only LF, which SMTP sends as CRLF.
_body_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"),
                                   include_characters="\n"), max_size=80)
_filenames = st.builds(lambda stem: f"{stem}.bin", _header_text.filter(lambda s: s.strip() != ""))


def _round_trip(value: Mail) -> tuple[EmailMessage, Message]:
    raw = builder.build(value, message_id=builder.make_message_id(value), date=NOW)
    parsed = message_from_bytes(raw, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed, message_from_bytes(raw, policy=compat32)


def _parsed_addresses(raw: Message, header: str) -> list[tuple[str, str]]:
    # Decoded by RFC 2047's rule (whitespace between encoded words is dropped): Python 3.11's address parser
    # keeps a space where a long name was folded between two encoded words, which mail clients do not.
    value = raw[header]
    return getaddresses([str(make_header(decode_header(value)))]) if value is not None else []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=_header_text, to=st.lists(_addresses, min_size=1, max_size=3),
       reply_to=st.lists(_addresses, max_size=2), sender=st.one_of(st.none(), _addresses),
       headers=st.dictionaries(_header_names, _header_text, max_size=3),
       filenames=st.lists(_filenames, max_size=2), text=_body_text)
def test_every_valid_mail_round_trips_through_mime(subject: str, to: list[Address], reply_to: list[Address],
                                                   sender: Address | None, headers: dict[str, str],
                                                   filenames: list[str], text: str) -> None:
    # Header names are case-insensitive: two that differ only in case would be one header after parsing.
    headers = {name: value for name, value in headers.items()
               if [n.lower() for n in headers].count(name.lower()) == 1}
    value = Mail(to=to, reply_to=reply_to, sender=sender, subject=subject, text=text, headers=headers,
                 attachments=[Attachment(filename=name, content=b"\x00\x01") for name in filenames])
    message, raw = _round_trip(value)
    assert str(message["Subject"]) == subject
    assert _parsed_addresses(raw, "To") == [(a.name, a.email) for a in to]
    assert _parsed_addresses(raw, "Reply-To") == [(a.name, a.email) for a in reply_to]
    assert _parsed_addresses(raw, "From") == ([(sender.name, sender.email)] if sender else [])
    for name, header_value in headers.items():
        assert str(message[name]) == header_value
    attachments = [part for part in message.iter_attachments() if isinstance(part, EmailMessage)]
    assert [part.get_filename() for part in attachments] == filenames
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")


_bad_char = st.sampled_from(BAD)


@settings(max_examples=60, deadline=None)
@given(char=_bad_char, where=st.sampled_from(["subject", "header", "filename", "name"]),
       prefix=_header_text, suffix=_header_text)
def test_every_invalid_mail_is_refused_at_send_mail(char: str, where: str, prefix: str, suffix: str) -> None:
    bad = f"{prefix}{char}{suffix}"
    with pytest.raises(InvalidInput):
        # The Mail cannot even be built: send_mail never sees it, and nothing reaches the outbox.
        if where == "subject":
            mail(subject=bad)
        elif where == "header":
            mail(headers={"X-Note": bad})
        elif where == "filename":
            mail(attachments=[Attachment(filename=f"{bad}.txt", content=b"")])
        else:
            mail(to=[Address(email="ann@example.org", name=bad)])
