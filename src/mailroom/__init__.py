"""mailroom: mail management for Python applications.

Queue mails with ``Mailroom.send_mail(subject, Mail(...))``; a worker delivers them over SMTP and every
mail stays in the searchable log.
"""

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
