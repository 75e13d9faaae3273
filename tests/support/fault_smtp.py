"""A fault-injecting SMTP server (aiosmtpd) for delivery tests: scripted answers, delays, drops and stalls.

In process, as the ``fault_smtp`` pytest fixture (a thread, like tests/support/smtp_servers.py)::

    server = fault_smtp()                     # FaultSmtpServer, listening on 127.0.0.1:<port>
    server.script.greeting_421_next = 1       # the next connection is greeted with 421
    server.script.refuse_rcpt("bob@example.org", 450, times=1)
    ...
    server.stats.copies                       # Counter: Message-ID -> copies accepted

As a process, for worker *processes* (it prints its port on the first line of stdout; then each line
``stats`` written to its stdin is answered with one line of JSON, and ``set NAME VALUE`` changes the
script while it runs)::

    python -m tests.support.fault_smtp --port 0 --delay-ms 50 --max-connections 4

``FaultSmtpProcess`` wraps that for tests. Every fault is counted down under one lock, so a script
like "421 for the next 2 connections" holds exactly across concurrent connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from mailroom.adapters.smtp.dev_sink import AnyPortController

# Only the header block is searched, and only as bytes: the chaos test pushes thousands of mails
# through one server, and a full email parse per mail would make the server the bottleneck.
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
STALL_SECONDS = 3600.0  # "never answers": far beyond any client timeout; the server's stop cancels it


@dataclass
class FaultScript:
    """What the server does wrong. ``*_next`` counters apply to the next N occasions, then count down.

    Attributes:
        greeting_421_next: connections answered ``421`` at the greeting (then closed).
        max_concurrent: connections open at once; one more is greeted with ``421`` and closed.
        auth_535_next: AUTH attempts refused with ``535`` whatever the password.
        data_554_next: messages answered ``554`` after DATA (not accepted).
        drop_mid_data_next: connections closed after the first line of DATA, never answered.
        stall_after_data_next: messages whose DATA is never answered (the client must time out);
            ``-1`` stalls every message.
        delay_ms: time taken per accepted message, before the ``250``.
    """

    greeting_421_next: int = 0
    max_concurrent: int | None = None
    auth_535_next: int = 0
    data_554_next: int = 0
    drop_mid_data_next: int = 0
    stall_after_data_next: int = 0
    delay_ms: float = 0.0
    credentials: tuple[str, str] | None = None
    """When set, AUTH must give exactly these (after any scripted 535s)."""
    rcpt: dict[str, list[int | None]] = field(default_factory=dict)
    """Address (lower case) -> [code, times left or None for always]; see ``refuse_rcpt``."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refuse_rcpt(self, address: str, code: int, *, times: int | None = None) -> None:
        """Answer RCPT for ``address`` with ``code`` (450/451/452/550...): always, or the next ``times`` times."""
        with self.lock:
            self.rcpt[address.lower()] = [code, times]

    def take(self, name: str) -> bool:
        """Use up one of the ``name`` faults; True when this occasion is one of them."""
        with self.lock:
            left: int = getattr(self, name)
            if left == 0:
                return False
            if left > 0:
                setattr(self, name, left - 1)
            return True

    def rcpt_code(self, address: str) -> int | None:
        with self.lock:
            entry = self.rcpt.get(address.lower())
            if entry is None:
                return None
            code, left = entry
            if left is not None:
                if left <= 0:
                    return None
                entry[1] = left - 1
            return code


@dataclass
class Accepted:
    """One message the server took (``250`` after DATA)."""

    message_id: str | None
    mail_from: str
    rcpt_tos: list[str]
    ehlo_name: str | None
    data: bytes


@dataclass
class FaultStats:
    connections_opened: int = 0
    connections_refused: int = 0
    """Greeted with 421 (scripted, or over ``max_concurrent``)."""
    open_now: int = 0
    max_concurrent_seen: int = 0
    copies: Counter[str] = field(default_factory=Counter)
    """Message-ID -> copies accepted: anything above 1 is a duplicate."""
    accepted: list[Accepted] = field(default_factory=list)
    ehlo_names: list[str] = field(default_factory=list)
    rcpt_commands: list[str] = field(default_factory=list)
    auth_attempts: int = 0
    auth_times: list[float] = field(default_factory=list)
    """time.monotonic() of each AUTH: the gaps show whether a client backs off."""
    logins: int = 0
    accept_times: list[float] = field(default_factory=list)
    """time.time() of each message taken: how many arrived within any window (rate limits)."""

    @property
    def total_accepted(self) -> int:
        return sum(self.copies.values())

    @property
    def duplicates(self) -> int:
        """Copies beyond the first of each Message-ID."""
        return sum(n - 1 for n in self.copies.values() if n > 1)

    def summary(self) -> dict[str, Any]:
        return {"connections_opened": self.connections_opened, "connections_refused": self.connections_refused,
                "open_now": self.open_now, "max_concurrent_seen": self.max_concurrent_seen,
                "total_accepted": self.total_accepted, "unique_accepted": len(self.copies),
                "duplicates": self.duplicates, "copies": dict(self.copies), "auth_attempts": self.auth_attempts,
                "logins": self.logins, "ehlo_names": sorted(set(self.ehlo_names)),
                "accept_times": list(self.accept_times)}


class FaultSmtpServer:
    """The shared state of one fault server: its script, its statistics, and its lock."""

    def __init__(self, script: FaultScript | None = None, *, keep_data: bool = True) -> None:
        self.script = script or FaultScript()
        self.stats = FaultStats()
        self.keep_data = keep_data
        """False keeps only counts, not bodies: the chaos test does not need thousands of bodies."""
        self.host = "127.0.0.1"
        self.port = 0
        self.lock = threading.Lock()

    def reset_stats(self) -> None:
        with self.lock:
            self.stats = FaultStats()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Accepted]:
        """The accepted messages, once there are at least ``count`` (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.stats.accepted) >= count:
                    return list(self.stats.accepted)
            time.sleep(0.02)
        pytest.fail(f"the fault server accepted {len(self.stats.accepted)} message(s) in {timeout} s, "
                    f"expected {count}")

    def accepted(self) -> list[Accepted]:
        with self.lock:
            return list(self.stats.accepted)

    # --- hooks called by the protocol and the handler -------------------------------------------

    def opened(self) -> bool:
        """A connection arrived; False when it must be greeted with 421 and closed."""
        refuse = self.script.take("greeting_421_next")
        with self.lock:
            stats = self.stats
            stats.connections_opened += 1
            limit = self.script.max_concurrent
            if refuse or (limit is not None and stats.open_now >= limit):
                stats.connections_refused += 1
                return False
            stats.open_now += 1
            stats.max_concurrent_seen = max(stats.max_concurrent_seen, stats.open_now)
            return True

    def closed(self) -> None:
        with self.lock:
            self.stats.open_now -= 1

    def record(self, envelope: Any, ehlo_name: str | None) -> None:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        head = data.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace") if found else None
        item = Accepted(message_id=message_id, mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                        ehlo_name=ehlo_name, data=data if self.keep_data else b"")
        with self.lock:
            self.stats.copies[message_id or "<none>"] += 1
            self.stats.accept_times.append(time.time())
            if self.keep_data:
                self.stats.accepted.append(item)


class _Handler:
    def __init__(self, server: FaultSmtpServer) -> None:
        self.server = server

    async def handle_EHLO(self, smtp: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.server.lock:
            self.server.stats.ehlo_names.append(hostname)
        return responses

    async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.server.lock:
            self.server.stats.rcpt_commands.append(address)
        code = self.server.script.rcpt_code(address)
        if code is not None:
            status = "4.2.0 try again later" if code < 500 else "5.1.1 no such user here"
            return f"{code} {status} ({address})"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        script = self.server.script
        if script.take("stall_after_data_next"):
            await asyncio.sleep(STALL_SECONDS)
        if script.take("data_554_next"):
            return "554 5.7.1 message refused by policy"
        if script.delay_ms:
            await asyncio.sleep(script.delay_ms / 1000)
        self.server.record(envelope, session.host_name)
        return "250 2.0.0 OK queued"


class FaultSMTP(SMTP):  # type: ignore[misc]  # aiosmtpd ships no type hints
    """aiosmtpd's protocol with the faults that live outside the handler hooks: greeting and mid-DATA."""

    def __init__(self, server: FaultSmtpServer, **kwargs: Any) -> None:
        super().__init__(_Handler(server), **kwargs)
        self.fault_server = server
        self._counted = False

    async def _handle_client(self) -> None:
        if not self.fault_server.opened():
            await self.push("421 4.7.0 too busy, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        self._counted = True
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.fault_server.closed()
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope is not None and self.envelope.rcpt_tos and self.fault_server.script.take(
                "drop_mid_data_next"):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # the first line of the message, then the line goes dead
            if self.transport is not None:
                self.transport.abort()
            return
        await super().smtp_DATA(arg)


def _authenticator(server: FaultSmtpServer) -> Callable[..., AuthResult]:
    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        with server.lock:
            server.stats.auth_attempts += 1
            server.stats.auth_times.append(time.monotonic())
        if server.script.take("auth_535_next") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = server.script.credentials
        if expected is not None and (auth_data.login.decode(), auth_data.password.decode()) != expected:
            return AuthResult(success=False, handled=False)
        with server.lock:
            server.stats.logins += 1
        return AuthResult(success=True)

    return authenticate


def _smtp_options(server: FaultSmtpServer) -> dict[str, Any]:
    # AUTH is offered on plain connections (tests only) but not required: a client without a username
    # sends straight away, one with a username meets the scripted 535s.
    return {"hostname": "fault.test", "enable_SMTPUTF8": True, "authenticator": _authenticator(server),
            "auth_required": False, "auth_require_tls": False}


class FaultController(AnyPortController):
    """The fault server in a background thread (aiosmtpd's Controller)."""

    def __init__(self, server: FaultSmtpServer) -> None:
        super().__init__(_Handler(server), hostname=server.host, port=0, ready_timeout=10.0)
        self.fault_server = server

    def factory(self) -> FaultSMTP:
        return FaultSMTP(self.fault_server, loop=self.loop, **_smtp_options(self.fault_server))


@pytest.fixture
def fault_smtp() -> Iterator[Callable[..., FaultSmtpServer]]:
    """A factory of fault servers on 127.0.0.1, each on its own free port, stopped after the test."""
    controllers: list[FaultController] = []

    def make(script: FaultScript | None = None, *, keep_data: bool = True) -> FaultSmtpServer:
        server = FaultSmtpServer(keep_data=keep_data)
        controller = FaultController(server)
        controller.start()
        controllers.append(controller)
        server.port = controller.port
        # The controller's own readiness check is a connection: it must neither count nor use up a fault.
        server.reset_stats()
        server.script = script or FaultScript()
        return server

    yield make
    for controller in controllers:
        controller.stop()


# --- as a process -----------------------------------------------------------------------------------


class FaultSmtpProcess:
    """``python -m tests.support.fault_smtp`` as a child process: its port, its stats, and a clean stop."""

    def __init__(self, *args: str) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "tests.support.fault_smtp", "--port", "0", *args],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self._process.kill()
            raise RuntimeError(f"the fault SMTP server did not start: {line!r}")
        self.port = int(line)
        self._lock = threading.Lock()

    def _ask(self, command: str) -> str:
        assert self._process.stdin is not None and self._process.stdout is not None
        with self._lock:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
            return self._process.stdout.readline()

    def stats(self) -> dict[str, Any]:
        """The server's FaultStats.summary(); ``copies`` maps Message-ID to copies accepted."""
        answer: dict[str, Any] = json.loads(self._ask("stats"))
        return answer

    def set(self, name: str, value: float | int) -> None:
        """Change one numeric script field (``delay_ms``, ``greeting_421_next``...) while it runs."""
        answer = self._ask(f"set {name} {value}")
        if answer.strip() != "ok":
            raise ValueError(answer)

    def stop(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                assert self._process.stdin is not None
                self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> FaultSmtpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _numeric_fields() -> dict[str, type]:
    blank = FaultScript()
    return {f.name: type(getattr(blank, f.name)) for f in fields(FaultScript)
            if type(getattr(blank, f.name)) in (int, float)}


async def _serve(args: argparse.Namespace) -> None:
    script = FaultScript(delay_ms=args.delay_ms, max_concurrent=args.max_connections,
                         greeting_421_next=args.greeting_421_next, data_554_next=args.data_554_next,
                         stall_after_data_next=args.stall_after_data_next,
                         drop_mid_data_next=args.drop_mid_data_next)
    for spec in args.refuse_rcpt:
        address, code = spec.rsplit("=", 1)
        script.refuse_rcpt(address, int(code))
    server = FaultSmtpServer(script, keep_data=False)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: FaultSMTP(server, loop=loop, **_smtp_options(server)),
                                        host="127.0.0.1", port=args.port)
    print(listener.sockets[0].getsockname()[1], flush=True)
    numeric = _numeric_fields()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().strip():
            command, *rest = line.split()
            if command == "stats":
                with server.lock:
                    answer = json.dumps(server.stats.summary())
            elif command == "set" and len(rest) == 2 and rest[0] in numeric:
                with script.lock:
                    setattr(script, rest[0], numeric[rest[0]](float(rest[1])))  # ints arrive as "3" or "3.0"
                answer = "ok"
            else:
                answer = f"unknown command {line!r}"
            print(answer, flush=True)
    finally:
        listener.close()  # stdin closed: the test is done with us


def main() -> None:
    parser = argparse.ArgumentParser(description="A fault-injecting SMTP server for tests (prints its port).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time taken per accepted message")
    parser.add_argument("--max-connections", type=int, default=None, help="beyond this many at once: 421")
    parser.add_argument("--greeting-421-next", type=int, default=0)
    parser.add_argument("--data-554-next", type=int, default=0)
    parser.add_argument("--stall-after-data-next", type=int, default=0, help="-1: every message")
    parser.add_argument("--drop-mid-data-next", type=int, default=0)
    parser.add_argument("--refuse-rcpt", action="append", default=[], metavar="ADDRESS=CODE")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
