"""The badges of mails on their way follow their status without loading the server (issue #13, item 5).

One request for the whole page (``GET /api/v1/mails/statuses``), at most every 2 s, none while the tab
is hidden and none once every mail on the page is final. Chromium counts the requests through
Playwright's request events; no timing is asserted beyond "no more often than every 2 s", which a slow
machine can only make easier to meet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mail, Mailroom
from mailroom.domain.log import MAX_PAGE_SIZE
from mailroom.errors import InvalidInput
from tests.web.conftest import browser_login

expect: Any = pytest.importorskip("playwright.sync_api").expect

POLL_SECONDS = 2.0


def queue_mails(room: Mailroom, count: int) -> list[str]:
    return room.send_mails(SYSTEM, [Mail(to=f"r{n}@example.org", subject=f"On its way {n}", text="t")
                                    for n in range(count)])


# --- the use case, on both databases -----------------------------------------------------------------


def test_statuses_of_many_mails_in_one_query(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        ids = queue_mails(room, 3)
        room.log.cancel(SYSTEM, ids[0])
        asked = [*ids, ids[1], "0" * 32, "x" * 300, "ünïcode"]  # repeats and ids no mail has: harmless
        assert room.log.statuses(SYSTEM, asked) == {ids[0]: "cancelled", ids[1]: "queued", ids[2]: "queued"}
        assert room.log.statuses(SYSTEM, []) == {}
        with pytest.raises(InvalidInput, match=f"at most {MAX_PAGE_SIZE}"):
            room.log.statuses(SYSTEM, [str(n) for n in range(MAX_PAGE_SIZE + 1)])


# --- the batched endpoint ----------------------------------------------------------------------------


def test_one_call_gives_the_status_of_many_mails(admin: TestClient, room: Mailroom) -> None:
    ids = queue_mails(room, 3)
    room.log.cancel(SYSTEM, ids[1])
    answer = admin.get("/api/v1/mails/statuses", params=[("id", i) for i in [*ids, "no-such-mail"]])
    assert answer.status_code == 200, answer.text
    # A mail that does not exist (any more) is left out: the page stops following it.
    assert answer.json() == {"statuses": {ids[0]: "queued", ids[1]: "cancelled", ids[2]: "queued"}}
    # The single-mail endpoint is unchanged.
    assert admin.get(f"/api/v1/mails/{ids[0]}").json()["status"] == "queued"


def test_the_status_call_needs_ids_a_login_and_the_read_permission(
        client: TestClient, admin: TestClient, room: Mailroom, user_with: Callable[..., TestClient]) -> None:
    mail_id = queue_mails(room, 1)[0]
    assert client.get("/api/v1/mails/statuses", params={"id": mail_id}).status_code == 401
    assert user_with("template-editor").get("/api/v1/mails/statuses",
                                            params={"id": mail_id}).status_code == 403
    missing = admin.get("/api/v1/mails/statuses")
    assert missing.status_code == 422
    assert missing.json()["field"] == "id"
    too_many = admin.get("/api/v1/mails/statuses", params=[("id", str(n)) for n in range(MAX_PAGE_SIZE + 1)])
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "id"


# --- the page ----------------------------------------------------------------------------------------


class ApiRequests:
    """The page's calls to the JSON API, with the moment each was made."""

    def __init__(self, page: Any) -> None:
        self.seen: list[tuple[float, str]] = []
        page.on("request", self._record)

    def _record(self, request: Any) -> None:
        if "/api/v1/" in request.url:
            self.seen.append((time.monotonic(), request.url))

    def __len__(self) -> int:
        return len(self.seen)

    def urls(self) -> list[str]:
        return [url for _at, url in self.seen]


def test_the_log_asks_once_per_page_and_stops_when_every_mail_is_final(page: Any, room: Mailroom) -> None:
    ids = queue_mails(room, 6)  # no worker: they stay queued
    requests = ApiRequests(page)
    browser_login(page)
    page.goto("/log")
    expect(page.locator(".badge.status-queued")).to_have_count(6)

    started = time.monotonic()
    page.wait_for_timeout(7_000)
    watched = time.monotonic() - started
    urls = requests.urls()
    assert urls, "the page does not follow its queued mails"
    assert all("/api/v1/mails/statuses?" in url for url in urls), urls  # one call per page, not one per mail
    assert all(mail_id in urls[-1] for mail_id in ids)
    assert len(urls) <= watched / POLL_SECONDS + 1, f"{len(urls)} requests in {watched:.1f} s"

    for mail_id in ids:
        room.log.cancel(SYSTEM, mail_id)
    expect(page.locator(".badge.status-cancelled")).to_have_count(6)
    expect(page.locator(".badge.status-cancelled").first).to_have_text("cancelled")
    settled = len(requests)
    page.wait_for_timeout(5_000)
    assert len(requests) == settled, "the page keeps asking although nothing on it can change"


def test_the_polling_pauses_while_the_tab_is_hidden(page: Any, room: Mailroom) -> None:
    queue_mails(room, 3)
    requests = ApiRequests(page)
    browser_login(page)
    page.goto("/log")
    with page.expect_request("**/api/v1/mails/statuses?*"):
        pass

    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    page.wait_for_timeout(1_000)  # a request already on its way when the tab was hidden may still show up
    while_hidden = len(requests)
    page.wait_for_timeout(5_000)
    assert len(requests) == while_hidden, "the page asks while nobody can see it"

    with page.expect_request("**/api/v1/mails/statuses?*"):
        page.evaluate("""() => {
            delete document.visibilityState;
            delete document.hidden;
            document.dispatchEvent(new Event("visibilitychange"));
        }""")


def test_the_mail_detail_badge_follows_through_the_same_call(page: Any, room: Mailroom) -> None:
    mail_id = queue_mails(room, 1)[0]
    requests = ApiRequests(page)
    browser_login(page)
    page.goto(f"/log/{mail_id}")
    badge = page.locator(".detail-head .badge")
    expect(badge).to_have_text("queued")
    room.log.cancel(SYSTEM, mail_id)
    expect(badge).to_have_text("cancelled")
    assert requests.urls() and all("/api/v1/mails/statuses?" in url for url in requests.urls())
