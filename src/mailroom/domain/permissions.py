"""Who may do what: permission ids, the registry that lists them, and the calling subject."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailroom.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class Permission:
    id: str
    label: str
    description: str


class PermissionRegistry:
    """Every permission a use case audits, declared once so it can be listed and granted."""

    def __init__(self) -> None:
        self._permissions: dict[str, Permission] = {}

    def declare(self, id: str, label: str, description: str) -> str:
        self._permissions.setdefault(id, Permission(id, label, description))
        return id

    def all(self) -> list[Permission]:
        return sorted(self._permissions.values(), key=lambda p: p.id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._permissions)


PERMISSIONS = PermissionRegistry()

SEND_MAIL = PERMISSIONS.declare("mailroom.mail.send", "Send mail", "Queue mails for delivery.")
READ_MAIL = PERMISSIONS.declare("mailroom.mail.read", "Read mail log",
                                "See queued and sent mails, their recipients, attempts and content.")
DELETE_MAIL = PERMISSIONS.declare("mailroom.mail.delete", "Delete mail", "Remove mails from the log.")
RETRY_MAIL = PERMISSIONS.declare("mailroom.mail.retry", "Retry mail", "Queue a failed mail again.")
CANCEL_MAIL = PERMISSIONS.declare("mailroom.mail.cancel", "Cancel mail", "Stop a queued mail from going out.")
READ_SERVERS = PERMISSIONS.declare("mailroom.smtp.read", "See SMTP servers",
                                   "List SMTP servers (never their passwords).")
MANAGE_SERVERS = PERMISSIONS.declare("mailroom.smtp.manage", "Manage SMTP servers",
                                     "Add, change, test and remove SMTP servers and their credentials.")
READ_TEMPLATES = PERMISSIONS.declare("mailroom.template.read", "See templates",
                                    "List templates, their versions, and render previews.")
EDIT_TEMPLATES = PERMISSIONS.declare("mailroom.template.edit", "Edit templates",
                                    "Create, change, delete, import and restore templates and template sets.")
READ_USERS = PERMISSIONS.declare("mailroom.user.read", "See users", "List users, their roles and status.")
MANAGE_USERS = PERMISSIONS.declare("mailroom.user.manage", "Manage users",
                                   "Create, change and disable users, assign roles, resend verification mails.")


@dataclass(frozen=True, slots=True)
class Subject:
    """The caller of a use case: a user id and the permission ids granted to it."""

    user_id: str | None
    permissions: frozenset[str] = frozenset()
    is_system: bool = False

    def has(self, permission: str) -> bool:
        return self.is_system or permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.has(permission):
            raise PermissionDenied(permission, self.user_id)

    def require_unless_self(self, user_id: str, permission: str) -> None:
        """Users act on their own account freely; on anyone else's they need ``permission``."""
        if self.user_id != user_id:
            self.require(permission)

    @classmethod
    def user(cls, user_id: str, permissions: Iterable[str]) -> Subject:
        return cls(user_id, frozenset(permissions))


SYSTEM = Subject("system", frozenset(), is_system=True)
"""The subject of the application itself; it has every permission (the reference's ``user.SU()``)."""
