"""Rate limits per SMTP server and per recipient domain: set them, and see how much of each is used."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass

from mailroom.domain.permissions import MANAGE_SERVERS, READ_SERVERS, Subject
from mailroom.domain.rate_limits import LimitScope, LimitUse, RateLimit, ScopeKind
from mailroom.errors import InvalidInput
from mailroom.ports import Clock, RateLimits, ServerStore, Wakeup


@dataclass(frozen=True, slots=True)
class NamedLimitUse:
    """A limit's use, with the scope named as people know it (the server's name, not its id)."""

    name: str
    use: LimitUse


class RateLimitUseCases:
    def __init__(self, *, limits: RateLimits, servers: ServerStore, clock: Clock, wakeup: Wakeup) -> None:
        self._limits = limits
        self._servers = servers
        self._clock = clock
        self._wakeup = wakeup

    def list(self, subject: Subject) -> builtins.list[NamedLimitUse]:
        subject.require(READ_SERVERS)
        names = {server.id: server.name for server in self._servers.list()}
        return [NamedLimitUse(names.get(use.scope.target, "(removed server)")
                              if use.scope.kind is ScopeKind.SERVER else use.scope.target, use)
                for use in self._limits.usage(self._clock.now())]

    def set_for_server(self, subject: Subject, name_or_id: str, limits: Sequence[RateLimit]) -> None:
        """Replace the server's limits (an empty list removes them)."""
        subject.require(MANAGE_SERVERS)
        self._set(LimitScope.server(self._servers.get(name_or_id).id), limits)

    def set_for_domain(self, subject: Subject, domain: str, limits: Sequence[RateLimit]) -> None:
        """Replace the limits of mails to a recipient domain (an empty list removes them)."""
        subject.require(MANAGE_SERVERS)
        self._set(LimitScope.domain(domain), limits)

    def _set(self, scope: LimitScope, limits: Sequence[RateLimit]) -> None:
        windows = [limit.window for limit in limits]
        if len(set(windows)) != len(windows):
            raise InvalidInput("one limit per window: give each of second, minute, hour and day at most once")
        self._limits.set_limits(scope, limits)
        self._wakeup.notify()  # mails waiting for a limit that was raised or removed may go now
