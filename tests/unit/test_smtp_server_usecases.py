"""SmtpServerUseCases on small in-memory fakes: a moved server needs its password again (issue #11, item 8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailroom import SYSTEM
from mailroom.domain.servers import Security, ServerSettings, SmtpServer
from mailroom.errors import InvalidInput, ServerNotFound
from mailroom.usecases.smtp_servers import SmtpServerUseCases


class MemoryServerStore:
    def __init__(self) -> None:
        self.servers: dict[str, SmtpServer] = {}
        self.passwords: dict[str, str] = {}

    def list(self) -> list[SmtpServer]:
        return list(self.servers.values())

    def get(self, name_or_id: str) -> SmtpServer:
        for server in self.servers.values():
            if name_or_id in (server.id, server.name):
                return server
        raise ServerNotFound(name_or_id)

    def add(self, settings: ServerSettings, password: str | None) -> SmtpServer:
        server_id = f"s{len(self.servers)}"
        if password:
            self.passwords[server_id] = password
        self.servers[server_id] = SmtpServer(id=server_id, has_password=bool(password),
                                             **{f.name: getattr(settings, f.name)
                                                for f in dataclasses.fields(ServerSettings)})
        return self.servers[server_id]

    def update(self, server_id: str, settings: ServerSettings, password: str | None) -> SmtpServer:
        if password is not None:
            self.passwords.pop(server_id, None)
            if password:
                self.passwords[server_id] = password
        self.servers[server_id] = SmtpServer(id=server_id, has_password=server_id in self.passwords,
                                             **{f.name: getattr(settings, f.name)
                                                for f in dataclasses.fields(ServerSettings)})
        return self.servers[server_id]

    def remove(self, server_id: str) -> None:
        del self.servers[server_id]

    def password(self, server_id: str) -> str | None:
        return self.passwords.get(server_id)


class NoWakeup:
    def notify(self) -> None:
        pass


BASE = ServerSettings(name="relay", host="smtp.example.org", port=587, username="robot")


@pytest.fixture
def cases() -> tuple[SmtpServerUseCases, MemoryServerStore]:
    store = MemoryServerStore()
    uses = SmtpServerUseCases(store=store, transport=None, wakeup=NoWakeup())  # type: ignore[arg-type]
    uses.add(SYSTEM, BASE, "pw")
    return uses, store


@pytest.mark.parametrize("change", [{"host": "other.example.org"}, {"port": 465}, {"security": Security.TLS}])
def test_a_move_without_the_password_is_refused(cases: tuple[SmtpServerUseCases, MemoryServerStore],
                                                change: dict[str, Any]) -> None:
    uses, store = cases
    with pytest.raises(InvalidInput) as caught:
        uses.update(SYSTEM, "relay", dataclasses.replace(BASE, **change))
    assert caught.value.field == "password"
    assert store.get("relay").host == "smtp.example.org" and store.password("s0") == "pw"
    uses.update(SYSTEM, "relay", dataclasses.replace(BASE, **change), "new")
    assert store.password("s0") == "new"


def test_same_destination_or_no_password_needs_nothing(cases: tuple[SmtpServerUseCases, MemoryServerStore]) -> None:
    uses, store = cases
    uses.update(SYSTEM, "relay", dataclasses.replace(BASE, host="SMTP.example.org", priority=3))
    assert store.password("s0") == "pw"
    uses.update(SYSTEM, "relay", BASE, "")
    uses.update(SYSTEM, "relay", dataclasses.replace(BASE, host="other.example.org"))  # nothing to leak
    assert store.password("s0") is None
