"""Managing SMTP servers: their settings, their sealed passwords, and a connection test."""

from __future__ import annotations

import builtins

from mailroom.domain.permissions import MANAGE_SERVERS, READ_SERVERS, Subject
from mailroom.domain.servers import ServerSettings, SmtpServer
from mailroom.errors import InvalidInput
from mailroom.ports import ProbeStep, ServerStore, Transport, Wakeup


class SmtpServerUseCases:
    def __init__(self, *, store: ServerStore, transport: Transport, wakeup: Wakeup) -> None:
        self._store = store
        self._transport = transport
        self._wakeup = wakeup

    def list(self, subject: Subject) -> builtins.list[SmtpServer]:
        subject.require(READ_SERVERS)
        return self._store.list()

    def get(self, subject: Subject, name_or_id: str) -> SmtpServer:
        subject.require(READ_SERVERS)
        return self._store.get(name_or_id)

    def add(self, subject: Subject, settings: ServerSettings, password: str | None = None) -> SmtpServer:
        subject.require(MANAGE_SERVERS)
        server = self._store.add(settings, password)
        self._wakeup.notify()  # mails waiting for a server can go now
        return server

    def update(self, subject: Subject, name_or_id: str, settings: ServerSettings,
               password: str | None = None) -> SmtpServer:
        """``password=None`` keeps the stored password (a blank form field); ``""`` removes it.

        Moving a server (another host, port or security) with a stored password needs the password again
        (or ``""``): the stored one was given for the old destination, and keeping it silently would send it
        to whatever the new host is, possibly in clear text. Refusing rather than dropping it lets the admin
        decide, and keeps a working server from losing its login because of a port correction.
        """
        subject.require(MANAGE_SERVERS)
        current = self._store.get(name_or_id)
        if password is None and current.has_password and _moved(current, settings):
            raise InvalidInput(f"{settings.name} now connects to {settings.host}:{settings.port} "
                               f"({settings.security.value}): enter its password again, or remove it, so the stored "
                               "password is not sent to the new destination", field="password")
        server = self._store.update(current.id, settings, password)
        self._wakeup.notify()
        return server

    def remove(self, subject: Subject, name_or_id: str) -> None:
        subject.require(MANAGE_SERVERS)
        self._store.remove(self._store.get(name_or_id).id)

    async def test(self, subject: Subject, name_or_id: str) -> builtins.list[ProbeStep]:
        subject.require(MANAGE_SERVERS)
        server = self._store.get(name_or_id)
        return await self._transport.probe(server, self._store.password(server.id))


def _moved(server: SmtpServer, settings: ServerSettings) -> bool:
    """Whether the settings point the password somewhere else than where it was given for."""
    return (server.host.strip().lower(), server.port, server.security) != \
        (settings.host.strip().lower(), settings.port, settings.security)
