"""What a CLI call imports: a command loads only what it needs, so ``--version`` and ``--help`` answer at once
instead of spending most of a second on the web stack, the database layer and SMTP. Timings are not asserted
(they belong to benchmarks); the modules loaded are, as they decide the time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Each costs tens to hundreds of milliseconds to import; none is needed to print a version, help or a usage error.
# (pydantic itself is not listed: Typer converts option values with it, so any command line that reaches a
# subcommand loads it; pydantic-settings and the settings model are ours to defer.)
HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "jinja2", "aiosmtplib", "aiosmtpd",
         "cryptography", "argon2", "pydantic_settings", "mailroom.app", "mailroom.web", "mailroom.adapters",
         "mailroom.settings", "markdown_it")

REPORT_IMPORTS = """
import sys
from mailroom.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(MAILROOM_DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}", MAILROOM_SECRET_KEY_FILE=str(tmp_path / "k"),
               COLUMNS="80")
    result = subprocess.run([sys.executable, "-c", REPORT_IMPORTS, *args], env=env, capture_output=True,
                            timeout=60, check=False)
    modules = set(result.stderr.decode().split())
    assert "mailroom.cli" in modules, result.stderr.decode()
    return modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("log", "--help"), ("smtp", "list", "--help"),
                                  ("templates", "render", "--help"), ("dev", "--help"), ("log", "--bogus")],
                         ids=" ".join)
def test_help_version_and_usage_errors_load_no_heavy_module(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert heavy(imported_by(tmp_path, *args)) == []


def test_a_command_loads_the_database_layer_but_not_the_web_stack(tmp_path: Path) -> None:
    modules = imported_by(tmp_path, "log", "--json")
    assert "sqlalchemy" in modules
    assert not [m for m in heavy(modules) if m.split(".")[0] in ("fastapi", "starlette", "uvicorn", "aiosmtpd")]


def test_version_loads_neither_typer_nor_rich_and_help_loads_no_rich(tmp_path: Path) -> None:
    """Typer and Rich are most of what is left of a call's start-up (#13 item 20): ``--version`` is answered
    before Typer, and Rich comes only with the commands that print a table."""
    version = imported_by(tmp_path, "--version")
    assert not [m for m in version if m.split(".")[0] in ("typer", "click", "rich", "pydantic")]
    log_help = imported_by(tmp_path, "log", "--help")
    assert not [m for m in log_help if m.split(".")[0] == "rich"]
    # The modules of the other commands are not loaded either; the list of all commands loads them all.
    others = {"mailroom.cli.smtp", "mailroom.cli.users", "mailroom.cli.templates", "mailroom.cli.limits",
              "mailroom.cli.secrets", "mailroom.cli.dev"}
    assert not others & log_help
    assert others <= imported_by(tmp_path, "--help")
