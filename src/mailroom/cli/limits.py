"""``mailroom limits``: rate limits per SMTP server and per recipient domain, and how much of each is used."""

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from mailroom.cli import output
from mailroom.cli.context import command_group, mailroom
from mailroom.cli.errors import UsageProblem
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.rate_limits import RateLimit, limits_from

limits_app = command_group("Rate limits per SMTP server and per recipient domain, shared by all workers.")

Server = Annotated[str | None, typer.Option("--server", metavar="NAME", help="An SMTP server (name or id).")]
Domain = Annotated[str | None, typer.Option("--domain", metavar="DOMAIN",
                                            help="A recipient domain, e.g. gmail.com.")]


def _count(window: str) -> Any:
    return typer.Option(f"--per-{window}", metavar="N", min=1, help=f"At most N mails in any {window}.")


@limits_app.command("set")
def set_(
    ctx: typer.Context,
    server: Server = None,
    domain: Domain = None,
    per_second: Annotated[int | None, _count("second")] = None,
    per_minute: Annotated[int | None, _count("minute")] = None,
    per_hour: Annotated[int | None, _count("hour")] = None,
    per_day: Annotated[int | None, _count("day")] = None,
) -> None:
    """Set the limits of a server or a domain (replacing its earlier ones; the sends already counted stay)."""
    limits = limits_from(per_second=per_second, per_minute=per_minute, per_hour=per_hour, per_day=per_day)
    if not limits:
        raise UsageProblem("give at least one of --per-second, --per-minute, --per-hour, --per-day "
                           "(or `mailroom limits clear` to remove the limits)")
    _apply(ctx, server, domain, limits)
    typer.echo(f"{_named(server, domain)}: at most {', '.join(str(limit) for limit in limits)}")


@limits_app.command("clear")
def clear(ctx: typer.Context, server: Server = None, domain: Domain = None) -> None:
    """Remove the limits of a server or a domain."""
    _apply(ctx, server, domain, ())
    typer.echo(f"{_named(server, domain)}: no rate limit")


@limits_app.command("list")
def list_(ctx: typer.Context,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """Each limit and how many mails went out in its last window."""
    uses = mailroom(ctx).rate_limits.list(SYSTEM)
    if as_json:
        output.print_json([{"kind": u.use.scope.kind.value, "name": u.name, "window": u.use.limit.window.label,
                            "limit": u.use.limit.count, "used": u.use.used} for u in uses])
        return
    if not uses:
        typer.echo("No rate limits. Set one with: mailroom limits set --server NAME --per-minute 100")
        return
    from rich.table import Table  # here: only the listing commands print tables

    table = Table(box=None)
    for column in ("for", "name", "window", "used / limit"):
        table.add_column(column, no_wrap=column != "name", overflow="ellipsis")
    for u in uses:
        table.add_row(u.use.scope.kind.value, output.text(u.name), u.use.limit.window.label,
                      f"{u.use.used} / {u.use.limit.count}")
    output.console().print(table)


def _apply(ctx: typer.Context, server: str | None, domain: str | None, limits: Sequence[RateLimit]) -> None:
    if (server is None) == (domain is None):
        raise UsageProblem("give either --server NAME or --domain DOMAIN")
    room = mailroom(ctx)
    if server is not None:
        room.rate_limits.set_for_server(SYSTEM, server, limits)
    else:
        assert domain is not None
        room.rate_limits.set_for_domain(SYSTEM, domain, limits)


def _named(server: str | None, domain: str | None) -> str:
    return f"server {server}" if server is not None else f"domain {domain}"
