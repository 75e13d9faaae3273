"""Rate limits through the JSON API, the admin UI and the CLI: set, read back with their use, refuse bad input."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mailroom import SYSTEM, Mailroom
from mailroom.cli.app import register_commands
from mailroom.domain.rate_limits import LimitScope

API = "/api/v1"


def test_limits_are_set_and_listed_with_their_use_through_the_api(admin: TestClient, room: Mailroom) -> None:
    assert admin.put(f"{API}/rate-limits/servers/relay", json={"per_minute": 100, "per_day": 500}).status_code == 204
    assert admin.put(f"{API}/rate-limits/domains/Gmail.COM", json={"per_minute": 20}).status_code == 204
    relay = room.servers.get(SYSTEM, "relay")
    assert room.rate_limit_store.reserve([LimitScope.server(relay.id)], room.clock.now()) is None
    listed = admin.get(f"{API}/rate-limits").json()
    assert listed == [
        {"kind": "domain", "name": "gmail.com", "window": "minute", "limit": 20, "used": 0},
        {"kind": "server", "name": "relay", "window": "minute", "limit": 100, "used": 1},
        {"kind": "server", "name": "relay", "window": "day", "limit": 500, "used": 1},
    ]
    assert admin.put(f"{API}/rate-limits/servers/relay", json={}).status_code == 204
    assert [u["kind"] for u in admin.get(f"{API}/rate-limits").json()] == ["domain"]


def test_bad_limits_are_refused_with_the_field(admin: TestClient) -> None:
    for body, field in (({"per_minute": 0}, "per_minute"), ({"per_hour": "many"}, "per_hour"),
                        ({"per_week": 3}, "per_week")):
        answer = admin.put(f"{API}/rate-limits/servers/relay", json=body)
        assert answer.status_code == 422 and field in answer.text, answer.text
    assert admin.put(f"{API}/rate-limits/servers/nosuch", json={"per_minute": 1}).status_code == 404
    answer = admin.put(f"{API}/rate-limits/domains/not a domain", json={"per_minute": 1})
    assert answer.status_code == 422 and "not a domain name" in answer.text


def test_only_server_managers_set_limits(user_with: Callable[..., TestClient]) -> None:
    operator = user_with("mail-operator")
    assert operator.put(f"{API}/rate-limits/servers/relay", json={"per_minute": 1}).status_code == 403


def test_the_cli_sets_and_lists_limits(room: Mailroom) -> None:
    url = room.settings.database_url
    env = {"MAILROOM_DATABASE_URL": url, "MAILROOM_SECRET_KEY_FILE": room.settings.secret_key_file, "COLUMNS": "80"}
    runner = CliRunner()
    done = runner.invoke(register_commands(), ["limits", "set", "--server", "relay", "--per-hour", "50"], env=env)
    assert done.exit_code == 0, done.output
    listed = runner.invoke(register_commands(), ["limits", "list"], env=env)
    assert listed.exit_code == 0 and "relay" in listed.output and "0 / 50" in listed.output, listed.output
    refused = runner.invoke(register_commands(), ["limits", "set", "--server", "relay"], env=env)
    assert refused.exit_code != 0 and "--per-minute" in str(refused.exception)


def test_the_servers_page_sets_limits_and_shows_their_use(admin: TestClient, room: Mailroom) -> None:
    page = admin.get("/smtp")
    assert "No rate limit" in page.text
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0] if 'name="csrf_token"' in page.text else ""
    relay = room.servers.get(SYSTEM, "relay")
    form = {"scope": f"server:{relay.id}", "per_minute": "100", "per_day": "500", "csrf_token": token}
    saved = admin.post("/smtp-limits", data=form)
    assert saved.status_code == 200 and "The rate limits of relay were saved." in saved.text, saved.text[:500]
    assert 'data-limit="relay:minute"' in saved.text and "0 / 100" in saved.text and "0 / 500" in saved.text
    refused = admin.post("/smtp-limits", data={"scope": "domain", "domain": "not a domain", "per_hour": "5",
                                                "csrf_token": token})
    assert refused.status_code == 400 and "not a domain name" in refused.text
    assert 'value="not a domain"' in refused.text  # what was typed comes back to be corrected
    bad = admin.post("/smtp-limits", data={"scope": "domain", "domain": "gmail.com", "per_hour": "0",
                                           "csrf_token": token})
    assert bad.status_code == 400 and "between 1 and" in bad.text


def test_smtp_list_shows_each_servers_use_of_each_window(room: Mailroom) -> None:
    env = {"MAILROOM_DATABASE_URL": room.settings.database_url,
           "MAILROOM_SECRET_KEY_FILE": room.settings.secret_key_file, "COLUMNS": "160"}
    runner = CliRunner()
    cli = register_commands()
    assert runner.invoke(cli, ["limits", "set", "--server", "relay", "--per-minute", "100"], env=env).exit_code == 0
    room.rate_limit_store.reserve([LimitScope.server(room.servers.get(SYSTEM, "relay").id)], room.clock.now())
    listed = runner.invoke(register_commands(), ["smtp", "list"], env=env)
    assert "1/100 per minute" in listed.output, listed.output
    as_json = runner.invoke(register_commands(), ["smtp", "list", "--json"], env=env)
    assert '"used": 1' in as_json.output and '"limit": 100' in as_json.output


def test_a_limit_too_large_to_keep_is_refused_at_once(admin: TestClient) -> None:
    """Found by schemathesis: 999,999 per day made the request write 999,999 rows and time out."""
    answer = admin.put(f"{API}/rate-limits/domains/example.org", json={"per_day": 999_999})
    assert answer.status_code == 422 and "per_day" in answer.text


def test_a_domain_is_kept_as_envelopes_carry_it_and_a_bad_one_is_refused(admin: TestClient) -> None:
    """Found by schemathesis: a domain the IDNA codec cannot encode crashed the request with a 500."""
    assert admin.put(f"{API}/rate-limits/domains/Straße.DE", json={"per_minute": 5}).status_code == 204
    assert [u["name"] for u in admin.get(f"{API}/rate-limits").json()] == ["xn--strae-oqa.de"]
    for bad in ("%C2%80", "a@b.org"):
        answer = admin.put(f"{API}/rate-limits/domains/{bad}", json={"per_minute": 5})
        assert answer.status_code == 422 and "not a domain name" in answer.text, answer.text
