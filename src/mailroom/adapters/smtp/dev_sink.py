"""A catch-all SMTP server for development (aiosmtpd): it accepts every mail, keeps it and tells a callback.

It listens on a loopback address only by default and never relays: mail sent to it goes nowhere else.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller

# Mails kept in memory; older ones are dropped so a long-running dev stack does not grow without end.
MAX_KEPT_MESSAGES = 1000


class AnyPortController(Controller):
    """aiosmtpd's Controller, able to listen on port 0 (a free port the OS picks).

    The stock controller checks readiness by connecting to the port it was given, which fails for 0;
    here the port actually bound is read back first.
    """

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    received_at: datetime
    path: Path | None = None


class _Handler:
    def __init__(self, sink: DevSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        self._sink.keep(ReceivedMail(envelope_from=envelope.mail_from or "", recipients=tuple(envelope.rcpt_tos),
                                     data=data, received_at=datetime.now(UTC)))
        return "250 OK: kept by the mailroom dev sink"


class DevSink:
    """``start()`` runs the server in a background thread; ``stop()`` ends it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1025, directory: Path | None = None,
                 on_message: Callable[[ReceivedMail], None] | None = None) -> None:
        self._host = host
        self._requested_port = port
        self._directory = directory
        self._on_message = on_message
        self._messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller: AnyPortController | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when 0 was asked for)."""
        if self._controller is None:
            return self._requested_port
        port: int = self._controller.port
        return port

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def start(self) -> None:
        if self._directory is not None:
            self._directory.mkdir(parents=True, exist_ok=True)
        # SMTPUTF8 on, so mails to internationalised local parts arrive too; 64 MiB like common providers.
        controller = AnyPortController(_Handler(self), hostname=self._host, port=self._requested_port,
                                enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def keep(self, received: ReceivedMail) -> None:
        if self._directory is not None:
            stamp = received.received_at.strftime("%Y%m%dT%H%M%S")
            path = self._directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(received.data)
            received = ReceivedMail(envelope_from=received.envelope_from, recipients=received.recipients,
                                    data=received.data, received_at=received.received_at, path=path)
        with self._lock:
            self._messages.append(received)
            del self._messages[:-MAX_KEPT_MESSAGES]
        if self._on_message is not None:
            self._on_message(received)

    def __enter__(self) -> DevSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
