"""The ``mailroom`` command: the root Typer app, small commands, and ``main()`` with the exit-code table.

Commands are thin: parse options, call a use case as the SYSTEM subject, print. Errors end as one line
on stderr and an exit code from :mod:`mailroom.cli.errors`.
"""

import gc
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailroom.cli.context import HELP_LAYOUT, CliState, mailroom, setup_logging, state
from mailroom.cli.errors import OK, WorkerNotAlive, exit_code_for, one_line
from mailroom.errors import ConfigurationError, StorageUnavailable

if TYPE_CHECKING:
    from mailroom.app import Mailroom
    from mailroom.settings import Settings

app = typer.Typer(
    name="mailroom",
    help="Mail management: queue mails, deliver them over SMTP, search the mail log.",
    no_args_is_help=True,
    # Tracebacks with locals could print a decrypted SMTP password; errors are reported by main().
    pretty_exceptions_enable=False,
    add_completion=False,
    **HELP_LAYOUT,
)


def _version(value: bool) -> None:
    if value:  # `mailroom --version` alone is answered in mailroom.cli; this is `--version` among others
        from mailroom.cli import version

        typer.echo(f"mailroom {version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", envvar="MAILROOM_CONFIG", dir_okay=False,
                                                help="TOML settings file (MAILROOM_CONFIG).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy database URL "
                                                     "(overrides MAILROOM_DATABASE_URL).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Settings come from MAILROOM_* environment variables and the MAILROOM_CONFIG file."""
    ctx.obj = CliState(config=str(config) if config else None, database_url=database_url)


def worker(
    ctx: typer.Context,
    check_alive: Annotated[bool, typer.Option(
        "--check-alive", help="Do not deliver: exit 0 if a running worker touched MAILROOM_WORKER_LIVENESS_FILE "
        "within --max-age seconds, else 3 (for a container HEALTHCHECK or a systemd timer).")] = False,
    max_age: Annotated[float | None, typer.Option(
        "--max-age", min=0.0, help="With --check-alive: the oldest touch that counts as alive "
        "(default: three times MAILROOM_WORKER_LIVENESS_INTERVAL_SECONDS).")] = None,
) -> None:
    """Deliver queued mail until SIGTERM or Ctrl-C (in-flight mails are finished first)."""
    if check_alive:
        _check_alive(state(ctx).settings(), max_age)
        return
    import asyncio

    room = _when_the_database_answers(ctx)
    setup_logging(room.settings.log_level)
    asyncio.run(room.run_worker(handle_signals=True))


def _check_alive(settings: "Settings", max_age: float | None) -> None:
    """Only the file's age: a health check must not open the database (nor migrate it)."""
    if not settings.worker_liveness_file:
        raise ConfigurationError("--check-alive needs MAILROOM_WORKER_LIVENESS_FILE, set for the worker too",
                                 field="worker_liveness_file")
    from mailroom.adapters.liveness import LivenessFile

    limit = 3 * settings.worker_liveness_interval_seconds if max_age is None else max_age
    age = LivenessFile(settings.worker_liveness_file).age_seconds()
    if age is None:
        raise WorkerNotAlive(f"no worker is running: {settings.worker_liveness_file} does not exist "
                             "(it appears when a worker starts and goes when it stops)")
    if age > limit:
        raise WorkerNotAlive(f"the worker is stuck or gone: {settings.worker_liveness_file} was last touched "
                             f"{age:.0f} s ago (more than {limit:g} s); restart it")
    typer.echo(f"worker alive: touched {age:.1f} s ago")


def _when_the_database_answers(ctx: typer.Context) -> "Mailroom":
    """The facade, waiting (with backoff, up to 10 s between tries) while the database cannot be reached: a
    worker started during a database restart or outage waits for it, as a running one does, instead of exiting.
    Waiting is alive: the liveness file is touched meanwhile, as restarting would not bring the database back."""
    from mailroom.adapters.liveness import LivenessFile

    delay = 0.5
    liveness: LivenessFile | None = None
    while True:
        try:
            return mailroom(ctx)
        except StorageUnavailable as exc:
            if liveness is None and (path := state(ctx).settings().worker_liveness_file):
                liveness = LivenessFile(path)
                liveness.start()
            if liveness is not None:
                liveness.touch()
            typer.echo(f"waiting for the database ({exc}); trying again in {delay:g} s", err=True)
            time.sleep(delay)
            delay = min(10.0, delay * 2)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (MAILROOM_WEB_HOST).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (MAILROOM_WEB_PORT, 8025).")] = None,
) -> None:
    """Serve the admin UI and the JSON API (run workers separately with `mailroom worker`)."""
    import uvicorn

    from mailroom.web import create_app

    room = mailroom(ctx)
    setup_logging(room.settings.log_level)
    host = host or room.settings.web_host
    port = room.settings.web_port if port is None else port
    typer.echo(f"mailroom web on http://{host}:{port} (API docs at /api/docs)")
    uvicorn.run(create_app(room), host=host, port=port, log_level=room.settings.log_level.lower())


def keygen() -> None:
    """Print a new secret key for MAILROOM_SECRET_KEY (encrypts stored SMTP passwords)."""
    from mailroom.adapters.secrets import generate_key

    typer.echo(generate_key())


def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema."""
    room = mailroom(ctx)  # building the facade migrates
    typer.echo(f"database {room.database.url.render_as_string(hide_password=True)} is up to date")


# Every command in the order --help lists them: (name, module, attribute, whether it is a group of commands).
# A module is imported when its command is named on the command line, or all of them for the list of commands
# (`mailroom --help`, an unknown command): a CLI call does not pay for the modules of the other commands.
COMMANDS: tuple[tuple[str, str, str, bool], ...] = (
    ("send", "mailroom.cli.mail", "send", False),
    ("log", "mailroom.cli.mail", "log", False),
    ("show", "mailroom.cli.mail", "show", False),
    ("retry", "mailroom.cli.mail", "retry", False),
    ("cancel", "mailroom.cli.mail", "cancel", False),
    ("delete", "mailroom.cli.mail", "delete", False),
    ("smtp", "mailroom.cli.smtp", "smtp_app", True),
    ("limits", "mailroom.cli.limits", "limits_app", True),
    ("templates", "mailroom.cli.templates", "templates_app", True),
    ("user", "mailroom.cli.users", "users_app", True),
    ("secrets", "mailroom.cli.secrets", "secrets_app", True),
    ("permissions", "mailroom.cli.users", "permissions", False),
    ("sink", "mailroom.cli.dev", "sink", False),
    ("dev", "mailroom.cli.dev", "dev", False),
    ("worker", __name__, "worker", False),
    ("serve", __name__, "serve", False),
    ("keygen", __name__, "keygen", False),
    ("migrate", __name__, "migrate", False),
)
_registered: set[str] = set()


def register_commands(args: Sequence[str] | None = None) -> typer.Typer:
    """Add to ``app`` the commands named in ``args``, or every command when none is (or ``args`` is None)."""
    named = {name for name, *_ in COMMANDS} & set(args or ())
    for name, module, attribute, group in COMMANDS:
        if name in _registered or (named and name not in named):
            continue
        target = getattr(importlib.import_module(module), attribute)
        if group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
        _registered.add(name)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with the code of the exit-code table."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(register_commands(args))
    try:
        # standalone_mode=False: errors reach us instead of Click printing them and exiting with 2.
        result = command.main(args=args, prog_name="mailroom",
                              standalone_mode=False)
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise  # a bug: the traceback is what a developer needs
        typer.echo(one_line(exc), err=True)
        sys.exit(code)
    finally:
        # The command is over and has closed its files and connections. Without this the collector walks
        # every object of the loaded libraries again and again while the interpreter tears down: about 1 s
        # on a busy machine, which a stopping worker would add to its grace period (0.07 s with it).
        gc.freeze()
    # Without standalone mode, typer.Exit / Ctrl-C come back as the return value.
    sys.exit(result if isinstance(result, int) else OK)
