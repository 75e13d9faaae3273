"""MIME messages built with the standard library's ``email`` package, never by hand.

Shapes: text only, HTML only, text + HTML as multipart/alternative, inline images in
multipart/related, attachments in multipart/mixed. The SMTP policy gives CRLF line ends and RFC 2047 /
RFC 2231 encoding of non-ASCII subjects, names and file names; SMTPUTF8 is used only when an address
has a non-ASCII local part, which no encoding can carry.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, Policy
from functools import lru_cache

from mailroom.domain.addresses import Address
from mailroom.domain.mail import Attachment, Mail

DEFAULT_MESSAGE_ID_DOMAIN = "mailroom.localhost"


class StdlibMessageBuilder:
    """Implements the ``MessageBuilder`` port."""

    def __init__(self, *, message_id_domain: str | None = None) -> None:
        self._message_id_domain = message_id_domain

    def make_message_id(self, mail: Mail) -> str:
        """``<random@domain>``: the configured domain, else the sender's, so replies thread on its side."""
        domain = self._message_id_domain or (mail.sender.ascii_email.rpartition("@")[2] if mail.sender else None)
        return email.utils.make_msgid(domain=domain or DEFAULT_MESSAGE_ID_DOMAIN)

    def build(self, mail: Mail, *, message_id: str, date: datetime) -> bytes:
        policy = _policy_for(mail)
        message = _body(mail)
        if mail.sender:
            message["From"] = _header_address(mail.sender)
        if mail.to:
            message["To"] = [_header_address(a) for a in mail.to]
        if mail.cc:
            message["Cc"] = [_header_address(a) for a in mail.cc]
        if mail.reply_to:
            message["Reply-To"] = [_header_address(a) for a in mail.reply_to]
        # Bcc recipients are only in the envelope: a Bcc header would reveal them to everyone.
        message["Subject"] = mail.subject
        message["Date"] = email.utils.format_datetime(date)
        message["Message-ID"] = message_id
        for name, value in mail.headers.items():
            message[name] = value
        return message.as_bytes(policy=policy)

    def with_from(self, message: bytes, sender: str) -> bytes:
        """Prepend a From header; the rest of the stored message stays byte for byte as it was."""
        return _from_header(sender) + message


@lru_cache(maxsize=256)
def _from_header(sender: str) -> bytes:
    """The encoded ``From:`` line; cached because a worker adds the same few senders to every mail."""
    address = Address.parse(sender, field="from")
    header = EmailMessage(policy=_policy_for_addresses([address]))
    header["From"] = _header_address(address)
    return header.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"


def _policy_for(mail: Mail) -> Policy:
    return _policy_for_addresses((*mail.to, *mail.cc, *mail.reply_to, *([mail.sender] if mail.sender else [])))


def _policy_for_addresses(addresses: Iterable[Address]) -> Policy:
    if any(not a.ascii_email.isascii() for a in addresses):
        return SMTPUTF8
    return SMTP


def _header_address(address: Address) -> HeaderAddress:
    # The ASCII form keeps internationalised domains readable by servers without SMTPUTF8.
    local, _, domain = address.ascii_email.rpartition("@")
    return HeaderAddress(display_name=address.name, username=local, domain=domain)


def _body(mail: Mail) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    inline = [a for a in mail.attachments if a.inline]
    files = [a for a in mail.attachments if not a.inline]
    if mail.text is not None:
        message.set_content(mail.text, subtype="plain", charset="utf-8", cte=_text_cte(mail.text))
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html", charset="utf-8", cte=_text_cte(mail.html))
    else:
        message.set_content(mail.html or "", subtype="html", charset="utf-8", cte=_text_cte(mail.html or ""))
    if inline:
        html_part = _html_part(message)
        if html_part is None:
            # Inline images without HTML have nothing to show them in: send them as plain attachments.
            files = [*inline, *files]
        else:
            html_part.make_related()
            for attachment in inline:
                _attach(html_part, attachment, disposition="inline")
    for attachment in files:
        _attach(message, attachment, disposition="attachment")
    return message


def _html_part(message: EmailMessage) -> EmailMessage | None:
    if message.get_content_type() == "text/html":
        return message
    for part in message.iter_parts():
        if isinstance(part, EmailMessage) and part.get_content_type() == "text/html":
            return part
    return None


def _attach(message: EmailMessage, attachment: Attachment, *, disposition: str) -> None:
    maintype, subtype = attachment.content_type.split("/", 1)
    content_id = f"<{attachment.content_id}>" if attachment.content_id else None
    if disposition == "inline":
        message.add_related(attachment.content, maintype=maintype, subtype=subtype, disposition="inline",
                            filename=attachment.filename, cid=content_id)
    else:
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, disposition=disposition,
                               filename=attachment.filename, cid=content_id)


def _text_cte(text: str) -> str:
    """quoted-printable keeps mostly-ASCII text readable; base64 is shorter for mostly non-ASCII text."""
    non_ascii = sum(1 for ch in text if not ch.isascii())
    return "base64" if non_ascii * 3 > len(text) else "quoted-printable"
