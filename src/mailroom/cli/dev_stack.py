"""What ``mailroom sink`` and ``mailroom dev`` run: the SMTP sink, the dev server entry, worker and web server.

Imported only by those two commands (see :mod:`mailroom.cli.dev`): it needs uvicorn, aiosmtpd and the facade.
"""

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections.abc import Coroutine, Iterator
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import typer
import uvicorn

from mailroom.adapters.smtp.dev_sink import DevSink, ReceivedMail
from mailroom.app import Mailroom
from mailroom.cli.context import mailroom, setup_logging, state
from mailroom.cli.dev import DEV_HOST
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.servers import Security, ServerSettings
from mailroom.errors import ConfigurationError, ServerNotFound

DEV_SERVER = "dev-sink"
DEV_PRIORITY = 1000
# From of mails that name none; example.org is reserved, so nothing could ever reach a real domain.
DEV_SENDER = "mailroom-dev@example.org"


def describe(received: ReceivedMail) -> str:
    """One line per mail: sender, recipients and subject."""
    try:
        subject = str(BytesHeaderParser(policy=default_policy).parsebytes(received.data).get("subject", ""))
    except Exception:
        subject = "?"
    sender = received.envelope_from or "<>"
    return f"received mail from {sender} to {', '.join(received.recipients)}: {subject!r}"


def print_received(received: ReceivedMail) -> None:
    # Called from the sink's server thread; typer.echo writes one line at once.
    typer.echo(describe(received))


def start_sink(host: str, port: int, directory: Path | None) -> DevSink:
    sink = DevSink(host=host, port=port, directory=directory, on_message=print_received)
    try:
        sink.start()
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port "
                                 "(--sink-port / --port or MAILROOM_DEV_SINK_PORT)", field="dev_sink_port") from exc
    return sink


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM, so ``finally`` blocks run and the exit code is 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_sink(host: str, port: int, directory: Path | None) -> None:
    """Run the sink until SIGINT or SIGTERM."""
    dev_sink = start_sink(host, port, directory)
    try:
        where = f", saving to {directory}" if directory else ""
        typer.echo(f"SMTP sink listening on {host}:{dev_sink.port}{where}; Ctrl-C stops")
        asyncio.run(wait_for_stop_signal())
    finally:
        dev_sink.stop()
    typer.echo(f"SMTP sink stopped after {len(dev_sink.messages)} mail(s)")


def ensure_dev_server(room: Mailroom, port: int) -> None:
    """Make the "dev-sink" server point at the sink; other settings the developer chose are kept."""
    try:
        server = room.servers.get(SYSTEM, DEV_SERVER)
    except ServerNotFound:
        room.servers.add(SYSTEM, ServerSettings(name=DEV_SERVER, host=DEV_HOST, port=port,
                                                security=Security.NONE, priority=DEV_PRIORITY,
                                                sender=DEV_SENDER))
        return
    if (server.host, server.port, server.security) != (DEV_HOST, port, Security.NONE) or not server.sender:
        room.servers.update(SYSTEM, server.id, ServerSettings(
            name=server.name, host=DEV_HOST, port=port, security=Security.NONE, username=server.username,
            sender=server.sender or DEV_SENDER, priority=server.priority, enabled=server.enabled,
            timeout_seconds=server.timeout_seconds))


DEV_ADMIN = "admin@example.org"


class StackServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handling (it would re-raise them after shutdown and end the
    process with the signal): the stack stops worker and server together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def take_web_port(host: str, port: int) -> socket.socket:
    """A listening socket on the web port, taken before anything else happens (see :func:`run_dev`)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # listening holds the port: another process cannot bind it in between
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"the web server cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                                 "another port with --port or MAILROOM_WEB_PORT", field="web_port") from exc
    return sock


def web_server(room: Mailroom) -> StackServer:
    from mailroom.web import create_app

    config = uvicorn.Config(create_app(room), log_level="warning", access_log=False)
    return StackServer(config)


def ensure_first_admin(room: Mailroom, login_url: str) -> str:
    """Create an administrator when there is no user at all; returns how to log in.

    The password comes from MAILROOM_DEV_ADMIN_PASSWORD or is generated and shown once, here only.
    """
    if room.users.has_users():
        return (f"log in at {login_url} with your account; forgot the password? `mailroom user reset-password "
                "EMAIL` sends a reset link to the sink (start with --sink-dir DIR to keep mails as .eml files)")
    password = os.environ.get("MAILROOM_DEV_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    room.users.create_admin(DEV_ADMIN, password, first_name="Admin")
    return f"created the first administrator: log in at {login_url} as {DEV_ADMIN} with password {password}"


def run_dev(ctx: typer.Context, sink_port: int | None, sink_dir: Path | None, port: int | None, web: bool) -> None:
    """The development stack until SIGINT or SIGTERM."""
    settings = state(ctx).settings()
    setup_logging(settings.log_level)
    sink_port = settings.dev_sink_port if sink_port is None else sink_port
    web_port = settings.web_port if port is None else port
    # Both ports are taken before the database is touched: a second `mailroom dev` whose port is taken must
    # fail without pointing the shared "dev-sink" server at its own sink (the running instance would then
    # defer every mail).
    web_socket = take_web_port(settings.web_host, web_port) if web else None
    try:
        dev_sink = start_sink(DEV_HOST, sink_port, sink_dir)
        try:
            room = mailroom(ctx)
            ensure_dev_server(room, dev_sink.port)
            web_url = f"http://{settings.web_host}:{web_port}"
            if web:
                typer.echo(ensure_first_admin(room, f"{web_url}/login"))
            where = f"web UI on {web_url}, " if web else ""
            typer.echo(
                f"mailroom dev: {where}SMTP sink on {DEV_HOST}:{dev_sink.port} (server {DEV_SERVER!r}), worker "
                "running; Ctrl-C stops.\n"
                "  send a mail:  mailroom send --to a@example.org --subject hi --text x\n"
                "  see the log:  mailroom log"
            )
            asyncio.run(run_stack(room, web_socket))
        finally:
            dev_sink.stop()
    finally:
        if web_socket is not None:
            web_socket.close()


async def run_stack(room: Mailroom, web_socket: socket.socket | None) -> None:
    """Worker and (optionally) web server in one event loop; SIGINT/SIGTERM stop both gracefully."""
    worker = room.create_worker()
    server = web_server(room) if web_socket is not None else None
    loop = asyncio.get_running_loop()

    def stop() -> None:
        worker.stop()
        if server is not None:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        jobs: list[Coroutine[Any, Any, object]] = [room.run_worker(worker=worker)]
        if server is not None and web_socket is not None:
            jobs.append(server.serve(sockets=[web_socket]))
        await asyncio.gather(*jobs)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
