"""The CLI at a normal terminal width (80 columns, also what Rich assumes in a pipe): tables keep what an
operator types and scans for on one line, help reads right, and usage errors say what to fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.acceptance.test_cli import Cli

LONG_SUBJECT = "Your invoice for the whole of last quarter, with every line item and the tax summary attached"
LONG_RECIPIENT = "accounts-payable-department@subsidiary.example.org"
LONG_ERROR = "451 4.7.1 Greylisted: please try again later, the server keeps a record of recent senders"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    narrow = Cli(tmp_path)
    narrow.env["COLUMNS"] = "80"
    return narrow


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_help_shows_no_type_after_flags(cli: Cli) -> None:
    for command in (("log", "--help"), ("templates", "show", "--help"), ("smtp", "add", "--help")):
        help_text = cli.out(*command)
        assert "<bool>" not in help_text
        assert all(len(line) <= 80 for line in help_text.splitlines()), help_text
    assert "--json " in cli.out("log", "--help")


def test_usage_errors_point_at_the_commands_help(cli: Cli) -> None:
    assert cli.err("log", "--bogus", code=1).endswith("(see 'mailroom log --help')")
    assert "(see 'mailroom smtp add --help')" in cli.err("smtp", "add", "x", "--host", "h", "--port", "x", code=1)


def test_a_bad_choice_lists_the_choices_plainly(cli: Cli) -> None:
    line = cli.err("smtp", "add", "relay", "--host", "smtp.example.org", "--security", "bogus", code=1)
    assert "'bogus' is not one of 'starttls', 'tls', 'none'" in line
    assert "Value error" not in line
    assert "Value error" not in cli.err("log", "--status", "lost", code=1)


def test_an_unknown_smtp_hint_is_refused_with_the_server_names(cli: Cli) -> None:
    line = cli.err("send", "--to", "a@example.org", "--text", "x", "--smtp-hint", "nosuch", code=2)
    assert "no SMTP server yet" in line and "mailroom smtp add" in line
    # A sender on one server: a mail without a From is refused when no enabled server has one.
    cli.out("smtp", "add", "relay-b", "--host", "b.example.org", "--sender", "app@example.org")
    relay_a = cli.out("smtp", "add", "relay-a", "--host", "a.example.org")
    assert "relay-a" in relay_a
    line = cli.err("send", "--to", "a@example.org", "--text", "x", "--smtp-hint", "nosuch", code=2)
    assert "'nosuch'" in line and "relay-a, relay-b" in line
    line = cli.err("templates", "send", "mailroom.account", "notification", "--to", "a@example.org", "--model",
                   "{}", "--smtp-hint", "relay-c", code=2)
    assert "relay-a, relay-b" in line
    assert cli.json("log")["total"] == 0  # nothing was queued
    server_id = cli.json("smtp", "list")[0]["id"]
    cli.out("send", "--to", "a@example.org", "--text", "x", "--smtp-hint", "relay-b")
    cli.out("send", "--to", "a@example.org", "--text", "x", "--smtp-hint", server_id)  # an id is a name too
    assert cli.json("log")["total"] == 2


def test_templates_take_the_locale_under_one_name(cli: Cli) -> None:
    for command in ("show", "render", "send", "restore"):
        help_text = cli.out("templates", command, "--help")
        assert "--locale" in help_text and "--language" not in help_text, command
    rendered = json.loads(cli.out("templates", "render", "mailroom.account", "password_changed", "--locale", "de",
                                  "--json"))
    assert rendered["locale"] == "de"
    old_name = json.loads(cli.out("templates", "render", "mailroom.account", "password_changed", "--language",
                                  "de", "--json"))
    assert old_name == rendered  # the old name still works, hidden
    assert "--locale" in cli.err("templates", "render", "mailroom.account", "password_changed", "--locale", "de",
                                 "--language", "en", code=1)
    assert "Passwort" in cli.out("templates", "show", "mailroom.account", "password_changed", "-l", "de")


@pytest.mark.parametrize("columns", ["80", None], ids=["80-columns", "pipe"])
def test_the_log_keeps_id_status_recipient_and_time_at_80_columns(cli: Cli, columns: str | None) -> None:
    if columns is None:
        del cli.env["COLUMNS"]  # a pipe without COLUMNS: Rich assumes 80
    long_one = cli.out("send", "--to", LONG_RECIPIENT, "--subject", LONG_SUBJECT, "--text", "x").strip()
    short_one = cli.out("send", "--to", "a@example.org", "--subject", "hi", "--text", "x",
                        "--send-at", "2999-01-01T09:00").strip()
    cli.out("cancel", short_one)
    table = lines_of(cli.out("log"))
    assert all(len(line) <= 80 for line in table), "\n".join(table)
    [long_row] = [line for line in table if long_one in line]
    [short_row] = [line for line in table if short_one in line]
    assert " queued " in long_row and " cancelled " in short_row
    assert "accounts-payable" in long_row and "…" in long_row  # cut, not wrapped onto a second line
    assert "a@example.org" in short_row
    assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", long_row) and re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", short_row)
    assert "left out at this width: subject" in table[-1]


def test_the_log_shows_more_columns_when_wider(cli: Cli) -> None:
    cli.env["COLUMNS"] = "160"
    # A server, so that the mail has no last error ("no enabled SMTP server") taking up a column.
    cli.out("smtp", "add", "relay", "--host", "smtp.example.org", "--sender", "app@example.org")
    mail_id = cli.out("send", "--to", LONG_RECIPIENT, "--subject", LONG_SUBJECT, "--text", "x").strip()
    [row] = [line for line in lines_of(cli.out("log")) if mail_id in line]
    assert "Your invoice for the whole" in row and LONG_RECIPIENT[:20] in row and len(row) <= 160


def test_smtp_and_template_lists_are_one_line_per_entry_at_80_columns(cli: Cli) -> None:
    cli.out("smtp", "add", "relay-primary", "--host", "smtp.mailprovider.example.com", "--username",
            "someone@example.com", "--password-env", "MR_PW", "--sender", "noreply@example.org",
            env={"MR_PW": "secret"})
    servers = lines_of(cli.out("smtp", "list"))
    assert all(len(line) <= 80 for line in servers), "\n".join(servers)
    [row] = [line for line in servers if "relay-primary" in line]
    assert "smtp.mailprovider.example.com:587" in row and "starttls" in row
    assert len(servers) == 4  # title, header, the server, what was left out

    sets = lines_of(cli.out("templates", "list"))
    assert all(len(line) <= 80 for line in sets), "\n".join(sets)
    assert any(line.startswith("mailroom.account ") for line in sets)  # the id whole, as it is typed
    templates = lines_of(cli.out("templates", "list", "mailroom.account"))
    assert all(len(line) <= 80 for line in templates), "\n".join(templates)
    names = {line.split()[0] for line in templates[2:] if not line.startswith("left out")}
    assert {"registration_confirmation", "password_reset", "layout"} <= names
    assert len(templates) == 2 + 12 + 1  # title, header, one line per template, what was left out
