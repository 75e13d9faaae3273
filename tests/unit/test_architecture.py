"""The core knows no framework: domain/, usecases/, ports.py and errors.py import no adapter library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mailroom"
FORBIDDEN = {"sqlalchemy", "alembic", "aiosmtplib", "aiosmtpd", "jinja2", "fastapi", "starlette", "click",
             "typer", "rich", "psycopg", "cryptography", "argon2", "uvicorn", "itsdangerous", "mailroom.adapters",
             "mailroom.cli", "mailroom.app", "mailroom.web"}
CORE = [*sorted((SRC / "domain").glob("*.py")), *sorted((SRC / "usecases").glob("*.py")),
        SRC / "ports.py", SRC / "errors.py", SRC / "worker.py"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SRC)))
def test_core_module_imports_no_framework(path: Path) -> None:
    bad = {name for name in _imports(path) if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert bad == set(), f"{path.name} imports {sorted(bad)}"
