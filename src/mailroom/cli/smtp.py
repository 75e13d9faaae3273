"""``mailroom smtp``: add, list, test, update and remove SMTP servers.

A password never travels on the command line (it would land in shell history and ``ps``): it comes
from an environment variable, from stdin, or from a hidden prompt.
"""

import dataclasses
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailroom.cli import output
from mailroom.cli.context import command_group, mailroom
from mailroom.cli.errors import ProbeFailed, UsageProblem
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.rate_limits import ScopeKind
from mailroom.domain.servers import Security, ServerSettings
from mailroom.errors import ConfigurationError

if TYPE_CHECKING:
    from mailroom.usecases.rate_limits import NamedLimitUse

smtp_app = command_group("Manage the SMTP servers mail is delivered through.")

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The server's name (or id).")]
PasswordEnv = Annotated[str | None, typer.Option("--password-env", metavar="VAR",
                                                 help="Read the password from this environment variable.")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line "
                                             "of stdin.")]
Username = Annotated[str | None, typer.Option("--username", "-u", help="Login name; asks for the password "
                                              "when neither --password-env nor --password-stdin is given.")]
Sender = Annotated[str | None, typer.Option("--sender", help="From address for mails that name none.")]
ServerPriority = Annotated[int | None, typer.Option("--priority", help="Higher is tried first.")]
Timeout = Annotated[float | None, typer.Option("--timeout", metavar="SECONDS", help="Connection and command "
                                               "timeout.")]
Enabled = Annotated[bool | None, typer.Option("--enabled/--disabled", help="Whether the worker uses it.")]
HeloName = Annotated[str | None, typer.Option("--helo-name", metavar="HOST", help="The name given in EHLO "
                                              "(default: MAILROOM_SMTP_HELO_NAME, else this host's FQDN, else "
                                              "the sender's domain).")]


def read_password(ctx: typer.Context, password_env: str | None, password_stdin: bool) -> str | None:
    """The password from the chosen source, or None when none was chosen."""
    if password_env and password_stdin:
        raise UsageProblem("give --password-env or --password-stdin, not both")
    if password_env:
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigurationError(f"--password-env: the environment variable {password_env} is not set",
                                     field="password")
        return value
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return None


def prompt_password(ctx: typer.Context, username: str, host: str) -> str | None:
    """Ask on the terminal with hidden input; an empty answer means no password."""
    if not sys.stdin.isatty():
        raise UsageProblem("--username needs a password and there is no terminal to ask on: give "
                               "--password-env VAR or --password-stdin")
    answer: str = typer.prompt(f"Password for {username} at {host}", default="", show_default=False,
                               hide_input=True)
    return answer or None


@smtp_app.command("add")
def add(
    ctx: typer.Context,
    name: NameArgument,
    host: Annotated[str, typer.Option("--host", help="Host name or IP address.")],
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 587,
    security: Annotated[Security, typer.Option("--security", help="starttls (587), tls (465) or none "
                                               "(local relays only).")] = Security.STARTTLS,
    username: Username = None,
    password_env: PasswordEnv = None,
    password_stdin: PasswordStdin = False,
    sender: Sender = None,
    priority: Annotated[int, typer.Option("--priority", help="Higher is tried first.")] = 0,
    enabled: Annotated[bool, typer.Option("--enabled/--disabled", help="Whether the worker uses it.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Connection and command "
                                           "timeout.")] = 30.0,
    helo_name: HeloName = None,
) -> None:
    """Add an SMTP server."""
    settings = ServerSettings(name=name, host=host, port=port, security=security, username=username or "",
                              sender=sender or "", priority=priority, enabled=enabled, timeout_seconds=timeout,
                              helo_name=helo_name or "")
    password = read_password(ctx, password_env, password_stdin)
    if password is None and username:
        password = prompt_password(ctx, username, host)
    server = mailroom(ctx).servers.add(SYSTEM, settings, password)
    typer.echo(f"added SMTP server {server.name!r} ({server.host}:{server.port}, {server.security}); "
               f"check it with `mailroom smtp test {server.name}`")


@smtp_app.command("list")
def list_(ctx: typer.Context,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List SMTP servers (never their passwords)."""
    room = mailroom(ctx)
    servers = room.servers.list(SYSTEM)
    uses: dict[str, list[NamedLimitUse]] = {}
    for named in room.rate_limits.list(SYSTEM):
        if named.use.scope.kind is ScopeKind.SERVER:
            uses.setdefault(named.use.scope.target, []).append(named)
    if as_json:
        output.print_json([output.server_json(s) | {"rate_limits": [
            {"window": u.use.limit.window.label, "limit": u.use.limit.count, "used": u.use.used}
            for u in uses.get(s.id, [])]} for s in servers])
    else:
        output.print_servers(servers, {server_id: ", ".join(
            f"{u.use.used}/{u.use.limit.count} per {u.use.limit.window.label}" for u in named_uses)
            for server_id, named_uses in uses.items()})


@smtp_app.command("test")
def test(ctx: typer.Context, name: NameArgument) -> None:
    """Connect, EHLO, STARTTLS and log in, showing each step; exit 3 when a step fails."""
    import asyncio

    steps = asyncio.run(mailroom(ctx).servers.test(SYSTEM, name))
    output.print_probe(name, steps)
    failed = [step.name for step in steps if not step.ok]
    if failed or not steps:
        raise ProbeFailed(f"SMTP server {name!r} failed the test at: {', '.join(failed) or 'no step ran'}")


@smtp_app.command("update")
def update(
    ctx: typer.Context,
    name: NameArgument,
    host: Annotated[str | None, typer.Option("--host", help="Host name or IP address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port.")] = None,
    security: Annotated[Security | None, typer.Option("--security", help="starttls, tls or none.")] = None,
    username: Username = None,
    password_env: PasswordEnv = None,
    password_stdin: PasswordStdin = False,
    clear_password: Annotated[bool, typer.Option("--clear-password", help="Remove the stored "
                                                 "password.")] = False,
    sender: Sender = None,
    priority: ServerPriority = None,
    enabled: Enabled = None,
    timeout: Timeout = None,
    helo_name: HeloName = None,
) -> None:
    """Change some settings of an SMTP server; the password stays unless a new one is given."""
    password = read_password(ctx, password_env, password_stdin)
    if clear_password:
        if password is not None:
            raise UsageProblem("--clear-password excludes --password-env and --password-stdin")
        password = ""  # the use case's "remove it"
    room = mailroom(ctx)
    current = room.servers.get(SYSTEM, name)
    changes: dict[str, Any] = {
        "host": host, "port": port, "security": security, "username": username, "sender": sender,
        "priority": priority, "enabled": enabled, "timeout_seconds": timeout, "helo_name": helo_name,
    }
    base = {f.name: getattr(current, f.name) for f in dataclasses.fields(ServerSettings)}
    settings = ServerSettings(**(base | {k: v for k, v in changes.items() if v is not None}))
    server = room.servers.update(SYSTEM, current.id, settings, password)
    typer.echo(f"updated SMTP server {server.name!r} ({server.host}:{server.port}, {server.security})")


@smtp_app.command("remove")
def remove(ctx: typer.Context, name: NameArgument) -> None:
    """Remove an SMTP server (queued mails stay queued)."""
    mailroom(ctx).servers.remove(SYSTEM, name)
    typer.echo(f"removed SMTP server {name!r}")
