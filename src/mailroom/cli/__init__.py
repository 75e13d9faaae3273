"""The ``mailroom`` command line: ``main()`` is the console script, ``app`` the Typer application.

``mailroom --version`` is answered here, before Typer and the commands are imported (they are most of a
CLI call's start-up); everything else goes to :mod:`mailroom.cli.app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


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


def __getattr__(name: str) -> Any:
    if name == "app":
        from mailroom.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main", "version"]
