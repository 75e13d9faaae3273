"""Printing: JSON for scripts (plain text, never wrapped) and Rich tables for people."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import typer

from mailroom import errors
from mailroom.domain.outbox import MailStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from mailroom.domain.log import LogPage
    from mailroom.domain.outbox import OutgoingMail
    from mailroom.domain.servers import SmtpServer
    from mailroom.ports import ProbeStep

STATUS_STYLES = {
    MailStatus.QUEUED: "cyan", MailStatus.SENDING: "blue", MailStatus.DEFERRED: "yellow",
    MailStatus.SENT: "green", MailStatus.FAILED: "bold red", MailStatus.CANCELLED: "dim",
    MailStatus.PARTIALLY_FAILED: "red",
}


def console(width: int | None = None) -> Console:
    # Built per call so the current sys.stdout is used (tests swap it); highlighting off because
    # Rich would colour numbers and addresses in user data at random. Rich is imported here, not with
    # the module: commands that print no table (and every --help) do not pay for it.
    from rich.console import Console

    return Console(highlight=False, width=width)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table printed one line per row (the log, servers, templates).

    ``rank`` 0 is always shown; columns ranked 1, 2, ... follow while they fit the terminal, in that order.
    ``share`` 0 makes the column as wide as its widest cell, never cut (ids, names a user types, times);
    a share > 0 takes part of the spare width, down to ``min_width``, and long cells end in "…".
    """

    header: str
    rank: int = 0
    share: int = 0
    min_width: int = 10
    justify: Literal["left", "right"] = "left"


# box=None with one space of padding each side: two spaces between columns, none at the edges.
_GAP = 2
# The width a shared column of rank 0 (the log's recipients, a server's address) gets before columns of a
# lower rank are let in.
_ROOMY = 30


def print_rows(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Text]], caption: str = "") -> None:
    """Print ``rows`` as a table of one line each, fitted to the terminal (80 columns in a pipe).

    Rich on its own shrinks every column when a row is too long, down to nothing for short ones: at 80
    columns a long subject left only the id and the subject of the log. Here the widths are decided first:
    columns of rank 0 always, further ones while they fit, and only shared columns are cut.
    """
    from rich.cells import cell_len
    from rich.table import Table
    out = console()
    natural = [max([cell_len(column.header), *(row[i].cell_len for row in rows)]) for i, column in enumerate(columns)]
    least = [min(natural[i], column.min_width) if column.share else natural[i] for i, column in enumerate(columns)]
    # A shared column that is always shown keeps a readable width before further columns are let in.
    roomy = [min(natural[i], max(_ROOMY, column.min_width)) if column.share and column.rank == 0 else least[i]
             for i, column in enumerate(columns)]

    def needed(widths: Sequence[int], shown: list[int]) -> int:
        return sum(widths[i] for i in shown) + _GAP * (len(shown) - 1)

    shown = [i for i, column in enumerate(columns) if column.rank == 0]
    left_out: list[str] = []
    for i in sorted((i for i, c in enumerate(columns) if c.rank > 0), key=lambda i: columns[i].rank):
        if not left_out and needed(roomy, [*shown, i]) <= out.width:
            shown.append(i)
        else:
            left_out.append(columns[i].header)  # lower ranks stay out too: the order is the promise
    shown.sort()
    start = roomy if needed(roomy, shown) <= out.width else least
    if needed(start, shown) > out.width:
        out = console(needed(start, shown))  # too narrow for what must be shown: the terminal wraps, none is cut
    widths = {i: start[i] for i in shown}
    spare = out.width - needed(start, shown)
    while spare > 0:
        growing = [i for i in shown if columns[i].share and widths[i] < natural[i]]
        if not growing:
            break
        total_share = sum(columns[i].share for i in growing)
        given = 0
        for i in growing:
            extra = min(natural[i] - widths[i], max(1, spare * columns[i].share // total_share), spare - given)
            widths[i] += extra
            given += extra
        spare -= given
    table = Table(title=title, title_justify="left", caption_justify="left", box=None, padding=(0, 1),
                  pad_edge=False, show_edge=False)
    for i in shown:
        table.add_column(columns[i].header, width=widths[i], no_wrap=True, overflow="ellipsis",
                         justify=columns[i].justify)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    if left_out:
        caption += f"{'; ' if caption else ''}left out at this width: {', '.join(left_out)}"
    table.caption = caption or None
    out.print(table)


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
    if isinstance(value, errors.Text):  # a message as template and values, for a script that translates it
        return value.to_json()
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
    from rich.text import Text
    # Text, not str: Rich would read "[...]" in a subject or SMTP reply as markup. Rich itself drops some
    # control codes silently and passes others (C1, bidi); escaping them shows what is really stored.
    return Text("-" if value is None or value == "" else printable(str(value)))


def status_text(status: MailStatus | str) -> Text:
    from rich.text import Text
    return Text(str(status), style=STATUS_STYLES.get(MailStatus(status), ""))


def mark(ok: bool) -> str:
    """✓/✗, or OK/FAIL when stdout cannot encode them (a C locale without UTF-8)."""
    glyphs = ("✓", "✗")
    try:
        "".join(glyphs).encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        glyphs = ("OK", "FAIL")
    return glyphs[0] if ok else glyphs[1]


LOG_COLUMNS = (
    Column("id"), Column("status"), Column("subject", rank=1, share=3, min_width=12),
    Column("recipients", share=2, min_width=12), Column("server", rank=4, share=1, min_width=8),
    Column("queued at"), Column("tries", rank=3, justify="right"),
    Column("last error", rank=2, share=3, min_width=12),
)


def print_log_page(page: LogPage) -> None:
    # One line per mail; id, status, recipients and queued-at always, the rest as the width allows. `show ID`
    # and `--json` give every detail.
    rows = [(text(mail.id), status_text(mail.status), text(mail.subject), text(mail.receiver_summary),
             text(mail.server_name), text(when(mail.queued_at, short=True)), text(mail.attempts),
             text(mail.last_error)) for mail in page.items]
    total = "?" if page.total is None else str(page.total) if page.total_exact else f"more than {page.total}"
    first = page.offset + 1 if page.items else page.offset
    span = f"{len(page.items)} of {total}"
    if page.offset:
        span += f" (from {first})"
    if page.next_after:
        span += f"; next page: --after {page.next_after}"
    print_rows("Mail log", LOG_COLUMNS, rows, span)


def print_mail(mail: OutgoingMail) -> None:
    from rich.table import Table
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


SERVER_COLUMNS = (
    Column("name"), Column("address", share=2, min_width=12), Column("security"), Column("enabled"),
    Column("priority", rank=1, justify="right"), Column("sender", rank=2, share=1),
    Column("username", rank=3, share=1, min_width=8), Column("password", rank=4),
    Column("timeout", rank=5, justify="right"),
    Column("limits", rank=6, share=1, min_width=12), Column("id", rank=7),
)


def print_servers(servers: list[SmtpServer], limits: dict[str, str] | None = None) -> None:
    """``limits``: per server id, its rate limits and their use as one short text."""
    limits = limits or {}
    rows = [(text(s.name), text(f"{s.host}:{s.port}"), text(s.security), text("yes" if s.enabled else "no"),
             text(s.priority), text(s.sender), text(s.username), text("yes" if s.has_password else "no"),
             text(f"{s.timeout_seconds:g} s"), text(limits.get(s.id, "-")), text(s.id)) for s in servers]
    print_rows("SMTP servers", SERVER_COLUMNS, rows,
               "" if servers else "none yet: add one with `mailroom smtp add NAME --host HOST`")


def print_probe(server: str, steps: list[ProbeStep]) -> None:
    from rich.text import Text
    out = console()
    out.print(Text(f"Testing SMTP server {printable(repr(server))}:"))
    width = max((len(step.name) for step in steps), default=0)
    for step in steps:
        line = Text(f"  {mark(step.ok)} ", style="green" if step.ok else "bold red")
        line.append(f"{step.name.ljust(width)}  ")
        line.append(printable(step.detail))
        out.print(line)
