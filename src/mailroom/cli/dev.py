"""Development helpers: ``mailroom sink`` (a local SMTP server that keeps every mail) and ``mailroom dev``.

``mailroom dev`` is what ``make run`` starts: a sink, an SMTP server entry pointing at it, and a worker,
so a mail sent from another shell shows up in the terminal within a poll interval.
"""

import asyncio
import os
import secrets
import signal
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Annotated

import typer

from mailroom.adapters.smtp.dev_sink import DevSink, ReceivedMail
from mailroom.app import Mailroom
from mailroom.cli.context import mailroom, setup_logging
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.servers import Security, ServerSettings
from mailroom.errors import ConfigurationError, ServerNotFound

DEV_SERVER = "dev-sink"
DEV_HOST = "127.0.0.1"
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


def sink(
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on (0 picks a free one).")] = 1025,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = DEV_HOST,
    directory: Annotated[Path | None, typer.Option("--dir", help="Also save each mail as an .eml file here.",
                                                   file_okay=False)] = None,
) -> None:
    """Run a local SMTP server that accepts every mail and prints one line for each."""
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


def ensure_first_admin(room: Mailroom) -> str | None:
    """Create an administrator when there is no user at all; returns the login line to print.

    The password comes from MAILROOM_DEV_ADMIN_PASSWORD or is generated and shown once, here only.
    """
    if room.users.has_users():
        return None
    password = os.environ.get("MAILROOM_DEV_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    room.users.create_admin(DEV_ADMIN, password, first_name="Admin")
    return f"created the first administrator: log in at {room.settings.public_base_url} as {DEV_ADMIN} " \
           f"with password {password}"


def dev(
    ctx: typer.Context,
    sink_port: Annotated[int | None, typer.Option("--sink-port", help="Port of the local SMTP sink "
                                                  "(default: MAILROOM_DEV_SINK_PORT, 1025).")] = None,
    sink_dir: Annotated[Path | None, typer.Option("--sink-dir", help="Also save received mails as .eml files "
                                                  "here.", file_okay=False)] = None,
) -> None:
    """Development stack: an SMTP sink, a "dev-sink" server entry for it, and a worker, until Ctrl-C."""
    room = mailroom(ctx)
    setup_logging(room.settings.log_level)
    port = room.settings.dev_sink_port if sink_port is None else sink_port
    dev_sink = start_sink(DEV_HOST, port, sink_dir)
    try:
        ensure_dev_server(room, dev_sink.port)
        login = ensure_first_admin(room)
        if login:
            typer.echo(login)
        typer.echo(
            f"mailroom dev: SMTP sink on {DEV_HOST}:{dev_sink.port} (server {DEV_SERVER!r}), worker running; "
            "Ctrl-C stops.\n"
            "  send a mail:  mailroom send --to a@example.org --subject hi --text x\n"
            "  see the log:  mailroom log"
        )
        asyncio.run(room.run_worker(handle_signals=True))
    finally:
        dev_sink.stop()
