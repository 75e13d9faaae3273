"""The CLI on mails that cannot go out and on unverified users (issue #13, items 1, 2 and 13), as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_send_says_why_a_mail_cannot_go_out_or_is_refused(cli: Cli) -> None:
    queued = cli.run("send", "--to", "ann@example.org", "--subject", "Hi", "--text", "x")
    mail_id = queued.stdout.decode().strip()
    assert len(mail_id) == 32, "scripts still get the id alone on stdout"
    assert queued.stderr.decode().startswith("warning: no enabled SMTP server is configured")
    assert "no enabled SMTP server" in cli.json("show", mail_id)["last_error"]

    cli.out("smtp", "add", "relay", "--host", "smtp.example.org", "--security", "none")
    refused = cli.err("send", "--to", "ann@example.org", "--subject", "Hi", "--text", "x", code=2)
    assert refused.startswith("error: the mail has no From address, and no enabled SMTP server (relay)")
    assert "--sender ADDRESS" in refused
    given = cli.run("send", "--to", "ann@example.org", "--from", "me@example.org", "--subject", "Hi", "--text", "x")
    assert given.stderr == b""


def test_a_user_without_the_confirmation_mail_can_be_verified(cli: Cli) -> None:
    added = cli.out("user", "add", "--email", "op@example.org", "--no-notify")
    assert "no verification mail was sent" in added and "mailroom user verify op@example.org" in added

    assert cli.out("user", "verify", "op@example.org").strip() == "marked op@example.org verified: the user can log in"
    assert cli.json("user", "list")[0]["verified"] is True
    assert "address marked verified" in cli.out("user", "add", "--email", "ok@example.org", "--verified")
    assert cli.json("log")["total"] == 0, "no verification mail for either"
