"""Login sessions and the login throttle's arithmetic.

A web login is a row on the server, found by the SHA-256 of a random key the cookie carries: logging out
revokes that row, and a password change, a reset or disabling an account revokes the user's other rows.
A signed cookie alone cannot be taken back before it expires.

Failed logins are counted per (account, client address) and per client address across accounts, never
per account alone: an attacker elsewhere can lock only their own address out, not the owner. Unknown
addresses are counted the same way, so the answers do not tell which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_LOCKOUT_SECONDS = 15 * 60.0
FORGET_FAILURES_AFTER = timedelta(hours=1)
"""A counter whose last failure is older starts again from one."""
CLIENT_FAILURE_FACTOR = 10
"""One client address may fail this many times ``login_max_failures`` across all accounts."""
ANY_ACCOUNT = " *"
"""The account of the per-client counter; typed addresses are stripped, so none can be this."""
MAX_CLIENT_LENGTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSession:
    """One web login; only the hash of its key is stored."""

    key_hash: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def valid(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """A failure counter: an account (its lower-cased address, known or not) seen from one client address."""

    account: str
    client: str

    @classmethod
    def of(cls, account: str, client: str) -> ThrottleKey:
        return cls(account.strip().lower()[:320], client[:MAX_CLIENT_LENGTH])


def lockout_seconds(failures: int, *, max_failures: int, base_seconds: float) -> float | None:
    """How long a counter at ``failures`` waits: from ``max_failures`` on, ``base_seconds`` doubling with each
    further failure up to 15 minutes; None below it."""
    excess = failures - max_failures
    if excess < 0:
        return None
    return min(MAX_LOCKOUT_SECONDS, base_seconds * float(2 ** min(excess, 20)))
