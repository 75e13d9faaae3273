"""Users and roles, as far as mail management needs them, and the one-time codes of the mail workflows."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from mailroom.domain.addresses import Address, reject_line_breaks
from mailroom.domain.permissions import (
    EDIT_TEMPLATES,
    PERMISSIONS,
    READ_MAIL,
    READ_SERVERS,
    READ_TEMPLATES,
    SEND_MAIL,
    Subject,
)
from mailroom.domain.templates import normalise_locale
from mailroom.errors import InvalidInput

ADMIN_ROLE = "admin"
MAIL_OPERATOR_ROLE = "mail-operator"
TEMPLATE_EDITOR_ROLE = "template-editor"


@dataclass(frozen=True, slots=True, kw_only=True)
class Role:
    id: str
    name: str
    permissions: frozenset[str] = frozenset()
    all_permissions: bool = False
    """The admin role: every permission, including ones declared after the role was stored."""

    def grants(self) -> frozenset[str]:
        return PERMISSIONS.ids() if self.all_permissions else self.permissions


BUILTIN_ROLES = (
    Role(id=ADMIN_ROLE, name="Administrator", all_permissions=True),
    Role(id=MAIL_OPERATOR_ROLE, name="Mail operator",
         permissions=frozenset({SEND_MAIL, READ_MAIL, READ_SERVERS, READ_TEMPLATES})),
    Role(id=TEMPLATE_EDITOR_ROLE, name="Template editor", permissions=frozenset({READ_TEMPLATES, EDIT_TEMPLATES})),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """What a user tells about themselves; templates address them with it."""

    email: str
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    salutation: str = ""
    preferred_language: str = "en"

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", Address.parse(self.email, field="email").email)
        for name in ("first_name", "last_name", "title", "salutation"):
            value = getattr(self, name)
            reject_line_breaks(name, value)
            if len(value) > 200:
                raise InvalidInput("{name} is longer than 200 characters", {"name": name}, field=name)
        object.__setattr__(self, "preferred_language", normalise_locale(self.preferred_language or "en"))


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    profile: Profile
    verified: bool = False
    enabled: bool = True
    roles: tuple[str, ...] = ()
    created_at: datetime
    updated_at: datetime

    @property
    def email(self) -> str:
        return self.profile.email

    def subject(self, roles: Iterable[Role]) -> Subject:
        granted: set[str] = set()
        for role in roles:
            if role.id in self.roles:
                granted |= role.grants()
        return Subject.user(self.id, granted)

    def model(self, *, application_name: str) -> dict[str, str]:
        """The template model of the account mails."""
        p = self.profile
        return {"user_id": self.id, "title": p.title, "salutation": p.salutation, "first_name": p.first_name,
                "last_name": p.last_name, "email": p.email, "preferred_language": p.preferred_language,
                "application_name": application_name}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPolicy:
    """The rules of the account workflows, from the settings of the same names (which hold the defaults)."""

    public_base_url: str
    application_name: str
    self_registration: bool
    min_password_length: int
    verification_code_hours: float
    reset_code_hours: float
    login_max_failures: int
    login_lockout_base_seconds: float
    reset_request_floor_seconds: float
    session_hours: float

    def link(self, path: str, code: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/{path}?{urlencode({'code': code})}"


class CodePurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a password


@dataclass(frozen=True, slots=True, kw_only=True)
class OneTimeCode:
    """A code sent by mail; only its hash is stored, and it works once, before it expires."""

    code_hash: str
    user_id: str
    purpose: CodePurpose
    email: str
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A per-user key for the JSON API; it acts with its user's current permissions.

    The secret is shown once when created; only its hash is stored. ``hint`` is the first characters,
    so a user can tell tokens apart in a list.
    """

    id: str
    user_id: str
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    """None: valid until revoked."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now
