"""Managing SMTP servers: their settings, their sealed passwords, and a connection test."""

from __future__ import annotations

import builtins

from mailroom.domain.permissions import MANAGE_SERVERS, READ_SERVERS, Subject
from mailroom.domain.servers import ServerSettings, SmtpServer
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
        """``password=None`` keeps the stored password (a blank form field); ``""`` removes it."""
        subject.require(MANAGE_SERVERS)
        server = self._store.update(self._store.get(name_or_id).id, settings, password)
        self._wakeup.notify()
        return server

    def remove(self, subject: Subject, name_or_id: str) -> None:
        subject.require(MANAGE_SERVERS)
        self._store.remove(self._store.get(name_or_id).id)

    async def test(self, subject: Subject, name_or_id: str) -> builtins.list[ProbeStep]:
        subject.require(MANAGE_SERVERS)
        server = self._store.get(name_or_id)
        return await self._transport.probe(server, self._store.password(server.id))
