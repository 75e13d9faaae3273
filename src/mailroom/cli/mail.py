"""Mail commands: send, log, show, retry, cancel, delete."""

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailroom.cli import output
from mailroom.cli.context import mailroom
from mailroom.cli.errors import UsageProblem
from mailroom.domain.log import LogQuery, SortKey
from mailroom.domain.log_search import parse_search
from mailroom.domain.mail import Attachment, Mail, Priority
from mailroom.domain.outbox import MailStatus
from mailroom.domain.permissions import SYSTEM
from mailroom.errors import InvalidInput, MailNotFound, NotFound

if TYPE_CHECKING:
    from mailroom.app import Mailroom

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def parse_moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date-time; one without an offset is taken in the local time zone."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{option} {value!r} is not an ISO 8601 date-time "
                           "(e.g. 2025-01-31, 2025-01-31T09:00 or 2025-01-31T09:00+01:00)", field=option) from exc
    # A person typing 09:00 means their own 09:00, not UTC.
    return moment if moment.tzinfo else moment.astimezone()


def read_text(path: Path, option: str) -> str:
    """A UTF-8 file, or stdin for ``-``."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{option} {path} is not UTF-8 text", field=option) from exc
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_attachment(path: Path) -> Attachment:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    return Attachment(filename=path.name, content=content)


def check_smtp_hint(room: "Mailroom", hint: str | None) -> None:
    """Refuse a hint that names no SMTP server: the worker would ignore it silently (by design, so a renamed
    server never stalls mail), but here a person typed it and wants to know it was a typo."""
    if not hint:
        return
    servers = room.servers.list(SYSTEM)
    if any(hint in (server.name, server.id) for server in servers):
        return
    if not servers:
        raise InvalidInput(f"--smtp-hint {hint!r}: there is no SMTP server yet; add one with `mailroom smtp add "
                           "NAME --host HOST`", field="smtp_hint")
    names = ", ".join(sorted(server.name for server in servers))
    raise InvalidInput(f"--smtp-hint {hint!r} names no SMTP server; give one of: {names}", field="smtp_hint")


def send(
    ctx: typer.Context,
    to: Annotated[list[str] | None, typer.Option("--to", help="Recipient; repeat for more.")] = None,
    subject: Annotated[str, typer.Option("--subject", "-s", help="The subject line.")] = "",
    text: Annotated[str | None, typer.Option("--text", help="The plain-text body.")] = None,
    text_file: Annotated[Path | None, typer.Option("--text-file", help="Read the plain-text body from a UTF-8 "
                                                    "file ('-' for stdin).", dir_okay=False)] = None,
    html_file: Annotated[Path | None, typer.Option("--html-file", help="Read an HTML body from a UTF-8 file.",
                                                    dir_okay=False)] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc recipient; repeat for more.")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc", help="Bcc recipient; repeat for more.")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="From address; the server's sender when "
                                                "missing.")] = None,
    reply_to: Annotated[list[str] | None, typer.Option("--reply-to", help="Reply-To address.")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="Attach a file; repeat for more.",
                                                      exists=True, dir_okay=False, readable=True)] = None,
    smtp_hint: Annotated[str | None, typer.Option("--smtp-hint", help="Name or id of the SMTP server to "
                                                  "try first.")] = None,
    priority: Annotated[Priority, typer.Option("--priority", help="Delivery priority.")] = Priority.NORMAL,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag for searching the log; repeat for "
                                                  "more.")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="Your own id for this "
                                                       "mail.")] = None,
    send_at: Annotated[str | None, typer.Option("--send-at", help="Deliver no earlier than this ISO 8601 "
                                                "time (local time without an offset).")] = None,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="Give up delivering after this ISO "
                                                   "8601 time.")] = None,
    confidential: Annotated[bool, typer.Option("--confidential", help="The body holds a secret for the "
                                               "recipients only: stored encrypted, never shown or searched, "
                                               "dropped once the mail ends.")] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Your key for this mail: "
                                                        "sending again with it within the idempotency window "
                                                        "prints the first mail's id and queues nothing.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a mail for delivery and print its id."""
    if text is not None and text_file is not None:
        raise UsageProblem("give the body with --text or --text-file, not both")
    body = read_text(text_file, "--text-file") if text_file is not None else text
    html = read_text(html_file, "--html-file") if html_file is not None else None
    # Build the Mail before opening the database: invalid input must not even create a database file.
    mail = Mail(
        to=to or [], cc=cc or [], bcc=bcc or [], sender=sender, reply_to=reply_to or [], subject=subject,
        text=body, html=html, attachments=[read_attachment(p) for p in attach or []], smtp_hint=smtp_hint,
        priority=priority, tags=tag or [], correlation_id=correlation_id,
        send_at=parse_moment(send_at, "--send-at"), expires_at=parse_moment(expires_at, "--expires-at"),
        confidential=confidential,
    )
    room = mailroom(ctx)
    check_smtp_hint(room, smtp_hint)
    mail_id = room.send_mail(SYSTEM, mail, idempotency_key=idempotency_key)
    waiting = room.get_mail(SYSTEM, mail_id).last_error
    if waiting:  # queued, but it cannot go out yet: say so on stderr, scripts still get the id on stdout
        typer.echo(f"warning: {output.printable(waiting)}", err=True)
    if as_json:
        output.print_json({"id": mail_id})
    else:
        typer.echo(mail_id)


def log(
    ctx: typer.Context,
    status: Annotated[list[MailStatus] | None, typer.Option(
        "--status", metavar="STATUS", help=f"Only mails in this status ({', '.join(MailStatus)}); repeat for more."
    )] = None,
    to: Annotated[str | None, typer.Option("--to", help="Only mails to this recipient.")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Only subjects containing this.")] = None,
    search: Annotated[str | None, typer.Option("--search", help="Text in the subject or any "
                                               "recipient.")] = None,
    server: Annotated[str | None, typer.Option("--server", help="Only mails sent through this "
                                               "server.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only mails with this tag.")] = None,
    correlation_id: Annotated[str | None, typer.Option("--correlation-id", help="Only mails with this "
                                                       "correlation id.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Queued at or after this ISO 8601 "
                                              "time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Queued before this ISO 8601 time.")] = None,
    sort: Annotated[SortKey, typer.Option("--sort", metavar="FIELD",
                                          help=f"Sort by {', '.join(SortKey)}.")] = SortKey.QUEUED_AT,
    asc: Annotated[bool, typer.Option("--asc", help="Oldest/smallest first (default: newest first).")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many mails.")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many mails.")] = 0,
    after: Annotated[str | None, typer.Option("--after", metavar="CURSOR", help="The page after the one that "
                                              "printed this cursor (same order; --json prints next_after).")] = None,
    query_text: Annotated[str | None, typer.Option("--query", "-q", help="The web log's search syntax, e.g. "
                                                   "'invoice to:ann@ -status:sent after:2026-01-01'.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the mail log, newest first."""
    query = LogQuery(
        statuses=frozenset(status or ()), recipient=to, subject=subject, text=search, server=server, tag=tag,
        correlation_id=correlation_id, queued_after=parse_moment(since, "--since"),
        queued_before=parse_moment(until, "--until"), sort=sort, descending=not asc, limit=limit,
        offset=offset, after=after,
    )
    if query_text:
        query = parse_search(query_text, query)
    page = mailroom(ctx).search_mail_log(SYSTEM, query)
    if as_json:
        output.print_json({"total": page.total, "total_exact": page.total_exact, "offset": page.offset,
                           "limit": page.limit, "next_after": page.next_after, "items": page.items})
    else:
        output.print_log_page(page)


def show(
    ctx: typer.Context,
    mail_id: Annotated[str, typer.Argument(metavar="ID", help="The mail's id.")],
    as_json: JsonOption = False,
    raw: Annotated[bool, typer.Option("--raw", help="Write the stored message (.eml) to stdout.")] = False,
) -> None:
    """Show one mail: fields, recipients with the server's answers, and every delivery attempt."""
    if raw and as_json:
        raise UsageProblem("--raw and --json exclude each other")
    room = mailroom(ctx)
    if raw:
        message = room.log.raw_message(SYSTEM, mail_id)
        if message is None:
            room.get_mail(SYSTEM, mail_id)  # raises MailNotFound for an unknown id
            raise MailNotFound(mail_id)
        sys.stdout.flush()
        sys.stdout.buffer.write(message)
        sys.stdout.buffer.flush()
        return
    mail = room.get_mail(SYSTEM, mail_id)
    if as_json:
        output.print_json(mail)
    else:
        output.print_mail(mail)


def retry(ctx: typer.Context,
          mail_id: Annotated[str, typer.Argument(metavar="ID", help="A failed, cancelled or deferred "
                                                 "mail.")]) -> None:
    """Queue a failed or cancelled mail again; try a deferred one now instead of at its next attempt."""
    mail = mailroom(ctx).retry_mail(SYSTEM, mail_id)
    if mail.status is MailStatus.DEFERRED:
        typer.echo(f"mail {mail.id} is due now (deferred after {mail.attempts} attempt(s)); a running worker "
                   "tries it at once")
    else:
        typer.echo(f"mail {mail.id} is {mail.status} again")


def cancel(ctx: typer.Context,
           mail_id: Annotated[str, typer.Argument(metavar="ID", help="A queued or deferred mail.")]) -> None:
    """Stop a queued or deferred mail from going out."""
    mail = mailroom(ctx).cancel_mail(SYSTEM, mail_id)
    typer.echo(f"mail {mail.id} is {mail.status}")


def delete(ctx: typer.Context,
           mail_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Mails to delete.")]) -> None:
    """Delete mails from the log with their recipients, attempts and content."""
    wanted = list(dict.fromkeys(mail_ids))
    deleted = mailroom(ctx).delete_mails(SYSTEM, wanted)
    typer.echo(f"deleted {deleted} mail(s)")
    if deleted < len(wanted):
        missing = len(wanted) - deleted
        raise NotFound(f"{missing} of the {len(wanted)} given id(s) matched no mail")
