"""``mailroom templates`` as a subprocess: list, render, send, export / import, restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.test_cli import Cli

MODEL = {"application_name": "Acme", "first_name": "Ann", "last_name": "Lee", "salutation": "", "title": "",
         "email": "ann@example.org", "user_id": "u1", "preferred_language": "de",
         "confirm_url": "https://acme.example/confirm?code=abc"}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_list_render_and_send(cli: Cli) -> None:
    assert "mailroom.account" in [s["id"] for s in cli.json("templates", "list")]
    listing = cli.json("templates", "list", "mailroom.account")
    assert {("password_reset", "de"), ("password_reset", "en")} <= {(t["name"], t["locale"]) for t in
                                                                    listing["templates"]}
    rendered = json.loads(cli.out("templates", "render", "mailroom.account", "password_reset", "--language",
                                  "de_CH", "--json"))
    assert rendered["locale"] == "de" and rendered["html"] and rendered["text"]
    model_file = cli.tmp_path / "model.json"
    model_file.write_text(json.dumps({k: v for k, v in MODEL.items()}), encoding="utf-8")
    mail_id = cli.out("templates", "send", "mailroom.account", "password_reset", "--to", "ann@example.org",
                      "--language", "en", "--model-file", str(model_file)).strip()
    shown = cli.json("show", mail_id)
    assert shown["template"] == "mailroom.account/password_reset" and shown["locale"] == "en"


def test_bad_model_exits_2_and_queues_nothing(cli: Cli) -> None:
    line = cli.err("templates", "send", "mailroom.account", "password_reset", "--to", "a@example.org",
                   "--model", "[1]", code=2)
    assert "JSON object" in line
    assert cli.err("templates", "render", "nope", "x", code=2).startswith("error: no template set 'nope'")
    assert cli.json("log")["total"] == 0


def test_export_edit_import_and_restore(cli: Cli) -> None:
    folder = cli.tmp_path / "export"
    cli.out("templates", "export", "mailroom.account", "--out", str(folder))
    subject = folder / "templates" / "password_changed.en.subject.txt"
    subject.write_text("Changed by a team member at {{ application_name }}\n", encoding="utf-8")
    assert "1 of" in cli.out("templates", "import", str(folder))
    versions = cli.json("templates", "show", "mailroom.account", "password_changed", "--versions")
    assert [v["version"] for v in versions] == [2, 1]
    diff = cli.out("templates", "show", "mailroom.account", "password_changed", "--diff", "1", "2")
    assert "+Changed by a team member" in diff
    cli.out("templates", "export", "mailroom.account", "--out", str(cli.tmp_path / "set.zip"))
    assert (cli.tmp_path / "set.zip").stat().st_size > 0
    assert "restored as version 3" in cli.out("templates", "restore", "mailroom.account", "password_changed")
    assert cli.json("templates", "show", "mailroom.account", "password_changed")["subject"] != \
        "Changed by a team member at {{ application_name }}"
