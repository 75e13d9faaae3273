"""The README's Python example runs as written, in a fresh directory with default settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "the README shows a Python example"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    result = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "queued"
    assert (tmp_path / "mailroom.db").exists(), "the default database is a SQLite file in the working directory"
    assert (tmp_path / "mailroom.key").stat().st_mode & 0o777 == 0o600, "the key file is private"
