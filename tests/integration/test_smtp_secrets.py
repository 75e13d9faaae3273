"""The SMTP password in every form the client sends it stays out of the log, even when a server echoes the
AUTH exchange in its reply; and a server moved elsewhere does not take the stored password along
(issue #11, item 8)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from mailroom import SYSTEM, Mail, Mailroom, ServerSettings
from mailroom.adapters.smtp.dev_sink import AnyPortController
from mailroom.domain.servers import Security
from mailroom.errors import InvalidInput

USERNAME = "robot@example.org"
PASSWORD = "s3cret-Pa55-w0rd!"


class _EchoingSmtp(SMTP):
    """A server that quotes what the client sent for AUTH in its refusal, as some broken servers do."""

    async def smtp_AUTH(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        said = [initial] if initial else []
        if mechanism.upper() == "LOGIN":
            await self.push("334 UGFzc3dvcmQ6")
            line = await self._reader.readline()
            said.append(line.decode().strip())
            said.append(base64.b64decode(said[-1]).decode(errors="replace"))  # and decoded, for good measure
        elif mechanism.upper() == "PLAIN" and initial:
            said.append(base64.b64decode(initial).decode(errors="replace").replace("\0", " "))
        await self.push(f"535 5.7.8 credentials refused: {' '.join(said)}")


class _Controller(AnyPortController):
    def factory(self) -> SMTP:
        return _EchoingSmtp(self.handler, **self.SMTP_kwargs)


class _Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def echoing_server() -> Iterator[Callable[[str], int]]:
    controllers: list[_Controller] = []

    def start(mechanism: str) -> int:
        others = [m for m in ("LOGIN", "PLAIN") if m != mechanism]
        controller = _Controller(_Handler(), hostname="127.0.0.1", port=0, auth_require_tls=False,
                                 auth_exclude_mechanism=others,
                                 authenticator=lambda *args: AuthResult(success=False, handled=False))
        controller.start()
        controllers.append(controller)
        return int(controller.port)

    yield start
    for controller in controllers:
        controller.stop()


def _forms() -> list[str]:
    blob = f"\0{USERNAME}\0{PASSWORD}".encode()
    return [PASSWORD, base64.b64encode(blob).decode(), base64.b64encode(blob).decode().rstrip("="),
            base64.b64encode(PASSWORD.encode()).decode(), base64.b64encode(PASSWORD.encode()).decode().rstrip("=")]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_an_echoed_auth_exchange_is_scrubbed_from_the_log_and_the_probe(
        tmp_path: Path, echoing_server: Callable[[str], int], mechanism: str) -> None:
    port = echoing_server(mechanism)
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'm.db'}", secret_key_file=str(tmp_path / "k"),
                  retry_jitter=0.0) as room:
        room.servers.add(SYSTEM, ServerSettings(name="echo", host="127.0.0.1", port=port, security=Security.NONE,
                                                username=USERNAME, sender="app@example.org",
                                                timeout_seconds=10), PASSWORD)
        mail_id = room.send_mail(SYSTEM, Mail(to="ann@example.org", subject="Hi", text="Hi"))
        room.deliver_pending()
        stored = room.get_mail(SYSTEM, mail_id)
        steps = asyncio.run(room.servers.test(SYSTEM, "echo"))
    texts = [stored.last_error or "", *(a.reply or "" for a in stored.attempt_log),
             *(r.reply or "" for r in stored.recipients), *(step.detail for step in steps)]
    assert stored.last_error and "535" in stored.last_error, stored.last_error
    assert any("credentials refused" in t for t in texts), texts
    for text in texts:
        for form in _forms():
            assert form not in text, (form, text)


def test_the_scrubber_catches_every_form_the_client_sends() -> None:
    from mailroom.adapters.smtp.transport import _Scrubber

    scrub = _Scrubber(PASSWORD)
    blob = f"\0{USERNAME}\0{PASSWORD}".encode()
    for form in [*_forms(), base64.b64encode(f"{USERNAME}\0{USERNAME}\0{PASSWORD}".encode()).decode(),
                 base64.b64encode(f"user={USERNAME}\x01auth=Bearer {PASSWORD}\x01\x01".encode()).decode()]:
        assert form not in scrub(f"535 no: {form} (again:{form})"), form
    assert scrub("535 5.7.8 plain refusal") == "535 5.7.8 plain refusal"
    assert base64.b64encode(blob).decode() not in scrub(f"x {base64.b64encode(blob).decode()}")


# --- a server moved to another host must not get the stored password --------------------------------------

@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'm.db'}", secret_key_file=str(tmp_path / "k")) as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host="smtp.example.org", port=587,
                                                username=USERNAME), PASSWORD)
        yield room


@pytest.mark.parametrize("change", [{"host": "evil.example.net"}, {"port": 2525}, {"security": Security.NONE}])
def test_moving_a_server_needs_the_password_again(room: Mailroom, change: dict[str, Any]) -> None:
    server = room.servers.get(SYSTEM, "relay")
    settings = ServerSettings(**({"name": "relay", "host": "smtp.example.org", "port": 587,
                                  "username": USERNAME} | change))
    with pytest.raises(InvalidInput) as caught:
        room.servers.update(SYSTEM, server.id, settings)
    assert caught.value.field == "password"
    assert room.servers.get(SYSTEM, "relay").host == "smtp.example.org", "nothing was changed"
    moved = room.servers.update(SYSTEM, server.id, settings, "the-new-one")
    assert moved.has_password
    # Removing the password while moving is fine too: nothing stored goes anywhere.
    assert not room.servers.update(SYSTEM, server.id, settings, "").has_password


def test_other_changes_keep_the_stored_password(room: Mailroom) -> None:
    server = room.servers.get(SYSTEM, "relay")
    kept = room.servers.update(SYSTEM, server.id, ServerSettings(name="relay", host="smtp.example.org", port=587,
                                                                 username=USERNAME, priority=5, enabled=False))
    assert kept.has_password and kept.priority == 5
