"""The CLI bounds the numbers it takes and refuses to move a server's password to a new host (issue #11,
items 8 and 11): one readable error line naming the option's setting, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.mark.parametrize(("args", "needle"), [
    (("smtp", "add", "x", "--host", "h", "--timeout", "inf"), "timeout_seconds"),
    (("smtp", "add", "x", "--host", "h", "--timeout", "1e300"), "timeout_seconds"),
    (("smtp", "add", "x", "--host", "h", "--priority", str(10**20)), "priority"),
    (("smtp", "add", "x", "--host", "h", "--port", "70000"), "port"),
    (("log", "--offset", str(2**63)), "offset"),
    (("log", "--limit", str(2**63)), "limit"),
    (("log", "-q", "after:9999-12-31T23:59:59-12:00"), "after"),
])
def test_numbers_out_of_range_are_refused_naming_them(cli: Cli, args: tuple[str, ...], needle: str) -> None:
    assert needle in cli.err(*args, code=2)


def test_moving_a_server_without_its_password_is_refused(cli: Cli) -> None:
    cli.run("smtp", "add", "relay", "--host", "smtp.example.org", "--username", "robot", "--password-env", "PW",
            env={"PW": "s3cret"})
    assert "password" in cli.err("smtp", "update", "relay", "--host", "evil.example.net", code=2)
    cli.run("smtp", "update", "relay", "--host", "evil.example.net", "--password-env", "PW", env={"PW": "new"})
