"""Printing: JSON for scripts (plain text, never wrapped) and Rich tables for people."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mailroom.domain.outbox import MailStatus

if TYPE_CHECKING:
    from mailroom.domain.log import LogPage
    from mailroom.domain.outbox import OutgoingMail
    from mailroom.domain.servers import SmtpServer
    from mailroom.ports import ProbeStep

STATUS_STYLES = {
    MailStatus.QUEUED: "cyan", MailStatus.SENDING: "blue", MailStatus.DEFERRED: "yellow",
    MailStatus.SENT: "green", MailStatus.FAILED: "bold red", MailStatus.CANCELLED: "dim",
    MailStatus.PARTIALLY_FAILED: "red",
}


def console() -> Console:
    # Built per call so the current sys.stdout is used (tests swap it); highlighting off because
    # Rich would colour numbers and addresses in user data at random.
    return Console(highlight=False)


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout: dataclasses as objects, datetimes in ISO 8601."""
    # json escapes C0 itself; DEL, C1 and the separators it leaves raw, so they are escaped here (\\uXXXX is
    # valid JSON: a script reads the same string).
    encoded = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)
    typer.echo(_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded))


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def when(moment: datetime | None, *, short: bool = False) -> str:
    """A moment in the local time zone, to the second; ``-`` when missing."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")


# Control characters (C0 but LF, DEL, C1), the line/paragraph separators and the bidi overrides and
# isolates: stored text (a subject, a name, a tag, an SMTP reply) may hold them, and printed raw they drive
# the terminal (ESC ] retitles it, ESC [2J clears it, CSI as one C1 byte) or reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: str) -> str:
    """``value`` with every character that could act on a terminal shown as an escape: ESC as ``\\x1b``."""
    return _UNPRINTABLE.sub(_escape, value)


def text(value: object) -> Text:
    # Text, not str: Rich would read "[...]" in a subject or SMTP reply as markup. Rich itself drops some
    # control codes silently and passes others (C1, bidi); escaping them shows what is really stored.
    return Text("-" if value is None or value == "" else printable(str(value)))


def status_text(status: MailStatus | str) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(MailStatus(status), ""))


def mark(ok: bool) -> str:
    """✓/✗, or OK/FAIL when stdout cannot encode them (a C locale without UTF-8)."""
    glyphs = ("✓", "✗")
    try:
        "".join(glyphs).encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        glyphs = ("OK", "FAIL")
    return glyphs[0] if ok else glyphs[1]


def print_log_page(page: LogPage) -> None:
    # One line per mail: long cells end in "…" rather than wrapping into unreadable towers; `show ID`
    # and `--json` give every detail.
    table = Table(title="Mail log", title_justify="left", caption_justify="left")
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("subject", no_wrap=True, overflow="ellipsis", ratio=2, min_width=8)
    table.add_column("recipients", no_wrap=True, overflow="ellipsis", ratio=2, min_width=8)
    table.add_column("server", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("queued at", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("last error", no_wrap=True, overflow="ellipsis", ratio=3)
    for mail in page.items:
        table.add_row(text(mail.id), status_text(mail.status), text(mail.subject), text(mail.receiver_summary),
                      text(mail.server_name), text(when(mail.queued_at, short=True)),
                      text(mail.attempts), text(mail.last_error))
    total = "?" if page.total is None else str(page.total)
    first = page.offset + 1 if page.items else page.offset
    span = f"{len(page.items)} of {total}"
    if page.offset:
        span += f" (from {first})"
    table.caption = span
    console().print(table)


def print_mail(mail: OutgoingMail) -> None:
    out = console()
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    rows: Iterable[tuple[str, Text]] = (
        ("id", text(mail.id)),
        ("status", status_text(mail.status)),
        ("subject", text(mail.subject)),
        ("from", text(mail.sender)),
        ("message id", text(mail.message_id)),
        ("priority", text(mail.priority)),
        ("queued at", text(when(mail.queued_at))),
        ("send at", text(when(mail.send_at))),
        ("expires at", text(when(mail.expires_at))),
        ("next attempt", text(when(mail.next_attempt_at))),
        ("sent at", text(when(mail.sent_at))),
        ("finished at", text(when(mail.finished_at))),
        ("attempts", text(mail.attempts)),
        ("server", text(mail.server_name)),
        ("smtp hint", text(mail.smtp_hint)),
        ("last error", text(mail.last_error)),
        ("tags", text(", ".join(mail.tags))),
        ("correlation id", text(mail.correlation_id)),
        ("original recipients", text(", ".join(mail.original_recipients))),
        ("size", text(f"{mail.size_bytes} bytes")),
        ("content kept", text(_content_kept(mail))),
    )
    for label, value in rows:
        fields.add_row(label, value)
    out.print(fields)

    recipients = Table(title="Recipients", title_justify="left")
    for column in ("address", "kind", "status", "code", "reply"):
        recipients.add_column(column, overflow="fold")
    for r in mail.recipients:
        address = f"{r.name} <{r.email}>" if r.name else r.email
        recipients.add_row(text(address), text(r.kind), text(r.status), text(r.code), text(r.reply))
    out.print(recipients)

    attempts = Table(title="Attempts", title_justify="left")
    for column in ("#", "time", "server", "outcome", "code", "reply", "duration"):
        attempts.add_column(column, overflow="fold")
    for a in mail.attempt_log:
        attempts.add_row(text(a.number), text(when(a.started_at)), text(a.server_name), status_text(a.outcome),
                         text(a.code), text(a.reply), text(f"{a.duration_ms} ms"))
    if not mail.attempt_log:
        attempts.caption = "no attempt yet"
    out.print(attempts)


def _content_kept(mail: OutgoingMail) -> str:
    if mail.confidential:
        return ("content hidden (confidential; dropped once the mail ends)" if mail.has_content
                else "no: content hidden (confidential), dropped when the mail ended")
    return "yes" if mail.has_content else "no (dropped by retention)"


def server_json(server: SmtpServer) -> dict[str, Any]:
    """A server for scripts; built from SmtpServer, which has no password field to leak."""
    data: dict[str, Any] = to_jsonable(server)
    return data


def print_servers(servers: list[SmtpServer]) -> None:
    table = Table(title="SMTP servers", title_justify="left")
    for column in ("name", "host", "port", "security", "username", "password", "sender", "priority",
                   "enabled", "timeout", "id"):
        table.add_column(column, overflow="fold")
    for s in servers:
        table.add_row(text(s.name), text(s.host), text(s.port), text(s.security), text(s.username),
                      text("yes" if s.has_password else "no"), text(s.sender), text(s.priority),
                      text("yes" if s.enabled else "no"), text(f"{s.timeout_seconds:g} s"), text(s.id))
    if not servers:
        table.caption = "none yet: add one with `mailroom smtp add NAME --host HOST`"
    console().print(table)


def print_probe(server: str, steps: list[ProbeStep]) -> None:
    out = console()
    out.print(Text(f"Testing SMTP server {printable(repr(server))}:"))
    width = max((len(step.name) for step in steps), default=0)
    for step in steps:
        line = Text(f"  {mark(step.ok)} ", style="green" if step.ok else "bold red")
        line.append(f"{step.name.ljust(width)}  ")
        line.append(printable(step.detail))
        out.print(line)
