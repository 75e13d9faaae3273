"""SMTP over aiosmtplib: sessions that stay open for many mails, and a step-by-step connection probe.

aiosmtplib's exceptions are mapped onto mailroom's DeliveryError tree here, and nowhere else, so the
core judges outcomes without knowing the library. Error texts come from server replies and host names;
the password is scrubbed from them in case a server echoes it.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cache

import aiosmtplib

from mailroom.domain.servers import Security, SmtpServer
from mailroom.errors import (
    DeliveryError,
    SmtpAuthError,
    SmtpConnectError,
    SmtpDisconnected,
    SmtpPermanentError,
    SmtpTemporaryError,
    SmtpTimeout,
)
from mailroom.ports import ProbeStep, SendReport

# A connection idle longer than this is checked with NOOP before the next mail: servers close idle
# connections, and finding out in the middle of a mail would defer it for nothing.
IDLE_CHECK_SECONDS = 5.0


@cache
def _default_local_hostname() -> str:
    return socket.getfqdn()


class AiosmtplibTransport:
    """Implements the ``Transport`` port."""

    def __init__(self, *, ca_file: str | None = None, local_hostname: str | None = None) -> None:
        self._ca_file = ca_file
        self._local_hostname = local_hostname

    def tls_context(self) -> ssl.SSLContext:
        """Certificates are always verified; a custom CA file adds to (tests: replaces) the trust store."""
        return ssl.create_default_context(cafile=self._ca_file)

    def client(self, server: SmtpServer) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=server.host, port=server.port, timeout=server.timeout_seconds,
            use_tls=server.security is Security.TLS, start_tls=server.security is Security.STARTTLS,
            tls_context=self.tls_context() if server.security is not Security.NONE else None,
            local_hostname=self._local_hostname or _default_local_hostname(),
        )

    @asynccontextmanager
    async def session(self, server: SmtpServer, password: str | None) -> AsyncIterator[AiosmtplibSession]:
        session = AiosmtplibSession(self, server, password)
        await session.open()
        try:
            yield session
        finally:
            await session.close()

    async def probe(self, server: SmtpServer, password: str | None) -> list[ProbeStep]:
        steps: list[ProbeStep] = []
        client = aiosmtplib.SMTP(
            hostname=server.host, port=server.port, timeout=server.timeout_seconds,
            use_tls=server.security is Security.TLS, start_tls=False,
            tls_context=self.tls_context() if server.security is not Security.NONE else None,
            local_hostname=self._local_hostname or _default_local_hostname(),
        )
        scrub = _Scrubber(password)
        where = f"{server.host}:{server.port}"
        try:
            try:
                greeting = await client.connect()
                how = " over TLS" if server.security is Security.TLS else ""
                steps.append(ProbeStep(name="connect", ok=True, detail=f"connected to {where}{how}: "
                                                                      f"{greeting.code} {greeting.message}"))
            except (aiosmtplib.SMTPException, OSError) as exc:
                steps.append(ProbeStep(name="connect", ok=False, detail=scrub(f"cannot connect to {where}: "
                                                                              f"{_describe(exc)}")))
                return steps
            step = "ehlo"
            try:
                reply = await client.ehlo()
                steps.append(ProbeStep(name=step, ok=True, detail=f"{reply.code} {_first_line(reply.message)}"))
                if server.security is Security.STARTTLS:
                    step = "starttls"
                    reply = await client.starttls()
                    steps.append(ProbeStep(name=step, ok=True, detail=f"{reply.code} {reply.message}; "
                                                                      "certificate verified"))
                step = "login"
                if server.username:
                    reply = await client.login(server.username, password or "")
                    steps.append(ProbeStep(name=step, ok=True, detail=f"{reply.code} {reply.message}"))
                else:
                    steps.append(ProbeStep(name=step, ok=True, detail="skipped: no username configured"))
            except (aiosmtplib.SMTPException, OSError) as exc:
                steps.append(ProbeStep(name=step, ok=False, detail=scrub(_describe(exc))))
        finally:
            client.close()
        return steps


class AiosmtplibSession:
    """One logged-in connection; reconnects by itself when the server closed it between mails."""

    def __init__(self, transport: AiosmtplibTransport, server: SmtpServer, password: str | None) -> None:
        self._transport = transport
        self._server = server
        self._password = password
        self._scrub = _Scrubber(password)
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def open(self) -> None:
        client = self._transport.client(self._server)
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
            raise SmtpConnectError(self._message(f"cannot connect to {self._server.host}:{self._server.port}", exc),
                                   code=code, server=self._server.name) from None
        if self._server.username:
            try:
                await client.login(self._server.username, self._password or "")
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                client.close()
                raise SmtpConnectError(self._message("connection lost while logging in", exc),
                                       server=self._server.name) from None
            except aiosmtplib.SMTPException as exc:
                # A refused password, or no AUTH offered (often: AUTH only after STARTTLS).
                client.close()
                code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
                reply = self._scrub(exc.message) if isinstance(exc, aiosmtplib.SMTPResponseException) else None
                raise SmtpAuthError(self._message(f"login as {self._server.username!r} refused", exc),
                                    code=code, reply=reply, server=self._server.name) from None
        self._client = client
        self._last_used = time.monotonic()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit(timeout=2)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            client.close()

    async def _ready_client(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                await client.noop()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        if client is None or not client.is_connected:
            await self.close()
            await self.open()
            client = self._client
            assert client is not None
        return client

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        client = await self._ready_client()
        envelope_sender = _envelope_address(sender)
        envelope = [_envelope_address(r) for r in recipients]
        options = ["SMTPUTF8"] if not all(a.isascii() for a in (envelope_sender, *envelope)) else []
        try:
            refused, reply = await client.sendmail(envelope_sender, envelope, message, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            error_type = SmtpPermanentError if all(c >= 500 for c in codes) else SmtpTemporaryError
            raise error_type(f"{self._server.name}: every recipient refused ({replies})", code=max(codes),
                             reply=replies, server=self._server.name) from None
        except aiosmtplib.SMTPResponseException as exc:
            error_type = SmtpPermanentError if exc.code >= 500 else SmtpTemporaryError
            raise error_type(self._message("message refused", exc), code=exc.code, reply=exc.message,
                             server=self._server.name) from None
        except aiosmtplib.SMTPTimeoutError as exc:
            client.close()
            raise SmtpTimeout(self._message("no answer in time", exc), server=self._server.name) from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            client.close()
            raise SmtpDisconnected(self._message("connection dropped", exc), server=self._server.name) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise SmtpPermanentError(self._message("server cannot take this mail", exc),
                                     server=self._server.name) from None
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise DeliveryError(self._message("SMTP error", exc), server=self._server.name) from None
        self._last_used = time.monotonic()
        by_envelope = dict(zip(envelope, recipients, strict=True))
        return SendReport(code=250, reply=reply,
                          refused={by_envelope.get(a, a): (r.code, r.message) for a, r in refused.items()})

    def _message(self, what: str, exc: BaseException) -> str:
        return self._scrub(f"{self._server.name}: {what}: {_describe(exc)}")


class _Scrubber:
    """Removes a password from a text: plain, and inside any base64 token that decodes to it.

    Every AUTH form the client sends carries the password in base64: PLAIN the whole ``\\0user\\0password``
    blob, LOGIN the password alone, XOAUTH2 ``user=...\\x01auth=Bearer ...``. A server that quotes the
    exchange in its reply may echo any of them, with or without padding and at any offset of the blob, so
    tokens are decoded and looked into instead of matching a fixed list of encodings. (CRAM-MD5 sends only
    an HMAC of the password, and the username is not secret.)
    """

    _TOKEN = re.compile(r"[A-Za-z0-9+/]{4,}={0,2}")

    def __init__(self, password: str | None) -> None:
        self._password = password or ""
        self._raw = self._password.encode()

    def __call__(self, text: str) -> str:
        if not self._password:
            return text
        return self._TOKEN.sub(self._token, text.replace(self._password, "********"))

    def _token(self, match: re.Match[str]) -> str:
        token = match.group()
        stripped = token.rstrip("=")
        # A token cut out of a longer base64 text may start off its 4-character grid: try every alignment.
        for skip in range(min(4, len(stripped))):
            body = stripped[skip:]
            try:
                decoded = base64.b64decode(body + "=" * (-len(body) % 4))
            except ValueError:
                continue
            if self._raw in decoded:
                return "********"
        return token


def _envelope_address(address: str) -> str:
    """ASCII (IDNA) domain when the local part is ASCII, so servers without SMTPUTF8 take the mail."""
    local, _, domain = address.rpartition("@")
    if domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, ssl.SSLError):
        return f"TLS failed: {exc.__cause__.reason or exc.__cause__}"
    return str(exc) or type(exc).__name__


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
