"""mailroom: mail management for Python applications.

Queue mails with ``Mailroom.send_mail(subject, Mail(...))``; a worker delivers them over SMTP and every
mail stays in the searchable log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailroom.app import Mailroom
    from mailroom.domain.addresses import Address
    from mailroom.domain.events import EventBus, SendMailRequested
    from mailroom.domain.log import LogPage, LogQuery, SortKey
    from mailroom.domain.mail import Attachment, Mail, Priority
    from mailroom.domain.outbox import MailStatus, OutgoingMail
    from mailroom.domain.permissions import PERMISSIONS, SYSTEM, Subject
    from mailroom.domain.servers import Security, ServerSettings, SmtpServer
    from mailroom.errors import (
        AttachmentTooLarge,
        ConfidentialContent,
        ConfigurationError,
        DeliveryError,
        InvalidAddress,
        InvalidHeader,
        InvalidInput,
        InvalidTransition,
        MailNotFound,
        MailroomError,
        NoRecipients,
        NotFound,
        PermissionDenied,
        ServerNotFound,
    )
    from mailroom.settings import Settings

# Where each public name lives. They are imported on first use (PEP 562), not with the package: a CLI call
# such as `mailroom --version` imports mailroom.cli, hence this package, and must not pay for the database
# layer, SMTP and pydantic settings it does not use.
_HOMES = {
    "Mailroom": "mailroom.app",
    "Address": "mailroom.domain.addresses",
    "EventBus": "mailroom.domain.events", "SendMailRequested": "mailroom.domain.events",
    "LogPage": "mailroom.domain.log", "LogQuery": "mailroom.domain.log", "SortKey": "mailroom.domain.log",
    "Attachment": "mailroom.domain.mail", "Mail": "mailroom.domain.mail", "Priority": "mailroom.domain.mail",
    "MailStatus": "mailroom.domain.outbox", "OutgoingMail": "mailroom.domain.outbox",
    "PERMISSIONS": "mailroom.domain.permissions", "SYSTEM": "mailroom.domain.permissions",
    "Subject": "mailroom.domain.permissions",
    "Security": "mailroom.domain.servers", "ServerSettings": "mailroom.domain.servers",
    "SmtpServer": "mailroom.domain.servers",
    "Settings": "mailroom.settings",
}
_ERRORS = ("AttachmentTooLarge", "ConfidentialContent", "ConfigurationError", "DeliveryError", "InvalidAddress",
           "InvalidHeader", "InvalidInput", "InvalidTransition", "MailNotFound", "MailroomError", "NoRecipients",
           "NotFound", "PermissionDenied", "ServerNotFound")
_HOMES.update(dict.fromkeys(_ERRORS, "mailroom.errors"))


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mailroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "PERMISSIONS",
    "SYSTEM",
    "Address",
    "Attachment",
    "AttachmentTooLarge",
    "ConfidentialContent",
    "ConfigurationError",
    "DeliveryError",
    "EventBus",
    "InvalidAddress",
    "InvalidHeader",
    "InvalidInput",
    "InvalidTransition",
    "LogPage",
    "LogQuery",
    "Mail",
    "MailNotFound",
    "MailStatus",
    "Mailroom",
    "MailroomError",
    "NoRecipients",
    "NotFound",
    "OutgoingMail",
    "PermissionDenied",
    "Priority",
    "Security",
    "SendMailRequested",
    "ServerNotFound",
    "ServerSettings",
    "Settings",
    "SmtpServer",
    "SortKey",
    "Subject",
]
