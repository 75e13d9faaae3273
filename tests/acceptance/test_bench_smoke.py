"""The benchmark runner at tiny sizes, so that it does not rot: every part runs and lands in both reports.

Its figures are not checked (a test asserts no timing); what is checked is that each part ran, beside its
baseline, and that the markdown and the JSON say the same. django-post_office comes from the bench extra,
which the dev extra leaves out: without it that part must say "not run" and why, and nothing else may.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.db_fixtures import _pg_available

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "bench" / "run.py"


@pytest.mark.postgres
def test_the_runner_at_smoke_sizes_writes_every_part_beside_its_baseline(tmp_path: Path) -> None:
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}

    done = subprocess.run([sys.executable, str(RUNNER), "--smoke", "--output", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    markdown = (tmp_path / "latest.md").read_text()
    sections = report["sections"]
    assert list(sections) == ["delivery", "enqueue", "latency", "rss", "scaleout", "peers", "search"]
    assert report["meta"]["smoke"] is True
    assert report["meta"]["sink"] in markdown
    if os.environ.get("CI") == "true":  # .ci/run installs Postfix: the delivery figures are against its C sink
        assert "smtp-sink" in report["meta"]["sink"], report["meta"]["sink"]

    expected_rows = {"delivery": 3, "enqueue": 4, "latency": 2, "rss": 2, "scaleout": 1}
    django_installed = all(importlib.util.find_spec(name) for name in ("django", "post_office"))
    if django_installed:
        expected_rows["peers"] = 8  # 3 steps and the end-to-end CPU, on SQLite and PostgreSQL
    else:
        assert sections["peers"]["status"] == "not run"
        assert "pip install" in sections["peers"]["note"]
    if (ROOT / "bench" / "search.py").exists():
        assert sections["search"]["status"] == "ok", sections["search"]["note"]
        assert sections["search"]["rows"]
    else:
        assert sections["search"]["status"] == "not run"
        assert "search: not run" in markdown

    for name, count in expected_rows.items():
        section = sections[name]
        assert section["status"] == "ok", (name, section["note"])
        assert len(section["rows"]) == count, name
        for row in section["rows"]:
            assert row["baseline"] and row["ratio"] is not None and row["ratio"] > 0, (name, row)
            assert f"| {row['case']} | {row['measured']} | {row['baseline']} |" in markdown

    scale_out = sections["scaleout"]["rows"][0]["numbers"]["runs"]
    assert sorted(run["workers"] for run in scale_out) == [1, 2]
    assert all(run["duplicates"] == 0 and run["lost"] == 0 for run in scale_out), scale_out
