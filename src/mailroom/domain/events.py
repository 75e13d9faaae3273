"""A small typed in-process event bus, and the events of mail management."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailroom.domain.addresses import Address

E = TypeVar("E")
Handler = Callable[[Any], None]


class EventBus:
    """Handlers run synchronously in the publisher's thread, in subscription order.

    An exception in a handler propagates to the publisher: an event that asks for a mail must not be
    lost silently.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Any], list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    def publish(self, event: object) -> None:
        for event_type in type(event).__mro__:
            for handler in list(self._handlers.get(event_type, ())):
                handler(event)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMailRequested:
    """Ask for a mail without a subject: mailroom enqueues it as the system subject."""

    to: Sequence[str | Address] = ()
    cc: Sequence[str | Address] = ()
    bcc: Sequence[str | Address] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: Mapping[str, bytes] = field(default_factory=dict)
    smtp_hint: str | None = None
    confidential: bool = False
    """Sealed at rest, never shown, dropped once final (as account mails are)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCreated:
    """A user account exists; with ``notify_user`` the user gets the mail that verifies the address."""

    user_id: str
    email: str
    notify_user: bool = True
    self_registered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailChanged:
    """A user's address changed; with ``notify_user`` the new address gets a verification mail."""

    user_id: str
    old_email: str
    new_email: str
    notify_user: bool = True
