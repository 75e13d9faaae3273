"""When to try a deferred mail again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailroom.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The wait after attempt ``n`` (1-based) is
    ``min(max_delay_seconds, base_delay_seconds * factor ** (n - 1))`` scaled by a random factor in
    ``[1 - jitter, 1]``, so workers that failed together do not all come back at the same second.
    After ``max_attempts`` attempts a temporary failure becomes final.
    """

    base_delay_seconds: float = 60.0
    factor: float = 2.0
    max_delay_seconds: float = 3600.0
    jitter: float = 0.25
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if self.base_delay_seconds < 0 or self.max_delay_seconds < self.base_delay_seconds:
            raise ConfigurationError("retry delays must satisfy 0 <= base_delay_seconds <= max_delay_seconds")
        if self.factor < 1:
            raise ConfigurationError("retry factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("retry jitter must lie between 0 and 1")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_delay_seconds, self.base_delay_seconds * self.factor ** max(0, attempt - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1.0)
        return base * spread

    def next_attempt_at(self, attempt: int, now: datetime, rng: random.Random | None = None) -> datetime:
        return now + timedelta(seconds=self.delay_seconds(attempt, rng))

    def exhausted(self, attempts_made: int) -> bool:
        return attempts_made >= self.max_attempts
