"""The ``mailroom`` command line: ``main()`` is the console script, ``app`` the Typer application."""

from mailroom.cli.app import app, main

__all__ = ["app", "main"]
