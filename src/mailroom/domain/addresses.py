"""E-mail addresses, validated once when built."""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address as HeaderAddress

from email_validator import EmailNotValidError, validate_email

from mailroom.errors import InvalidAddress, InvalidHeader

_LINE_BREAKS = ("\r", "\n")


def reject_line_breaks(name: str, value: str) -> None:
    """Refuse CR/LF in anything that ends up in a header: it would let a value inject headers."""
    if any(ch in value for ch in _LINE_BREAKS):
        raise InvalidHeader(name, "it contains a line break (CR or LF), which could inject headers")


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: ``email`` as normalised by email-validator, plus an optional display name.

    Internationalised domains are kept in Unicode in ``email`` and offered in ASCII (IDNA) in
    ``ascii_email`` for SMTP servers without SMTPUTF8.
    """

    email: str
    name: str = ""
    ascii_email: str = ""

    def __post_init__(self) -> None:
        reject_line_breaks("address", self.email)
        reject_line_breaks("display name", self.name)
        try:
            valid = validate_email(self.email, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError as exc:
            raise InvalidAddress(self.email, str(exc)) from exc
        object.__setattr__(self, "email", valid.normalized)
        object.__setattr__(self, "ascii_email", valid.ascii_email or valid.normalized)

    @classmethod
    def parse(cls, text: str | Address, *, field: str | None = None) -> Address:
        """Build from ``"a@example.org"`` or ``"Ann Example <a@example.org>"``."""
        if isinstance(text, Address):
            return text
        if not isinstance(text, str):
            raise InvalidAddress(repr(text), "expected a string", field=field)
        reject_line_breaks(field or "address", text)
        stripped = text.strip()
        if "<" in stripped or ">" in stripped:
            name, addr = email.utils.parseaddr(stripped)
            if not addr or not stripped.endswith(">"):
                raise InvalidAddress(text, "expected 'Display Name <local@domain>'", field=field)
        else:
            name, addr = "", stripped
        try:
            return cls(email=addr, name=name.strip())
        except InvalidAddress as exc:
            raise InvalidAddress(text, exc.reason, field=field) from exc

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()

    def __str__(self) -> str:
        local, _, domain = self.email.rpartition("@")
        return str(HeaderAddress(display_name=self.name, username=local, domain=domain)) if self.name else self.email


def parse_addresses(values: str | Address | Sequence[str | Address] | None,
                    *, field: str) -> tuple[Address, ...]:
    """Addresses from one value or a list; ``None`` is no address."""
    if values is None:
        return ()
    if isinstance(values, (str, Address)):
        values = [values]
    return tuple(Address.parse(v, field=field) for v in values)


def envelope_address(email_address: str) -> str:
    """The form of an address for MAIL FROM / RCPT TO, the same as the headers use.

    An internationalised domain goes out in its IDNA 2008 ASCII form (email-validator's ``ascii_email``,
    as the MIME headers have it), so servers without SMTPUTF8 take the mail; a non-ASCII local part has
    no ASCII form and needs SMTPUTF8.
    """
    if email_address.isascii():
        return email_address
    try:
        valid = validate_email(email_address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return email_address
    return valid.ascii_email or valid.normalized
