"""A mail as an application asks for it: addresses, subject, bodies, attachments and delivery wishes.

A ``Mail`` that exists is valid: addresses are parsed, header-bound text holds no control or separator
character, there is at least one recipient and a body. Limits that depend on configuration (attachment
size) are checked by the send-mail use case.
"""

from __future__ import annotations

import enum
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailroom.domain.addresses import Address, check_header_text, header_text_problem, parse_addresses
from mailroom.errors import InvalidHeader, InvalidInput, NoRecipients

AddressInput = str | Address
AddressesInput = AddressInput | Sequence[AddressInput] | None

# Headers that mailroom writes itself from the fields of Mail; an extra header may not replace them.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition", "sender", "return-path",
})
# RFC 5322 field-name: printable ASCII except ':'. fullmatch, not "^...$": "$" also matches before a
# trailing "\n", which let "X-Name\n" through to corrupt the header block.
_HEADER_NAME = re.compile(r"[!-9;-~]+")


class Priority(enum.StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher rank is delivered first; stored so the claim index can order by it."""
        return {Priority.HIGH: 3, Priority.NORMAL: 2, Priority.LOW: 1}[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file sent with the mail; ``inline`` with a ``content_id`` for images the HTML body shows."""

    filename: str
    content: bytes
    content_type: str = ""
    inline: bool = False
    content_id: str | None = None

    def __post_init__(self) -> None:
        check_header_text("attachments.filename", self.filename)
        if not self.filename.strip():
            raise InvalidInput("an attachment needs a file name", field="attachments")
        if not isinstance(self.content, bytes):
            raise InvalidInput(f"attachment {self.filename!r}: content must be bytes", field="attachments")
        content_type = self.content_type or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        check_header_text("attachments.content_type", content_type)
        if content_type.count("/") != 1:
            raise InvalidInput(f"attachment {self.filename!r}: content type {content_type!r} is not type/subtype",
                               field="attachments")
        object.__setattr__(self, "content_type", content_type)
        if self.content_id is not None:
            check_header_text("attachments.content_id", self.content_id)
            object.__setattr__(self, "content_id", self.content_id.strip("<>"))
        if self.inline and not self.content_id:
            raise InvalidInput(f"inline attachment {self.filename!r} needs a content_id that the HTML refers "
                               "to as cid:...", field="attachments")

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True, init=False)
class Mail:
    """What to send. Addresses may be given as strings and are parsed when the mail is built.

    ``sender`` is the From address; when missing, the SMTP server's sender address is used at delivery.
    """

    to: tuple[Address, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    sender: Address | None = None
    reply_to: tuple[Address, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    smtp_hint: str | None = None
    priority: Priority = Priority.NORMAL
    send_at: datetime | None = None
    expires_at: datetime | None = None
    tags: tuple[str, ...] = ()
    correlation_id: str | None = None
    template: str | None = None
    """``set_id/name`` when the mail was rendered from a template."""
    locale: str | None = None
    """The template locale actually used."""
    confidential: bool = False
    """The content holds a secret for the recipient only (a password-reset or verification link): it is
    stored encrypted, never shown, downloaded or searched, and dropped once the mail is final."""

    def __init__(self, *, to: AddressesInput = (), subject: str = "", text: str | None = None,
                 html: str | None = None, cc: AddressesInput = (), bcc: AddressesInput = (),
                 sender: AddressInput | None = None, reply_to: AddressesInput = (),
                 attachments: Sequence[Attachment] = (), headers: Mapping[str, str] | None = None,
                 smtp_hint: str | None = None, priority: Priority | str = Priority.NORMAL,
                 send_at: datetime | None = None, expires_at: datetime | None = None,
                 tags: Sequence[str] = (), correlation_id: str | None = None, template: str | None = None,
                 locale: str | None = None, confidential: bool = False) -> None:
        put = object.__setattr__
        put(self, "to", parse_addresses(to, field="to"))
        put(self, "cc", parse_addresses(cc, field="cc"))
        put(self, "bcc", parse_addresses(bcc, field="bcc"))
        put(self, "sender", Address.parse(sender, field="from") if sender else None)
        put(self, "reply_to", parse_addresses(reply_to, field="reply_to"))
        if not (self.to or self.cc or self.bcc):
            raise NoRecipients()
        check_header_text("subject", subject)
        put(self, "subject", subject)
        if text is None and html is None:
            raise InvalidInput("the mail has no body: give text, html or both", field="text")
        put(self, "text", text)
        put(self, "html", html)
        put(self, "attachments", tuple(attachments))
        if any(not isinstance(a, Attachment) for a in self.attachments):
            raise InvalidInput("attachments must be Attachment values", field="attachments")
        put(self, "headers", _checked_headers(headers or {}))
        if smtp_hint is not None:
            check_header_text("smtp_hint", smtp_hint)
        put(self, "smtp_hint", smtp_hint or None)
        try:
            put(self, "priority", Priority(priority))
        except ValueError as exc:
            raise InvalidInput(f"priority must be one of high, normal, low, not {priority!r}",
                               field="priority") from exc
        for name, moment in (("send_at", send_at), ("expires_at", expires_at)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"{name} must be timezone-aware (e.g. datetime.now(UTC))", field=name)
        if send_at and expires_at and expires_at <= send_at:
            raise InvalidInput("expires_at must be after send_at", field="expires_at")
        put(self, "send_at", send_at)
        put(self, "expires_at", expires_at)
        for tag in tags:
            problem = header_text_problem(tag) if isinstance(tag, str) else "it is not a string"
            if problem is not None:
                raise InvalidInput(f"tag {tag!r} cannot be used: {problem}", field="tags")
            if not tag or len(tag) > 100 or "," in tag:
                raise InvalidInput(f"tag {tag!r} must be 1-100 characters without comma or line break",
                                   field="tags")
        put(self, "tags", tuple(tags))
        if correlation_id is not None:
            check_header_text("correlation_id", correlation_id)
        put(self, "correlation_id", correlation_id)
        for name, value in (("template", template), ("locale", locale)):
            if value is not None:
                check_header_text(name, value)
            put(self, name, value or None)
        if not isinstance(confidential, bool):
            raise InvalidInput("confidential must be true or false", field="confidential")
        put(self, "confidential", confidential)

    @property
    def recipients(self) -> tuple[Address, ...]:
        """Every envelope recipient, To then Cc then Bcc, without duplicates."""
        seen: set[str] = set()
        unique: list[Address] = []
        for address in (*self.to, *self.cc, *self.bcc):
            key = address.email.lower()
            if key not in seen:
                seen.add(key)
                unique.append(address)
        return tuple(unique)

    def with_changes(self, **changes: Any) -> Mail:
        """A copy with some fields replaced, validated again."""
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields.update(changes)
        return Mail(**fields)


_FIELDS = ("to", "subject", "text", "html", "cc", "bcc", "sender", "reply_to", "attachments", "headers",
           "smtp_hint", "priority", "send_at", "expires_at", "tags", "correlation_id", "template", "locale",
           "confidential")


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidHeader(str(name), "a header name is printable ASCII without ':' or spaces")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidHeader(name, "mailroom sets this header from the mail's own fields")
        if not isinstance(value, str):
            raise InvalidHeader(name, "the value must be a string")
        check_header_text(name, value)
        checked[name] = value
    return checked
