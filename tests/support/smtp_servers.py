"""Real SMTP servers for tests: aiosmtpd on 127.0.0.1, with TLS from a test CA, AUTH and scripted failures."""

from __future__ import annotations

import asyncio
import enum
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailroom.adapters.smtp.dev_sink import AnyPortController

TlsMode = Literal["none", "starttls", "implicit"]


class Behaviour(enum.StrEnum):
    ACCEPT = "accept"
    TEMPORARY = "temporary"  # DATA answered 451
    PERMANENT = "permanent"  # DATA answered 550
    DROP = "drop"  # the connection closes when DATA ends, without an answer
    HANG = "hang"  # DATA is never answered
    REFUSE_SOME = "refuse_some"  # RCPT of local parts starting with "bad" answered 550


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServerHandle:
    host: str
    port: int = 0
    behaviour: Behaviour = Behaviour.ACCEPT
    fail_next: int = 0
    """The next N messages are answered 451 whatever the behaviour."""
    connections: int = 0
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    ca_file: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        pytest.fail(f"the SMTP server received {len(self.received)} message(s) in {timeout} s, expected {count}")


class _Handler:
    def __init__(self, handle: SmtpServerHandle) -> None:
        self.handle = handle

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.handle.behaviour is Behaviour.REFUSE_SOME and address.startswith("bad"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        handle = self.handle
        with handle.lock:
            failing = handle.fail_next > 0
            handle.fail_next -= 1 if failing else 0
        if failing or handle.behaviour is Behaviour.TEMPORARY:
            return "451 4.3.0 try again later"
        if handle.behaviour is Behaviour.PERMANENT:
            return "550 5.7.1 rejected"
        if handle.behaviour is Behaviour.DROP:
            server.transport.abort()
            return "250 OK"  # never reaches the client
        if handle.behaviour is Behaviour.HANG:
            await asyncio.sleep(60)
        with handle.lock:
            handle.received.append(Received(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                                            data=envelope.original_content or envelope.content))
        return "250 2.0.0 OK queued"


class _CountingController(AnyPortController):
    def __init__(self, handle: SmtpServerHandle, **kwargs: Any) -> None:
        super().__init__(_Handler(handle), **kwargs)
        self.handle = handle

    def factory(self) -> Any:
        with self.handle.lock:
            self.handle.connections += 1
        return super().factory()


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def test_ca_file(test_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("ca") / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def smtp_server_factory(test_ca: trustme.CA, test_ca_file: str) -> Iterator[Callable[..., SmtpServerHandle]]:
    controllers: list[_CountingController] = []
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)

    def make(*, behaviour: Behaviour = Behaviour.ACCEPT, tls: TlsMode = "none",
             auth: tuple[str, str] | None = None) -> SmtpServerHandle:
        handle = SmtpServerHandle(host="127.0.0.1", behaviour=behaviour,
                                  ca_file=test_ca_file if tls != "none" else None)
        options: dict[str, Any] = {"hostname": handle.host, "port": 0, "enable_SMTPUTF8": True,
                                   "ready_timeout": 10.0}
        if tls == "starttls":
            options |= {"tls_context": server_context, "require_starttls": False}
        elif tls == "implicit":
            options |= {"ssl_context": server_context}
        if auth is not None:
            options |= {"authenticator": _authenticator(handle, auth), "auth_required": True,
                        # aiosmtpd does not see implicit TLS, so it would refuse AUTH there.
                        "auth_require_tls": tls == "starttls"}
        controller = _CountingController(handle, **options)
        controller.start()
        controllers.append(controller)
        handle.port = controller.port
        with handle.lock:
            handle.connections = 0  # the controller's own readiness check is not a client
        return handle

    yield make
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpServerHandle]) -> SmtpServerHandle:
    return smtp_server_factory()


def _authenticator(handle: SmtpServerHandle, expected: tuple[str, str]) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        if given != expected:
            return AuthResult(success=False, handled=False)
        with handle.lock:
            handle.logins.append(given)
        return AuthResult(success=True)

    return authenticate
