"""The secrets mailroom keeps encrypted at rest, as key rotation and its check see them: what kind, whose,
never the value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SecretKind(enum.StrEnum):
    SMTP_PASSWORD = "smtp_password"  # noqa: S105 - the name of a kind, not a password
    MAIL_CONTENT = "mail_content"
    """The sealed content of a confidential mail, kept until the mail is final."""

    @property
    def label(self) -> str:
        return {SecretKind.SMTP_PASSWORD: "SMTP password", SecretKind.MAIL_CONTENT: "confidential mail content"}[self]


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """Where one secret is: its kind, the id of its row, and a name an operator recognises (the server's name,
    the mail's id and subject)."""

    kind: SecretKind
    id: str
    owner: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretBatch:
    """One batch of a walk over the secrets of one kind, in id order."""

    last_id: str | None
    """The id to continue after; None when the batch was empty (the walk is over)."""
    rotated: int = 0
    current: int = 0
    """Already under the first key: left as they were."""
    unopened: list[StoredSecret] = field(default_factory=list)
    """No configured key opens them: left as they were."""


@dataclass(slots=True)
class RotationReport:
    rotated: dict[SecretKind, int] = field(default_factory=lambda: dict.fromkeys(SecretKind, 0))
    current: dict[SecretKind, int] = field(default_factory=lambda: dict.fromkeys(SecretKind, 0))
    unopened: list[StoredSecret] = field(default_factory=list)
