"""``mailroom permissions`` and ``mailroom user``: the people who use the admin UI, and their roles.

Like SMTP passwords, a user's password never travels on the command line: it comes from an environment
variable, from stdin, or from a hidden prompt.
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailroom.cli import output
from mailroom.cli.context import command_group, mailroom
from mailroom.cli.errors import UsageProblem
from mailroom.cli.smtp import PasswordEnv, PasswordStdin, read_password
from mailroom.domain.permissions import PERMISSIONS, SYSTEM
from mailroom.domain.users import Profile, User
from mailroom.errors import UserNotFound

if TYPE_CHECKING:
    from mailroom.app import Mailroom

users_app = command_group("Manage users and their roles.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
EmailArgument = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's e-mail address.")]


def permissions(as_json: Json = False) -> None:
    """List every permission the use cases check, with what it allows."""
    declared = PERMISSIONS.all()
    if as_json:
        output.print_json(declared)
        return
    from rich.table import Table  # here: only the listing commands print tables

    table = Table("permission", "label", "allows", box=None)
    for p in declared:
        table.add_row(p.id, p.label, p.description)
    output.console().print(table)


def user_json(user: User) -> dict[str, Any]:
    data: dict[str, Any] = output.to_jsonable(user)
    data.pop("profile")
    return {"id": user.id, **output.to_jsonable(user.profile), **data}


def find(room: "Mailroom", email: str) -> User:
    user = room.users.find_user(SYSTEM, email)
    if user is None:
        raise UserNotFound(email)
    return user


def new_password(ctx: typer.Context, password_env: str | None, password_stdin: bool, email: str) -> str:
    password = read_password(ctx, password_env, password_stdin)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise UsageProblem("no terminal to ask for the password on: give --password-env VAR or --password-stdin")
    answer: str = typer.prompt(f"Password for {email}", hide_input=True, confirmation_prompt=True)
    return answer


@users_app.command("create-admin")
def create_admin(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--email", help="The administrator's e-mail address (the login).")],
    password_env: PasswordEnv = None,
    password_stdin: PasswordStdin = False,
    first_name: Annotated[str, typer.Option("--first-name")] = "",
    last_name: Annotated[str, typer.Option("--last-name")] = "",
    language: Annotated[str, typer.Option("--language", help="Preferred language, e.g. en or de.")] = "en",
) -> None:
    """Create a verified user with the admin role (asks for the password unless told where it is)."""
    room = mailroom(ctx)
    user = room.users.create_admin(email, new_password(ctx, password_env, password_stdin, email),
                                   first_name=first_name, last_name=last_name, preferred_language=language)
    typer.echo(f"created administrator {user.email} (id {user.id})")


@users_app.command("add")
def add(
    ctx: typer.Context,
    email: Annotated[str, typer.Option("--email", help="The user's e-mail address (the login).")],
    role: Annotated[list[str] | None, typer.Option("--role", help="A role to grant; repeatable.")] = None,
    first_name: Annotated[str, typer.Option("--first-name")] = "",
    last_name: Annotated[str, typer.Option("--last-name")] = "",
    language: Annotated[str, typer.Option("--language", help="Preferred language, e.g. en or de.")] = "en",
    notify: Annotated[bool, typer.Option("--notify/--no-notify", help="Mail the user a verification link.")] = True,
    verified: Annotated[bool, typer.Option("--verified", help="The address is known to be right: mark it "
                                           "verified, without a verification mail.")] = False,
) -> None:
    """Create a user without a password: they verify their address and set one through "forgot password"."""
    room = mailroom(ctx)
    user = room.users.create_user(SYSTEM, Profile(email=email, first_name=first_name, last_name=last_name,
                                                  preferred_language=language),
                                  roles=role or [], notify_user=notify and not verified, verified=verified)
    if user.verified:
        typer.echo(f"created user {user.email} (id {user.id}), address marked verified")
    elif notify:
        typer.echo(f"created user {user.email} (id {user.id}), verification mail queued")
    else:
        typer.echo(f"created user {user.email} (id {user.id}); no verification mail was sent, so the address "
                   f"stays unverified until `mailroom user verify {user.email}` or `mailroom user "
                   f"resend-verification {user.email}`")


@users_app.command("list")
def list_users(ctx: typer.Context, as_json: Json = False) -> None:
    """List users with their roles and status."""
    found = mailroom(ctx).users.list_users(SYSTEM)
    if as_json:
        output.print_json([user_json(u) for u in found])
        return
    from rich.table import Table  # here: only the listing commands print tables

    table = Table("e-mail", "name", "roles", "verified", "enabled", "created", box=None)
    for u in found:
        name = " ".join(part for part in (u.profile.first_name, u.profile.last_name) if part)
        table.add_row(output.text(u.email), output.text(name), ", ".join(u.roles), output.mark(u.verified),
                      output.mark(u.enabled), output.when(u.created_at, short=True))
    output.console().print(table)


@users_app.command("roles")
def roles(ctx: typer.Context, email: EmailArgument,
          role: Annotated[list[str] | None, typer.Argument(help="The roles the user has from now on.")] = None,
          ) -> None:
    """Set a user's roles (none given: show the available roles)."""
    room = mailroom(ctx)
    user = find(room, email)
    if role is None:
        for r in room.users.roles(SYSTEM):
            granted = "every permission" if r.all_permissions else ", ".join(sorted(r.permissions))
            typer.echo(f"{'*' if r.id in user.roles else ' '} {r.id}: {granted}")
        return
    updated = room.users.set_roles(SYSTEM, user.id, role)
    typer.echo(f"{updated.email} now has: {', '.join(updated.roles) or 'no roles'}")


@users_app.command("disable")
def disable(ctx: typer.Context, email: EmailArgument) -> None:
    """Stop a user from logging in (their sessions end at the next request)."""
    room = mailroom(ctx)
    room.users.set_enabled(SYSTEM, find(room, email).id, False)
    typer.echo(f"disabled {email}")


@users_app.command("enable")
def enable(ctx: typer.Context, email: EmailArgument) -> None:
    room = mailroom(ctx)
    room.users.set_enabled(SYSTEM, find(room, email).id, True)
    typer.echo(f"enabled {email}")


@users_app.command("resend-verification")
def resend_verification(ctx: typer.Context, email: EmailArgument) -> None:
    """Queue a new verification mail; earlier links stop working."""
    room = mailroom(ctx)
    mail_id = room.users.resend_verification(SYSTEM, find(room, email).id)
    typer.echo(mail_id)


@users_app.command("verify")
def verify(ctx: typer.Context, email: EmailArgument) -> None:
    """Mark the user's address verified without a confirmation mail (earlier links stop working)."""
    room = mailroom(ctx)
    user = room.users.mark_verified(SYSTEM, find(room, email).id)
    typer.echo(f"marked {user.email} verified: the user can log in")


@users_app.command("reset-password")
def reset_password(ctx: typer.Context, email: EmailArgument) -> None:
    """Queue a password-reset mail for the user (what "forgot password" does)."""
    room = mailroom(ctx)
    user = find(room, email)
    room.users.request_password_reset(user.email)
    typer.echo(f"reset mail queued for {user.email}")


tokens_app = command_group("API tokens: per-user keys for the JSON API, shown once, revocable.")
users_app.add_typer(tokens_app, name="token")


@tokens_app.command("create")
def create_token(ctx: typer.Context, email: EmailArgument,
                 name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. shop backend.")],
                 expires_days: Annotated[int | None, typer.Option(
                     "--expires-days", min=1, max=3650,
                     help="The token stops working after this many days (default: until revoked).")] = None,
                 ) -> None:
    """Create a token for the user and print its secret (the only time it is shown)."""
    room = mailroom(ctx)
    _token, secret = room.api_tokens.create(SYSTEM, find(room, email).id, name, expires_days=expires_days)
    typer.echo(secret)


@tokens_app.command("list")
def list_tokens(ctx: typer.Context, email: EmailArgument, as_json: Json = False) -> None:
    room = mailroom(ctx)
    found = room.api_tokens.list(SYSTEM, find(room, email).id)
    if as_json:
        output.print_json(found)
        return
    from rich.table import Table  # here: only the listing commands print tables

    table = Table("id", "name", "starts with", "created", "last used", "expires", "revoked", box=None)
    for t in found:
        table.add_row(t.id, output.text(t.name), t.hint, output.when(t.created_at, short=True),
                      output.when(t.last_used_at, short=True), output.when(t.expires_at, short=True),
                      output.when(t.revoked_at, short=True))
    output.console().print(table)


@tokens_app.command("revoke")
def revoke_token(ctx: typer.Context, email: EmailArgument,
                 token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID")]) -> None:
    room = mailroom(ctx)
    room.api_tokens.revoke(SYSTEM, find(room, email).id, token_id)
    typer.echo(f"revoked token {token_id}")
