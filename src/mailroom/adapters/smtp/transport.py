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
from collections.abc import Sequence
from functools import cache

import aiosmtplib

from mailroom.domain.addresses import envelope_address
from mailroom.domain.servers import Security, SmtpServer, helo_name_for, is_fully_qualified
from mailroom.errors import (
    DeliveryError,
    SmtpAuthError,
    SmtpConnectError,
    SmtpDisconnected,
    SmtpOutcomeUnknown,
    SmtpPermanentError,
    SmtpTemporaryError,
    SmtpTimeout,
    Text,
)
from mailroom.ports import ProbeStep, SendReport

# An envelope address as mailroom stores it (validated when the mail was queued): nothing to unquote or strip.
_PLAIN_ADDRESS = re.compile(r"[^\s<>\"(),;:\\@]+@[^\s<>\"(),;:\\@]+")

# A connection idle longer than this is checked with NOOP before the next mail: servers close idle
# connections, and finding out in the middle of a mail would defer it for nothing.
IDLE_CHECK_SECONDS = 5.0


@cache
def _fqdn() -> str:
    return socket.getfqdn()


class AiosmtplibTransport:
    """Implements the ``Transport`` port."""

    def __init__(self, *, ca_file: str | None = None, helo_name: str | None = None) -> None:
        self._ca_file = ca_file
        self._helo_name = helo_name

    def tls_context(self) -> ssl.SSLContext:
        """Certificates are always verified; a custom CA file adds to (tests: replaces) the trust store."""
        return ssl.create_default_context(cafile=self._ca_file)

    def helo_name(self, server: SmtpServer, sender: str | None = None) -> str:
        return helo_name_for(server, configured=self._helo_name, fqdn=_fqdn(), sender=sender)

    def client(self, server: SmtpServer, *, sender: str | None = None,
               start_tls: bool | None = None) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=server.host, port=server.port, timeout=server.timeout_seconds,
            use_tls=server.security is Security.TLS,
            start_tls=server.security is Security.STARTTLS if start_tls is None else start_tls,
            tls_context=self.tls_context() if server.security is not Security.NONE else None,
            local_hostname=self.helo_name(server, sender),
        )

    async def connect(self, server: SmtpServer, password: str | None, *,
                      sender: str | None = None) -> AiosmtplibSession:
        session = AiosmtplibSession(self, server, password, sender=sender)
        await session.open()
        return session

    async def probe(self, server: SmtpServer, password: str | None) -> list[ProbeStep]:
        steps: list[ProbeStep] = []
        client = self.client(server, start_tls=False)
        scrub = _Scrubber(password)
        where = f"{server.host}:{server.port}"
        try:
            try:
                greeting = await client.connect()
                connected = Text("connected to {where} over TLS: {reply}" if server.security is Security.TLS
                                 else "connected to {where}: {reply}",
                                 {"where": where, "reply": f"{greeting.code} {greeting.message}"})
                steps.append(_step("connect", True, connected))
            except (aiosmtplib.SMTPException, OSError) as exc:
                steps.append(_step("connect", False, Text("cannot connect to {where}: {reason}",
                                                          {"where": where, "reason": _connect_problem(exc, scrub)})))
                return steps
            step = "ehlo"
            try:
                reply = await client.ehlo()
                helo = client.local_hostname or ""
                answer = f"{reply.code} {_first_line(reply.message)}"
                detail = Text("{reply} (as {helo})", {"reply": answer, "helo": helo}) if is_fully_qualified(helo) \
                    else Text("{reply} (as {helo}); warning: {helo!r} is not a fully qualified host name, which many "
                              "servers refuse for good: set MAILROOM_SMTP_HELO_NAME or the server's EHLO name",
                              {"reply": answer, "helo": helo})
                steps.append(_step(step, True, detail))
                if server.security is Security.STARTTLS:
                    step = "starttls"
                    reply = await client.starttls()
                    steps.append(_step(step, True, Text("{reply}; certificate verified",
                                                        {"reply": f"{reply.code} {reply.message}"})))
                step = "login"
                if server.username:
                    reply = await client.login(server.username, password or "")
                    steps.append(ProbeStep(name=step, ok=True, detail=f"{reply.code} {reply.message}"))
                else:
                    steps.append(_step(step, True, Text("skipped: no username configured")))
            except (aiosmtplib.SMTPException, OSError) as exc:
                steps.append(ProbeStep(name=step, ok=False, detail=scrub(_describe(exc))))
        finally:
            client.close()
        return steps


class AiosmtplibSession:
    """One logged-in connection, owned by one sender task: it never reconnects by itself, so that a
    reconnect always reads the password afresh and counts against the server's health, not the mail."""

    def __init__(self, transport: AiosmtplibTransport, server: SmtpServer, password: str | None, *,
                 sender: str | None = None) -> None:
        self._transport = transport
        self._server = server
        self._password = password
        self._sender = sender
        self._scrub = _Scrubber(password)
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def open(self) -> None:
        client = self._transport.client(self._server, sender=self._sender)
        try:
            await client.connect()
            # Greet now, not with the first MAIL: the server's extensions (SMTPUTF8) decide how that mail goes.
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
            raise SmtpConnectError(self._message("cannot connect to {where}", exc,
                                                 where=f"{self._server.host}:{self._server.port}"),
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
                raise SmtpAuthError(self._message("login as {username!r} refused", exc, username=self._server.username),
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

    async def ensure_alive(self) -> bool:
        client = self._client
        if client is None or not client.is_connected:
            return False
        if time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                await client.noop()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
                return False
        return True

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendReport:
        client = self._client
        if client is None or not client.is_connected:
            raise SmtpDisconnected(f"{self._server.name}: the connection is closed", server=self._server.name)
        envelope_sender = envelope_address(sender)
        envelope = [envelope_address(r) for r in recipients]
        utf8 = not all(a.isascii() for a in (envelope_sender, *envelope))
        if utf8 and not client.supports_extension("smtputf8"):
            raise SmtpPermanentError(Text("{server}: the mail has an address that cannot be written in ASCII and the "
                                          "server does not offer SMTPUTF8", {"server": self._server.name}),
                                     server=self._server.name)
        options = ["SMTPUTF8"] if utf8 else []
        encoding = "utf-8" if utf8 else "ascii"
        refused: dict[str, tuple[int, str]] = {}
        in_data = False
        try:
            await _mail_from(client, envelope_sender, options, encoding)
            for recipient, address in zip(recipients, envelope, strict=True):
                try:
                    await _rcpt_to(client, address, encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[recipient] = (exc.code, exc.message)
            if len(refused) == len(recipients):
                await client.rset()
                self._last_used = time.monotonic()
                return SendReport(code=None, reply="no recipient was accepted", refused=refused)
            in_data = True
            response = await client.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            error_type = SmtpPermanentError if exc.code >= 500 else SmtpTemporaryError
            raise error_type(self._message("message refused", exc), code=exc.code, reply=exc.message,
                             server=self._server.name) from None
        except aiosmtplib.SMTPTimeoutError as exc:
            client.close()
            if in_data:
                raise SmtpOutcomeUnknown(self._message("no answer after the message was sent; it may have arrived",
                                                       exc), server=self._server.name) from None
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
        return SendReport(code=response.code, reply=response.message, refused=refused)

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """RSET after a refusal, so the connection can take the next mail; a failed RSET closes it."""
        if not client.is_connected:
            return
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def _message(self, what: str, exc: BaseException, **params: object) -> Text:
        """``<server>: <what>: <the library's or server's words>``; ``what`` is the part the edges translate."""
        return Text("{server}: " + what + ": {reason}",
                    {"server": self._server.name, "reason": self._scrub(_describe(exc)), **params})


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


def _step(name: str, ok: bool, text: Text) -> ProbeStep:
    return ProbeStep(name=name, ok=ok, detail=str(text), text=text)


def _connect_problem(exc: BaseException, scrub: _Scrubber) -> Text | str:
    """Why a connection failed, as a sentence the UI can translate for the usual causes."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ConnectionRefusedError):
        return Text("the connection was refused: check the host and port, and that the server runs")
    if isinstance(cause, socket.gaierror):
        return Text("the host name is not known: check its spelling and the DNS")
    if isinstance(cause, TimeoutError) or isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return Text("no answer within the timeout: check the host, the port and any firewall")
    return scrub(_describe(exc))


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


# aiosmtplib's mail() and rcpt() parse every address again with email.utils.parseaddr, about a seventh of a
# worker's CPU per mail. Addresses mailroom validated at queue time are sent as they are, with the same
# answer checks; anything else goes through the library's own parsing.

async def _mail_from(client: aiosmtplib.SMTP, address: str, options: list[str], encoding: str) -> None:
    if not _PLAIN_ADDRESS.fullmatch(address):
        await client.mail(address, options=options, encoding=encoding)
        return
    response = await client.execute_command(b"MAIL", b"FROM:<" + address.encode(encoding) + b">",
                                            *(option.encode("ascii") for option in options))
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, address)


async def _rcpt_to(client: aiosmtplib.SMTP, address: str, encoding: str) -> None:
    if not _PLAIN_ADDRESS.fullmatch(address):
        await client.rcpt(address, encoding=encoding)
        return
    response = await client.execute_command(b"RCPT", b"TO:<" + address.encode(encoding) + b">")
    if response.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, address)
