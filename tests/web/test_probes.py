"""/healthz and /readyz: no login, no cookie, one short query; 503 with a reason when the database cannot serve."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from mailroom import Mailroom
from mailroom.adapters.storage.database import VERSION_TABLE, known_revisions
from mailroom.web import create_app
from tests.support.pg_proxy import PgProxy


def _set_revision(room: Mailroom, revision: str) -> None:
    with room.database.write() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :revision"), {"revision": revision})


def test_both_probes_answer_without_login_cookie_or_csrf(room: Mailroom, client: TestClient) -> None:
    for method in ("GET", "HEAD"):
        alive = client.request(method, "/healthz")
        ready = client.request(method, "/readyz")
        assert (alive.status_code, ready.status_code) == (200, 200)
        assert "set-cookie" not in alive.headers and "set-cookie" not in ready.headers
    assert client.get("/healthz").json() == {"status": "ok"}
    head = room.database.schema_revision().head
    assert client.get("/readyz").json() == {"status": "ready", "database": "ok", "schema": head}
    assert not client.cookies, "a probe every few seconds must not start a session each time"


def test_the_probes_are_not_in_the_api_document(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert not {"/healthz", "/readyz"} & set(paths)


def test_a_schema_behind_the_code_is_not_ready_and_says_to_migrate(room: Mailroom, client: TestClient) -> None:
    head, before = known_revisions()[:2]
    _set_revision(room, before)  # as if this code were deployed and `mailroom migrate` not run yet
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    assert f"at revision {before}, this mailroom needs {head}: run `mailroom migrate`" in answer.json()["reason"]
    assert client.get("/healthz").status_code == 200, "alive all the same: a restart would not help"
    _set_revision(room, head)
    assert client.get("/readyz").status_code == 200


def test_a_schema_from_a_newer_mailroom_is_not_ready(room: Mailroom, client: TestClient) -> None:
    _set_revision(room, "9999")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "does not know" in answer.json()["reason"] and "upgrade this one" in answer.json()["reason"]


def test_an_empty_database_is_not_ready(tmp_path: Path) -> None:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'empty.db'}", secret_key_file=str(tmp_path / "key"),
                  migrate=False) as room, TestClient(create_app(room)) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "run `mailroom migrate`" in answer.json()["reason"]


def test_mounted_under_a_prefix_the_probes_are_there_too(app: FastAPI) -> None:
    parent = FastAPI()
    parent.mount("/mail", app)
    with TestClient(parent) as client:
        assert client.get("/mail/healthz").status_code == 200
        ready = client.get("/mail/readyz")
        assert ready.status_code == 200 and "set-cookie" not in ready.headers


@pytest.fixture
def room_behind_proxy(postgres_url: str, secret_key: str, pg_proxy: PgProxy) -> Iterator[Mailroom]:
    with Mailroom(database_url=postgres_url, secret_key=secret_key):
        pass  # migrated directly, so the proxy is only in the way of the probes
    with Mailroom(database_url=pg_proxy.url(postgres_url), secret_key=secret_key, migrate=False) as room:
        yield room


@pytest.mark.postgres
def test_readyz_follows_a_postgres_outage_while_healthz_stays_up(room_behind_proxy: Mailroom,
                                                                pg_proxy: PgProxy) -> None:
    with TestClient(create_app(room_behind_proxy)) as client:
        assert client.get("/readyz").status_code == 200

        pg_proxy.outage(60)
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["reason"].startswith("the database does not answer")
        assert "SELECT" not in answer.text, "no SQL in an answer anyone may fetch"
        assert client.get("/healthz").status_code == 200

        pg_proxy.outage(0)  # the database is back
        deadline = time.monotonic() + 30
        while (status := client.get("/readyz").status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
