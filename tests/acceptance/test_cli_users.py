"""``mailroom permissions`` and ``mailroom user`` as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom import Mailroom
from mailroom.domain.permissions import PERMISSIONS
from tests.acceptance.test_cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_permissions_lists_the_registry(cli: Cli) -> None:
    listed = cli.json("permissions")
    assert {p["id"] for p in listed} == PERMISSIONS.ids()
    assert all(p["label"] and p["description"] for p in listed)
    assert "mailroom.template.edit" in cli.out("permissions")


def test_create_admin_from_an_environment_variable_and_log_in(cli: Cli) -> None:
    out = cli.out("user", "create-admin", "--email", "root@example.org", "--password-env", "ADMIN_PW",
                  env={"ADMIN_PW": "a long admin passphrase"})
    assert out.startswith("created administrator root@example.org")
    assert "a long admin passphrase" not in "".join(p.decode() for p in cli.printed)
    [user] = cli.json("user", "list")
    assert user["email"] == "root@example.org" and user["roles"] == ["admin"] and user["verified"]
    assert "password" not in str(user).lower()
    with Mailroom(database_url=cli.env["MAILROOM_DATABASE_URL"], secret_key_file=str(cli.tmp_path / "k")) as room:
        assert room.users.authenticate("root@example.org", "a long admin passphrase").subject.permissions == \
            PERMISSIONS.ids()


def test_create_admin_reads_stdin_and_refuses_bad_input(cli: Cli) -> None:
    cli.out("user", "create-admin", "--email", "a@example.org", "--password-stdin", stdin="passphrase long\n")
    assert "already exists" in cli.err("user", "create-admin", "--email", "A@example.org", "--password-stdin",
                                       stdin="passphrase long\n", code=2)
    assert "too short" in cli.err("user", "create-admin", "--email", "b@example.org", "--password-stdin",
                                  stdin="short\n", code=2)
    assert "no terminal" in cli.err("user", "create-admin", "--email", "c@example.org", stdin="", code=1)
    assert len(cli.json("user", "list")) == 1


def test_add_user_roles_disable_and_verification(cli: Cli) -> None:
    out = cli.out("user", "add", "--email", "op@example.org", "--role", "mail-operator", "--language", "de")
    assert "verification mail queued" in out
    [queued] = cli.json("log")["items"]
    assert queued["template"] == "mailroom.account/email_verification" and queued["locale"] == "de"
    assert cli.out("user", "roles", "op@example.org", "template-editor", "mail-operator").strip() == \
        "op@example.org now has: template-editor, mail-operator"
    assert "* mail-operator" in cli.out("user", "roles", "op@example.org")
    assert "unknown role(s): boss" in cli.err("user", "roles", "op@example.org", "boss", code=2)
    cli.out("user", "disable", "op@example.org")
    assert cli.json("user", "list")[0]["enabled"] is False
    cli.out("user", "resend-verification", "op@example.org")
    assert cli.json("log")["total"] == 2
    assert cli.err("user", "disable", "nobody@example.org", code=2) == "error: no user 'nobody@example.org'"


def test_api_tokens_are_created_listed_and_revoked(cli: Cli) -> None:
    cli.out("user", "create-admin", "--email", "root@example.org", "--password-stdin", stdin="passphrase long\n")
    secret = cli.out("user", "token", "create", "root@example.org", "--name", "shop").strip()
    assert secret.startswith("mrt_")
    [token] = cli.json("user", "token", "list", "root@example.org")
    assert token["name"] == "shop" and secret not in str(token) and token["revoked_at"] is None
    with Mailroom(database_url=cli.env["MAILROOM_DATABASE_URL"], secret_key_file=str(cli.tmp_path / "k")) as room:
        assert room.api_tokens.authenticate(secret).user.email == "root@example.org"
    cli.out("user", "token", "revoke", "root@example.org", token["id"])
    assert cli.json("user", "token", "list", "root@example.org")[0]["revoked_at"] is not None
    assert "no active API token" in cli.err("user", "token", "revoke", "root@example.org", token["id"], code=2)


def test_a_token_can_expire(cli: Cli) -> None:
    cli.out("user", "create-admin", "--email", "root@example.org", "--password-stdin", stdin="passphrase long\n")
    cli.out("user", "token", "create", "root@example.org", "--name", "ci", "--expires-days", "30")
    [token] = cli.json("user", "token", "list", "root@example.org")
    assert token["expires_at"] is not None and token["expires_at"] > token["created_at"]
    assert "--expires-days" in cli.err("user", "token", "create", "root@example.org", "--name", "x",
                                       "--expires-days", "0", code=1)
