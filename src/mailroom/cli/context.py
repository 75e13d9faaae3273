"""What the root options give every command: one lazily built ``Mailroom``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from mailroom.errors import ConfigurationError

if TYPE_CHECKING:
    # Imported where used: the facade pulls in the database layer, SMTP and pydantic settings, which
    # `--version`, `--help` and usage errors must not wait for.
    from mailroom.app import Mailroom
    from mailroom.settings import Settings


@dataclass
class CliState:
    """The root options; commands ask it for the facade so ``keygen`` never touches a database."""

    config: str | None = None
    database_url: str | None = None
    _mailroom: Mailroom | None = field(default=None, repr=False)

    def overrides(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.config:
            values["config"] = self.config
        if self.database_url:
            values["database_url"] = self.database_url
        return values

    def settings(self) -> Settings:
        from mailroom.settings import Settings

        return Settings.load(**self.overrides())

    def mailroom(self, ctx: typer.Context) -> Mailroom:
        """The facade, built (and the schema migrated) on first use, closed when the command ends."""
        if self._mailroom is None:
            from mailroom.app import Mailroom

            self._mailroom = Mailroom(**self.overrides())
            ctx.find_root().call_on_close(self._mailroom.close)
        return self._mailroom


# Help in Click's plain layout, not Typer's Rich panels: those print "<bool>" after every flag as if it took a
# value, fold option types mid-word at 80 columns, and load Rich's Markdown renderer on every --help.
HELP_LAYOUT: dict[str, Any] = {"rich_markup_mode": None}


def command_group(help_text: str) -> typer.Typer:
    """A group of subcommands (``mailroom smtp ...``) laid out like the root command."""
    return typer.Typer(help=help_text, no_args_is_help=True, **HELP_LAYOUT)


def state(ctx: typer.Context) -> CliState:
    """The root state; present even when a command is invoked without the root callback (tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def mailroom(ctx: typer.Context) -> Mailroom:
    return state(ctx).mailroom(ctx)


def setup_logging(level: str) -> None:
    """Log lines to stderr, so stdout stays for what commands print."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(f"MAILROOM_LOG_LEVEL={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)",
                                 field="log_level")
    logging.basicConfig(level=numeric, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # aiosmtpd (the dev sink) logs every connection at INFO: noise next to mailroom's own lines.
    logging.getLogger("mail.log").setLevel(max(numeric, logging.WARNING))
