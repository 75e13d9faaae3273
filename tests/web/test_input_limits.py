"""Input that cannot break anything: control characters in header text, numbers out of range, and database
errors that reach nobody but the server log (issue #11, items 6, 7 and 11). Both databases."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom, ServerSettings
from mailroom.domain.servers import Security
from mailroom.web import create_app
from tests.support.smtp_servers import SmtpServerHandle
from tests.web.conftest import ADMIN, PASSWORD, csrf_of, log_in

API = "/api/v1"


@pytest.fixture
def room(database_url: str, tmp_path: Path, smtp_server: SmtpServerHandle) -> Iterator[Mailroom]:
    """The web tests' room, on SQLite and on PostgreSQL."""
    with Mailroom(database_url=database_url, secret_key_file=str(tmp_path / "key"), self_registration=True,
                  reset_request_floor_seconds=0.0, public_base_url="http://testserver") as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="mailroom@example.org"))
        room.users.create_admin(ADMIN, PASSWORD, first_name="Ada")
        yield room


@pytest.fixture
def client(room: Mailroom) -> Iterator[TestClient]:
    with TestClient(create_app(room)) as anonymous:
        yield anonymous


@pytest.fixture
def admin(room: Mailroom) -> Iterator[TestClient]:
    with TestClient(create_app(room)) as logged_in:
        yield log_in(logged_in, ADMIN)


def assert_422(answer: Any, field: str) -> None:
    assert answer.status_code == 422, answer.text
    if answer.headers["content-type"].startswith("application/json"):
        assert answer.json()["field"] == field, answer.json()


# --- item 6: database errors ---------------------------------------------------------------------------

# Case-sensitive: the pages have <select> elements, SQL has SELECT.
_LEAKS = re.compile(r"argon2|INSERT INTO|SELECT |UPDATE |\[SQL|\[parameters|psycopg|sqlite3")


def test_a_long_accept_language_neither_reaches_the_database_nor_leaks_the_password_hash(
        client: TestClient, room: Mailroom) -> None:
    form = client.get("/register")
    answer = client.post("/register", headers={"Accept-Language": "de-" + "-".join(["abcdefgh"] * 40)},
                         data={"email": "new@example.org", "password": "a long enough passphrase",
                               "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 200, answer.text
    assert not _LEAKS.search(answer.text), answer.text
    user = room.users.find_user(SYSTEM, "new@example.org")
    assert len(user.profile.preferred_language) <= 35


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_an_impossible_search_date_is_a_422_naming_the_field(admin: TestClient, moment: str) -> None:
    answer = admin.get(f"{API}/mails", params={"q": f"after:{moment}"})
    assert_422(answer, "q")
    assert not _LEAKS.search(answer.text), answer.text
    page = admin.get("/log", params={"q": f"after:{moment}"})
    assert page.status_code == 422, page.text
    assert not _LEAKS.search(page.text), page.text


def test_a_storage_error_answers_with_an_error_id_that_the_log_ties_to_the_detail(
        admin: TestClient, room: Mailroom, caplog: pytest.LogCaptureFixture) -> None:
    # A statement the database refuses for certain on both backends: a table that does not exist.
    from sqlalchemy import text

    from mailroom.errors import StorageError

    with caplog.at_level(logging.ERROR), pytest.raises(StorageError) as caught:
        with room.database.read() as conn:
            conn.execute(text("SELECT secret FROM no_such_table WHERE x = :p"), {"p": "s3cret-parameter"})
    message = str(caught.value)
    assert "s3cret-parameter" not in message and "no_such_table" not in message and "SELECT" not in message
    error_id = caught.value.error_id
    assert error_id and error_id in message
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged, "the server log names the error id"
    assert logged[0].exc_info is not None, "with the exception, so the detail is in the log"


# --- item 7: control characters through the API and the UI ---------------------------------------------

@pytest.mark.parametrize(("fields", "field"), [
    ({"subject": "a\x0bb"}, "subject"),
    ({"subject": "a\u2028b"}, "subject"),
    ({"headers": {"X-Note": "a\x1cb"}}, "headers.X-Note"),
    ({"headers": {"X-Note\n": "b"}}, "headers.X-Note\n"),
    ({"attachments": [{"filename": "a\x85b.txt", "content_base64": ""}]}, "attachments.0.filename"),
    ({"html": '<img src="cid:x">', "attachments": [{"filename": "a.png", "content_base64": "", "inline": True,
                                                    "content_id": "x\x0cy@example.org"}]},
     "attachments.0.content_id"),
    ({"to": ['"Ann\x1bEvil" <ann@example.org>']}, "to.0"),
    ({"reply_to": ['"Ann\x7f" <ann@example.org>']}, "reply_to.0"),
    ({"sender": '"Ann\x0b" <ann@example.org>'}, "sender"),
])
def test_control_characters_in_header_text_are_a_422_through_the_api(admin: TestClient, fields: dict[str, Any],
                                                                      field: str) -> None:
    body = {"to": ["ann@example.org"], "subject": "Hello", "text": "Hi"} | fields
    assert_422(admin.post(f"{API}/mails", json=body), field)


def test_control_characters_in_the_ui_test_mail_are_a_422(admin: TestClient) -> None:
    form = admin.get("/test")
    answer = admin.post("/test/send", data={"to": "ann@example.org", "subject": "a\x0bb", "message": "Hi",
                                            "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 422, answer.text
    assert "U+000B" in answer.text


# --- item 11: bounded numbers --------------------------------------------------------------------------

@pytest.mark.parametrize("page", [str(2**63), str(10**30), "999999999"])
def test_a_huge_log_page_is_a_422_naming_the_page(admin: TestClient, page: str) -> None:
    answer = admin.get("/log", params={"page": page})
    assert answer.status_code == 422, answer.text
    assert "page" in answer.text.lower()
    assert not _LEAKS.search(answer.text), answer.text


@pytest.mark.parametrize(("params", "field"), [
    ({"offset": 2**63}, "offset"), ({"limit": 2**63}, "limit"), ({"offset": -1}, "offset"),
])
def test_api_paging_is_bounded(admin: TestClient, params: dict[str, int], field: str) -> None:
    assert_422(admin.get(f"{API}/mails", params=params), field)


def _server_form(admin: TestClient, **changes: str) -> dict[str, str]:
    form = admin.get("/smtp/new")
    return {"name": "backup", "host": "127.0.0.1", "port": "2525", "security": "none", "priority": "0",
            "timeout_seconds": "30", "enabled": "on", "csrf_token": csrf_of(form.text)} | changes


@pytest.mark.parametrize(("changes", "field"), [
    ({"priority": "1e20"}, "priority"), ({"priority": "100000000000000000000"}, "priority"),
    ({"timeout_seconds": "inf"}, "timeout_seconds"), ({"timeout_seconds": "nan"}, "timeout_seconds"),
    ({"timeout_seconds": "1e300"}, "timeout_seconds"), ({"port": "99999999999999999999"}, "port"),
    ({"port": "0"}, "port"),
])
def test_ui_server_numbers_are_bounded(admin: TestClient, room: Mailroom, changes: dict[str, str],
                                       field: str) -> None:
    answer = admin.post("/smtp", data=_server_form(admin, **changes))
    assert answer.status_code == 422, answer.text
    assert [s.name for s in room.servers.list(SYSTEM)] == ["relay"]


def test_ui_priority_buttons_are_bounded(admin: TestClient, room: Mailroom) -> None:
    relay = room.servers.get(SYSTEM, "relay")
    form = admin.get("/smtp")
    answer = admin.post(f"/smtp/{relay.id}/priority", data={"priority": "1" + "0" * 20,
                                                             "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 422, answer.text
    assert room.servers.get(SYSTEM, "relay").priority == 0


@pytest.mark.parametrize(("changes", "field"), [
    ({"priority": 10**20}, "priority"), ({"timeout_seconds": 1e300}, "timeout_seconds"),
    ({"port": 70000}, "port"),
])
def test_api_server_numbers_are_bounded(admin: TestClient, changes: dict[str, Any], field: str) -> None:
    body = {"name": "backup", "host": "127.0.0.1", "port": 2525, "security": "none"} | changes
    assert_422(admin.post(f"{API}/smtp-servers", json=body), field)


def test_a_server_with_an_infinite_timeout_cannot_exist() -> None:
    from mailroom.errors import InvalidInput

    for timeout in (float("inf"), float("nan"), 1e300, 0.0):
        with pytest.raises(InvalidInput) as caught:
            ServerSettings(name="x", host="h", timeout_seconds=timeout)
        assert caught.value.field == "timeout_seconds"
    for priority in (10**20, -(10**20)):
        with pytest.raises(InvalidInput) as caught:
            ServerSettings(name="x", host="h", priority=priority)
        assert caught.value.field == "priority"
