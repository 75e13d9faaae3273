"""The ``mailroom`` command line: ``main()`` is the console script; ``mailroom.cli.app.register_commands()``
gives the Typer application with every command (for tests and embedding).

``mailroom --version`` is answered here, before Typer and the commands are imported (they are most of a
CLI call's start-up); everything else goes to :mod:`mailroom.cli.app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mailroom")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(f"mailroom {version()}")
        sys.exit(0)
    from mailroom.cli.app import main as run

    run(args)


__all__ = ["main", "version"]
