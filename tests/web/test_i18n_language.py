"""Each user chooses the UI language on the account page; the stored choice beats the browser's."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mailroom
from mailroom.domain.users import Profile
from tests.web.conftest import PASSWORD, csrf_of, log_in

GERMAN_BROWSER = {"Accept-Language": "de-DE,de;q=0.9"}


def test_a_user_switches_the_ui_language_on_the_account_page(admin: TestClient, room: Mailroom) -> None:
    page = admin.get("/account", headers=GERMAN_BROWSER)
    assert "Your account" in page.text, "the stored language (English) beats the browser's"
    assert 'name="language"' in page.text
    answer = admin.post("/account/language", data={"language": "de", "csrf_token": csrf_of(page.text)},
                        follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/account?done=language"
    german = admin.get("/account?done=language")
    assert "Ihr Konto" in german.text and "Die Sprache wurde geändert." in german.text
    assert '<option value="de" lang="de" selected>Deutsch</option>' in german.text
    assert room.users.find_user(SYSTEM, "admin@example.org").profile.preferred_language == "de"  # type: ignore[union-attr]
    admin.post("/account/language", data={"language": "en", "csrf_token": csrf_of(german.text)})
    assert "Your account" in admin.get("/account", headers=GERMAN_BROWSER).text


def test_a_german_user_with_an_english_browser_gets_german_pages(app: object, room: Mailroom,
                                                                  client: TestClient) -> None:
    room.users.create_user(SYSTEM, Profile(email="de@example.org", preferred_language="de"), password=PASSWORD,
                           verified=True, notify_user=False)
    log_in(client, "de@example.org")
    assert "Ihr Konto" in client.get("/account", headers={"Accept-Language": "en-US"}).text


def test_only_the_ui_languages_can_be_chosen(admin: TestClient) -> None:
    answer = admin.post("/account/language", data={"language": "xx-not-a-language",
                                                   "csrf_token": admin.headers["X-CSRF-Token"]})
    assert answer.status_code == 422 and "Choose one of the offered languages." in answer.text
