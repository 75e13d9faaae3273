"""Rate limits: at most N mails in any window of a second, minute, hour or day, per SMTP server or per
recipient domain, shared by every worker.

A limit holds for *any* window of its length, not for calendar windows: "100 per minute" never lets 101
mails out within 60 seconds, also across the turn of a minute (a fixed-window counter would allow 200
there). Storage keeps, per limit, the times of its last N sends; a mail may go when the oldest of them is
a full window old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum

from mailroom.domain.addresses import domain_of, envelope_address, validated_address
from mailroom.errors import InvalidAddress, InvalidInput, Text

# The log of sends keeps one row per mail a limit allows: above this, setting a limit would write a table's
# worth of rows at once. A larger quota is set on a shorter window (20,000 per hour is 480,000 a day).
MAX_COUNT = 20_000


class Window(Enum):
    SECOND = 1
    MINUTE = 60
    HOUR = 3600
    DAY = 86400

    @property
    def seconds(self) -> int:
        return self.value

    @property
    def label(self) -> str:
        return self.name.lower()


class ScopeKind(StrEnum):
    SERVER = "server"
    DOMAIN = "domain"


@dataclass(frozen=True, slots=True, order=True)
class LimitScope:
    """What a limit applies to: one SMTP server (by id) or one recipient domain (lower-case, ASCII)."""

    kind: ScopeKind
    target: str

    @classmethod
    def server(cls, server_id: str) -> LimitScope:
        return cls(ScopeKind.SERVER, server_id)

    @classmethod
    def domain(cls, domain: str) -> LimitScope:
        """The domain as recipients' envelope addresses carry it: lower-case, IDNA 2008 ASCII form."""
        name = domain.strip().lower().rstrip(".")
        try:
            ascii_form = "" if "@" in name else validated_address(f"postmaster@{name}")[1]
        except InvalidAddress:
            ascii_form = ""
        if not ascii_form:
            raise InvalidInput(f"{domain!r} is not a domain name (for example gmail.com)", field="domain")
        return cls(ScopeKind.DOMAIN, domain_of(ascii_form))


@dataclass(frozen=True, slots=True)
class RateLimit:
    count: int
    window: Window

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise InvalidInput(f"a limit per {self.window.label} must be between 1 and {MAX_COUNT:,} mails "
                               f"(got {self.count}); leave it out for no limit, or set a larger quota on a "
                               "shorter window", field=f"per_{self.window.label}")

    def __str__(self) -> str:
        return f"{self.count}/{self.window.label}"


@dataclass(frozen=True, slots=True)
class LimitUse:
    """A limit and how many of its mails went out in the last window."""

    scope: LimitScope
    limit: RateLimit
    used: int


@dataclass(frozen=True, slots=True)
class Denial:
    """A reservation refused: the earliest time the blocking limit lets a mail go."""

    scope: LimitScope
    limit: RateLimit
    until: datetime

    def reason(self, scope_name: str) -> Text:
        return Text("waiting for the rate limit of {scope} ({limit}): the next mail may go at {until}",
                    {"scope": scope_name, "limit": str(self.limit), "until": self.until.isoformat(timespec="seconds")})


def limits_from(*, per_second: int | None = None, per_minute: int | None = None, per_hour: int | None = None,
                per_day: int | None = None) -> tuple[RateLimit, ...]:
    """The limits among the four optional counts (None: no limit for that window; 0 is refused, since it
    would stop all mail rather than lift the limit)."""
    counts = {Window.SECOND: per_second, Window.MINUTE: per_minute, Window.HOUR: per_hour, Window.DAY: per_day}
    return tuple(RateLimit(count, window) for window, count in counts.items() if count is not None)


def recipient_domains(recipients: tuple[str, ...] | list[str]) -> set[str]:
    """The domains as the envelope carries them (IDNA 2008 ASCII, lower-case), the form limits are kept in."""
    return {domain_of(envelope_address(r)) for r in recipients if "@" in r}


def oldest_allows(oldest_send: datetime, limit: RateLimit, now: datetime) -> datetime | None:
    """None when a mail may go now given the oldest of the limit's last N sends, else when it may."""
    free_at = oldest_send + timedelta(seconds=limit.window.seconds)
    return None if free_at <= now else free_at
