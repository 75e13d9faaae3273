"""How a worker treats an SMTP server that fails to connect: health, kept apart from the mails' attempts.

A connection that cannot be opened says something about the server, not about the mail that was waiting
for it, so the mail keeps its attempt count and goes to another server or back to the queue. The server:

- refuses one more connection while others of ours are open → it takes fewer connections than
  configured: use as many as are open, and add one back after ``RECOVERY_SENDS`` mails went through;
- answers a mail with "too many" (421, or a 4xx naming a rate or a limit) → it is overloaded or
  throttling us: one connection fewer, and at one connection a pause that grows with each such answer in
  a row; connections come back step by step as mails go through;
- is over one of our own rate limits → a pause until the limit lets the next mail go (``pause``);
- cannot be reached at all, or refuses the login → it cools down: no connection is tried until the
  cool-down ends; each further failure in a row doubles it (``base * 2 ** (n - 1)``, at most
  ``max_seconds``); a refused login starts at ``AUTH_FACTOR`` times the base, because retrying wrong
  credentials quickly is what gets an IP blocked.

Times are monotonic seconds, given by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailroom.errors import Text

AUTH_FACTOR = 10.0
RECOVERY_SENDS = 50
_TOO_MANY = re.compile(r"too many|rate|limit|throttl|try again later|slow down", re.IGNORECASE)


def says_too_many(code: int | None, reply: str | None) -> bool:
    """Whether a server's answer means "you send too much or too fast", as opposed to a mail's trouble."""
    if code == 421:
        return True
    return code is not None and 450 <= code <= 452 and bool(reply and _TOO_MANY.search(reply))


@dataclass(slots=True, kw_only=True)
class ServerHealth:
    configured: int
    """Connections the settings allow."""
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    target: int = 0
    """Connections to use now: the configured count, or fewer after the server refused more."""
    failures: int = 0
    """Failed connects or logins in a row, with no connection open."""
    cooling_until: float = 0.0
    reason: Text | None = None
    throttles: int = 0
    """"Too many" answers in a row at one connection."""
    _sends_since_shrink: int = 0

    def __post_init__(self) -> None:
        if self.configured < 1:
            raise ValueError("a server needs at least one connection")
        self.target = self.target or self.configured

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until

    def connected(self) -> None:
        """A connection opened and logged in: the failure streak ends."""
        self.failures = 0
        self.reason = None

    def connect_failed(self, now: float, reason: Text, *, open_connections: int, auth: bool = False) -> bool:
        """Record a failed connect or login; True when the server cools down, False when it only shrank.

        A refusal while other connections of ours are open is the server's connection limit: shrink to
        what it takes. Otherwise the server is unwell (or the password wrong): cool down, longer each time.
        """
        self.reason = reason
        if open_connections > 0 and not auth:
            self.target = max(1, min(self.target, open_connections))
            self._sends_since_shrink = 0
            return False
        self.failures += 1
        base = self.base_seconds * (AUTH_FACTOR if auth else 1.0)
        self.cooling_until = now + min(self.max_seconds, base * 2 ** (self.failures - 1))
        return True

    def throttled(self, now: float, reason: Text) -> bool:
        """The server answered "too many": one connection fewer; at one, a pause (growing each time in a
        row). True when the server pauses."""
        self.reason = reason
        self._sends_since_shrink = 0
        if self.target > 1:
            self.target -= 1
            return False
        self.throttles += 1
        self.pause(now + min(self.max_seconds, self.base_seconds * 2 ** (self.throttles - 1)), reason)
        return True

    def pause(self, until: float, reason: Text) -> None:
        """No mail goes to the server before ``until`` (a rate limit, or its own "too many")."""
        self.cooling_until = max(self.cooling_until, until)
        self.reason = reason

    def sent(self) -> bool:
        """A mail went through; True when one more connection may be tried (recovering step by step)."""
        self.throttles = 0
        if self.target >= self.configured:
            return False
        self._sends_since_shrink += 1
        if self._sends_since_shrink >= RECOVERY_SENDS:
            self._sends_since_shrink = 0
            self.target += 1
            return True
        return False
