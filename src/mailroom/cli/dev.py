"""Development helpers: ``mailroom sink`` (a local SMTP server that keeps every mail) and ``mailroom dev``.

``mailroom dev`` is what ``make run`` starts: a sink, an SMTP server entry pointing at it, and a worker,
so a mail sent from another shell shows up in the terminal within a poll interval. The machinery lives in
:mod:`mailroom.cli.dev_stack`, imported when a command runs: ``--help`` does not wait for uvicorn and aiosmtpd.
"""

from pathlib import Path
from typing import Annotated

import typer

# Where the sink listens (and the dev-sink server points): this host only.
DEV_HOST = "127.0.0.1"


def sink(
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on (0 picks a free one).")] = 1025,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = DEV_HOST,
    directory: Annotated[Path | None, typer.Option("--dir", help="Also save each mail as an .eml file here.",
                                                   file_okay=False)] = None,
) -> None:
    """Run a local SMTP server that accepts every mail and prints one line for each."""
    from mailroom.cli.dev_stack import run_sink

    run_sink(host, port, directory)


def dev(
    ctx: typer.Context,
    sink_port: Annotated[int | None, typer.Option("--sink-port", help="Port of the local SMTP sink "
                                                  "(default: MAILROOM_DEV_SINK_PORT, 1025).")] = None,
    sink_dir: Annotated[Path | None, typer.Option("--sink-dir", help="Also save received mails as .eml files "
                                                  "here.", file_okay=False)] = None,
    port: Annotated[int | None, typer.Option("--port", help="Web UI port (default: MAILROOM_WEB_PORT, "
                                             "8025).")] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve the admin UI and API too.")] = True,
) -> None:
    """Development stack: web UI + API, a worker, and an SMTP sink that every mail goes to, until Ctrl-C."""
    from mailroom.cli.dev_stack import run_dev

    run_dev(ctx, sink_port=sink_port, sink_dir=sink_dir, port=port, web=web)
