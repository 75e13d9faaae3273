"""Keep test systems from mailing real people."""

from __future__ import annotations

from dataclasses import dataclass

from mailroom.domain.addresses import Address


@dataclass(frozen=True, slots=True, kw_only=True)
class StagingPolicy:
    """``redirect_to`` receives every mail not addressed to an ``allowed_domains`` domain.

    With only ``allowed_domains`` set, other recipients are dropped. With neither, staging is off.
    """

    redirect_to: Address | None = None
    allowed_domains: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.redirect_to is not None or bool(self.allowed_domains)

    def allows(self, address: Address) -> bool:
        domain = address.domain
        return any(domain == d or domain.endswith("." + d) for d in self.allowed_domains)

    def envelope(self, recipients: tuple[Address, ...]) -> tuple[Address, ...]:
        """The recipients the mail really goes to."""
        if not self.active:
            return recipients
        kept = [r for r in recipients if self.allows(r)]
        if self.redirect_to is not None and len(kept) < len(recipients) and self.redirect_to not in kept:
            kept.append(self.redirect_to)
        return tuple(kept)
