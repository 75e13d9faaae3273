"""SMTP servers (their public part; the password lives in the secret box) and the choice among them."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailroom.domain.addresses import Address, envelope_address, reject_line_breaks
from mailroom.errors import ConfigurationError, InvalidInput

# Bounds of what an admin may enter: a priority only orders servers, and a timeout over an hour is a typo
# (inf or 1e300 would make a hung server hold a delivery for ever, and not fit the database either).
MIN_PRIORITY = -1_000_000
MAX_PRIORITY = 1_000_000
MAX_TIMEOUT_SECONDS = 3600.0


class Security(enum.StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """What an admin enters for a server, without the password."""

    name: str
    host: str
    port: int = 587
    security: Security = Security.STARTTLS
    username: str = ""
    sender: str = ""
    priority: int = 0
    enabled: bool = True
    timeout_seconds: float = 30.0
    helo_name: str = ""
    """The name mailroom gives in EHLO; empty: the worker's default (see ``helo_name_for``)."""

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("host", self.host), ("username", self.username),
                             ("EHLO name", self.helo_name)):
            reject_line_breaks(f"server {label}", value)
        if not self.name.strip():
            raise InvalidInput("an SMTP server needs a name", field="name")
        if not self.host.strip():
            raise InvalidInput("an SMTP server needs a host", field="host")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise InvalidInput("port {port} is not between 1 and 65535", {"port": self.port}, field="port")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int) \
                or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidInput("priority {priority} is not a whole number between {low} and {high}",
                               {"priority": self.priority, "low": MIN_PRIORITY, "high": MAX_PRIORITY}, field="priority")
        try:
            object.__setattr__(self, "security", Security(self.security))
        except ValueError as exc:
            raise InvalidInput("security must be starttls, tls or none, not {security!r}", {"security": self.security},
                               field="security") from exc
        if self.sender:
            Address.parse(self.sender, field="sender")
        if not (isinstance(self.timeout_seconds, (int, float)) and math.isfinite(self.timeout_seconds)
                and 0 < self.timeout_seconds <= MAX_TIMEOUT_SECONDS):
            raise ConfigurationError(f"timeout_seconds must be a number of seconds above 0 and at most "
                                     f"{MAX_TIMEOUT_SECONDS:g}, not {self.timeout_seconds!r}",
                                     field="timeout_seconds")
        if self.helo_name and not _HOSTNAME.fullmatch(self.helo_name):
            raise InvalidInput("EHLO name {name!r} is not a host name", {"name": self.helo_name}, field="helo_name")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServer(ServerSettings):
    id: str
    has_password: bool = False

    @property
    def from_address(self) -> str | None:
        """The From of mails that name none: the sender address, else the username when it is an address."""
        if self.sender:
            return self.sender
        if "@" in self.username:
            return self.username
        return None


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


def is_fully_qualified(name: str) -> bool:
    """A dotted host name that is not a local one: what Postfix's ``reject_non_fqdn_helo_hostname`` accepts."""
    lowered = name.lower().rstrip(".")
    return "." in lowered and not lowered.endswith((".localdomain", ".local", ".localhost")) \
        and bool(_HOSTNAME.fullmatch(lowered))


def helo_name_for(server: SmtpServer, *, configured: str | None, fqdn: str, sender: str | None) -> str:
    """The EHLO name: the server's own, else the configured one, else this host's FQDN when it is one,
    else the domain of the sender (the server's sender address, else the mail's).

    Many servers refuse a bare ``localhost`` for good (``reject_non_fqdn_helo_hostname``), so an
    unqualified host name is the last resort, not the default.
    """
    if server.helo_name:
        return server.helo_name
    if configured:
        return configured
    if is_fully_qualified(fqdn):
        return fqdn
    for address in (server.from_address, sender):
        if address and "@" in address:
            return envelope_address(address).rpartition("@")[2]
    return fqdn


def servers_to_try(servers: Iterable[SmtpServer], hint: str | None) -> list[SmtpServer]:
    """Enabled servers in the order to try them: the hinted one (by name or id) first, then by priority.

    A hint that names no enabled server is ignored, as the reference does, rather than stalling the mail.
    """
    enabled = sorted((s for s in servers if s.enabled), key=lambda s: (-s.priority, s.name))
    if hint:
        hinted = [s for s in enabled if hint in (s.name, s.id)]
        return hinted + [s for s in enabled if s not in hinted]
    return enabled
