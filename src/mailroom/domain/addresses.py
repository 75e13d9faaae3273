"""E-mail addresses, validated once when built."""

from __future__ import annotations

import email.utils
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address as HeaderAddress
from functools import lru_cache

from mailroom.errors import InvalidAddress, InvalidHeader

# What no header-bound text may hold: every control character (Cc: C0, DEL, C1 with NEL), the line and
# paragraph separators (Zl, Zp) and lone surrogates (Cs, which no encoding can carry). str.splitlines()
# breaks at VT, FF, FS, GS, RS, NEL, LS and PS, so the email package refuses those only when the message is
# built, long after the mail was accepted; ESC and DEL reach a terminal raw. Of the format characters (Cf)
# only the bidirectional embeddings, overrides and isolates are refused: they make "gro.elpmaxe" read as
# "example.org". Joiners (emoji), soft hyphens and marks are left alone; mail clients show them as meant.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def header_text_problem(value: str) -> str | None:
    """Why ``value`` cannot go into a mail header, or None when it can. The one check for header text."""
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    char = found.group()
    try:
        label = unicodedata.name(char)
    except ValueError:  # control characters and surrogates have no name, only an alias
        label = {"\r": "CARRIAGE RETURN", "\n": "LINE FEED", "\t": "TAB", "\x0b": "VERTICAL TAB",
                 "\x0c": "FORM FEED", "\x1b": "ESCAPE", "\x7f": "DELETE", "\x85": "NEXT LINE",
                 "\x00": "NUL"}.get(char, "control character" if unicodedata.category(char) == "Cc" else
                                    "unpaired surrogate")
    return (f"it contains U+{ord(char):04X} ({label}) at position {found.start() + 1}: control and separator "
            "characters cannot be in a mail header")


def check_header_text(field: str, value: str) -> None:
    """Refuse ``value`` for a header-bound ``field`` (see ``header_text_problem``), naming the field."""
    problem = header_text_problem(value)
    if problem is not None:
        raise InvalidHeader(field, problem)


# The old name: its callers (users, servers, templates) now get the whole check, not only CR/LF.
reject_line_breaks = check_header_text


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
        for label, value in (("address", self.email), ("display name", self.name)):
            problem = header_text_problem(value)
            if problem is not None:
                raise InvalidAddress(value, f"the {label} is not allowed: {problem}")
        normalized, ascii_email = validated_address(self.email)
        object.__setattr__(self, "email", normalized)
        object.__setattr__(self, "ascii_email", ascii_email)

    @classmethod
    def parse(cls, text: str | Address, *, field: str | None = None) -> Address:
        """Build from ``"a@example.org"`` or ``"Ann Example <a@example.org>"``."""
        if isinstance(text, Address):
            return text
        if not isinstance(text, str):
            raise InvalidAddress(repr(text), "expected a string", field=field)
        problem = header_text_problem(text)
        if problem is not None:
            raise InvalidAddress(text, problem, field=field)
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
        return domain_of(self.email)

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


def domain_of(email_address: str) -> str:
    """The lower-cased part after the last @ (a quoted local part may hold one too)."""
    return email_address.rpartition("@")[2].lower()


def envelope_address(email_address: str) -> str:
    """The form of an address for MAIL FROM / RCPT TO, the same as the headers use.

    An internationalised domain goes out in its IDNA 2008 ASCII form (email-validator's ``ascii_email``,
    as the MIME headers have it), so servers without SMTPUTF8 take the mail; a non-ASCII local part has
    no ASCII form and needs SMTPUTF8.
    """
    if email_address.isascii():
        return email_address
    try:
        return validated_address(email_address)[1]
    except InvalidAddress:
        return email_address


@lru_cache(maxsize=8192)
def validated_address(email_address: str) -> tuple[str, str]:
    """``(normalized, ASCII form)`` of an address, as email-validator gives them; InvalidAddress if invalid.

    Cached (bounded, keyed on the string): senders, staff and frequent recipients come in mail after mail,
    and validating one cost about 0.1 ms. An exception is never cached, so an invalid address is refused
    every time.
    """
    # Imported here, not with the module: its tables take tens of milliseconds to build, which every CLI
    # call (even `mailroom --help`) paid through the domain's enums. After the first call this costs nothing.
    from email_validator import EmailNotValidError, validate_email

    try:
        valid = validate_email(email_address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(email_address, str(exc)) from exc
    return valid.normalized, valid.ascii_email or valid.normalized
