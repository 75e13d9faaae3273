"""``mailroom secrets``: re-encrypt stored secrets under the first key, and check that every one opens.

Neither command prints a secret: only where it is (the server's name, the mail's id and subject).
"""

from typing import Annotated

import typer

from mailroom.cli import output
from mailroom.cli.context import command_group, mailroom
from mailroom.cli.errors import INVALID
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.stored_secrets import SecretKind, StoredSecret

secrets_app = command_group("Rotate the secret key of stored SMTP passwords and confidential mail contents.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _where(secret: StoredSecret) -> str:
    if secret.kind is SecretKind.SMTP_PASSWORD:
        return f"SMTP password of server {secret.owner!r} (id {secret.id})"
    return f"content of confidential mail {secret.id} ({secret.owner!r})"


def _report_unopened(unopened: list[StoredSecret]) -> None:
    for secret in unopened:
        typer.echo(output.printable(f"cannot open: {_where(secret)}"), err=True)
    typer.echo(f"{len(unopened)} stored secret(s) open with none of the configured keys: add the key they were "
               "sealed with to MAILROOM_SECRET_KEY (after the first), or enter each password again with "
               "`mailroom smtp update NAME`", err=True)


def _as_json(secrets: list[StoredSecret]) -> list[dict[str, str]]:
    return [{"kind": s.kind.value, "id": s.id, "owner": s.owner} for s in secrets]


@secrets_app.command("rotate-key")
def rotate_key(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Re-encrypt every stored secret under the first key of MAILROOM_SECRET_KEY, in small batches, while
    workers keep running (configure them with the new key first and the old one after it). Exits 2 when
    some secret opens with no configured key; everything else is rotated all the same."""
    report = mailroom(ctx).secret_keys.rotate(SYSTEM)
    if as_json:
        output.print_json({"rotated": {k.value: n for k, n in report.rotated.items()},
                           "current": {k.value: n for k, n in report.current.items()},
                           "unopened": _as_json(report.unopened)})
    else:
        for kind in SecretKind:
            typer.echo(f"{kind.label}s: {report.rotated[kind]} re-encrypted, {report.current[kind]} already "
                       "under the first key")
    if report.unopened:
        if not as_json:
            _report_unopened(report.unopened)
        raise typer.Exit(INVALID)


@secrets_app.command("check")
def check(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Report the stored secrets that no configured key can open; exits 2 when there are any."""
    unopened = mailroom(ctx).secret_keys.check(SYSTEM)
    if as_json:
        output.print_json(_as_json(unopened))
    elif not unopened:
        typer.echo("every stored secret opens with the configured keys")
    else:
        _report_unopened(unopened)
    if unopened:
        raise typer.Exit(INVALID)
