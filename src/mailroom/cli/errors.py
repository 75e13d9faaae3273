"""How the CLI ends: the one table from exceptions to exit codes, and the one-line error report.

Exit codes::

    0  success
    1  usage: a wrong option, a missing argument, a file that cannot be read
    2  not found or invalid input: nothing was changed
    3  delivery or connection failure: the database, an SMTP server, a failed ``smtp test``

Scripts rely on these codes, so they live here and nowhere else.
"""

from __future__ import annotations

import typer

from mailroom.cli.output import printable
from mailroom.errors import (
    AuthenticationFailed,
    ConfidentialContent,
    DeliveryError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    SecretError,
    StorageError,
)

OK = 0
USAGE = 1
INVALID = 2
FAILURE = 3


class UsageProblem(Exception):
    """Options that do not fit together, or a file that cannot be read: the caller must change the call."""


class WorkerNotAlive(Exception):
    """``worker --check-alive``: the liveness file is missing or too old."""


class ProbeFailed(Exception):
    """An ``smtp test`` step failed; the steps were already printed."""


# Order matters: the first matching class wins, so subclasses come before their bases.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    # Typer's (vendored Click) usage errors, which Click would end with 2; TyperException is their public base.
    (typer.TyperException, USAGE),
    (typer.Abort, USAGE),
    (UsageProblem, USAGE),
    (NotFound, INVALID),
    (InvalidInput, INVALID),  # includes ConfigurationError, InvalidAddress, NoRecipients, ...
    (InvalidTransition, INVALID),
    # Not even SYSTEM reads a confidential mail's content (show --raw): the mail is refused, like bad input.
    (ConfidentialContent, INVALID),
    # A CLI always runs as SYSTEM, so PermissionDenied is unexpected; it still means "refused input".
    (PermissionDenied, INVALID),
    # Stored passwords that no configured key opens: a configuration problem the operator fixes.
    (SecretError, INVALID),
    (AuthenticationFailed, INVALID),
    (DeliveryError, FAILURE),
    (StorageError, FAILURE),
    (ProbeFailed, FAILURE),
    (WorkerNotAlive, FAILURE),
)


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code for an error the CLI reports itself, or None for an unexpected one (a bug)."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return None


def one_line(exc: BaseException) -> str:
    """The error as one readable line for stderr, with a hint where one helps."""
    if isinstance(exc, typer.TyperException):
        # Typer converts values with pydantic, whose wording leaks in: "Invalid value for '--security': Value
        # error, 'bogus' is not one of ...". The choice list is what the user needs; the prefix is noise.
        message = exc.format_message().replace(": Value error, ", ": ")
        # Set on usage errors; Click's own Context class, of which typer.Context is only a subclass.
        command_path = getattr(getattr(exc, "ctx", None), "command_path", None)
        if isinstance(command_path, str) and command_path:
            message += f" (see '{command_path} --help')"
    elif isinstance(exc, typer.Abort):
        message = "aborted"
    else:
        message = str(exc) or type(exc).__name__
    # Messages quote the input they refuse, which may hold ESC and the like: shown escaped, never obeyed.
    return "error: " + printable(" ".join(message.split()))
