"""Paging through a long log (issue #13, item 6): a page jump beside Previous / Next, first and last page
links, and a readable answer (English and German) to a page number that is no number or lies past the end.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailroom import SYSTEM, Mail, Mailroom
from tests.web.conftest import browser_login

expect: Any = pytest.importorskip("playwright.sync_api").expect


def fill_log(room: Mailroom, count: int) -> None:
    room.send_mails(SYSTEM, [Mail(to=f"u{i}@example.org", subject=f"Mail {i:03}", text="t") for i in range(count)])


def banners(page: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
            for text in re.findall(r'<p class="banner [a-z]+" role="(?:alert|status)">(.*?)</p>', page, re.S)]


def test_a_page_that_is_no_number_gets_a_readable_answer(admin: TestClient, german: TestClient,
                                                        room: Mailroom) -> None:
    fill_log(room, 3)
    answer = admin.get("/log", params={"page": "abc", "q": "mail"})
    assert answer.status_code == 422
    assert banners(answer.text) == ["“abc” is not a page number: enter a whole number from 1 on."]
    assert "valid integer" not in answer.text  # not the framework's validation message
    assert 'value="mail"' in answer.text  # the log is still there, with the search, on its first page
    assert "Page 1 of 1" in answer.text

    german_answer = german.get("/log", params={"page": "abc"})
    assert german_answer.status_code == 422
    assert banners(german_answer.text) == ["„abc“ ist keine Seitenzahl: Geben Sie eine ganze Zahl ab 1 ein."]

    for wrong in ("0", "-3", "1.5", "1e3", "99999999999999999999999999999"):
        assert admin.get("/log", params={"page": wrong}).status_code == 422, wrong


def test_a_page_size_that_is_no_number_gets_a_readable_answer(admin: TestClient, german: TestClient) -> None:
    answer = admin.get("/log", params={"size": "many"})
    assert answer.status_code == 422
    assert banners(answer.text) == ["Show 25, 50, 100, or 200 mails per page, not “many”."]
    assert banners(german.get("/log", params={"size": "7"}).text) == [
        "Zeigen Sie 25, 50, 100 oder 200 Mails pro Seite an, nicht „7“."]


def test_outcome_counts_in_the_url_never_break_the_page(admin: TestClient) -> None:
    answer = admin.get("/log", params={"done": "cancel", "n": "x", "skipped": "y"})
    assert answer.status_code == 200
    assert "valid integer" not in answer.text


def test_a_page_past_the_end_says_where_the_end_is(admin: TestClient, german: TestClient, room: Mailroom) -> None:
    fill_log(room, 60)
    answer = admin.get("/log", params={"page": "9", "q": "mail"})
    assert answer.status_code == 200
    assert banners(answer.text) == ["There is no page 9: the last page is 2."]
    last = re.search(r'<a href="([^"]+)" data-testid="last-page-hint">', answer.text)
    assert last and html.unescape(last.group(1)) == "/log?q=mail&page=2"
    assert banners(german.get("/log", params={"page": "9"}).text) == [
        "Es gibt keine Seite 9: Die letzte Seite ist 2."]
    # Past any log's end (the offset would overflow): refused, and the first page shown with the same hint.
    too_deep = admin.get("/log", params={"page": "999999999"})
    assert too_deep.status_code == 422
    assert banners(too_deep.text) == ["There is no page 999,999,999: the last page is 2."]
    assert "Mail 059" in too_deep.text and "Page 1 of 2" in too_deep.text


def test_the_page_jump_keeps_the_view_and_knows_the_last_page(admin: TestClient, german: TestClient,
                                                              room: Mailroom) -> None:
    fill_log(room, 130)
    page = admin.get("/log", params={"q": "mail", "sort": "subject", "order": "asc", "size": "25", "page": "3"}).text
    jump = re.search(r'<form method="get" action="/log" class="page-jump">(.*?)</form>', page, re.S)
    assert jump, "no page jump"
    form = jump.group(1)
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z]+)" value="([^"]*)">', form))
    assert hidden == {"q": "mail", "sort": "subject", "order": "asc", "size": "25"}
    assert re.search(r'<input type="number" name="page" [^>]*min="1" max="6" value="3"', form)
    assert "Go to page" in form
    assert re.search(r'href="[^"]*page=6[^"]*" rel="last"', page) and re.search(r'href="[^"]*" rel="first"', page)
    assert "Gehe zu Seite" in german.get("/log", params={"size": "25"}).text


def test_jump_to_a_page_in_the_browser(page: Any, room: Mailroom) -> None:
    fill_log(room, 130)
    browser_login(page)
    page.goto("/log?size=25&sort=subject&order=asc")
    page.get_by_label("Go to page").fill("5")
    page.get_by_label("Go to page").press("Enter")
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 5 of 6")
    expect(page.locator("table.log-table tbody tr").first).to_contain_text("Mail 100")
    assert "sort=subject" in page.url and "size=25" in page.url
    page.get_by_role("link", name="First").click()
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 1 of 6")
    page.get_by_role("link", name="Last").click()
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 6 of 6")


def test_a_search_with_more_mails_than_are_counted_pages_on_without_a_last_page(admin: TestClient, german: TestClient,
                                                                                room: Mailroom) -> None:
    fill_log(room, 1010)  # a filtered search counts up to 1,000 (the setting log_count_limit)
    page = admin.get("/log", params={"q": "mail", "size": "100", "page": "2"}).text
    assert re.search(r'data-testid="log-total">More than 1,000 entries<', page)
    assert "Page 2<" in page and "Page 2 of" not in page and 'rel="last"' not in page
    assert re.search(r'href="[^"]*page=3[^"]*" rel="next"', page)
    assert re.search(r'<input type="number" name="page" inputmode="numeric" min="1" value="2" required>', page)
    # The end of the page asked for is counted: page 10 knows that one more page follows, and page 11 is the last.
    assert re.search(r'rel="next"', admin.get("/log", params={"q": "mail", "size": "100", "page": "10"}).text)
    last = admin.get("/log", params={"q": "mail", "size": "100", "page": "11"}).text
    assert "1,010 entries" in last and "Page 11 of 11" in last and 'rel="next"' not in last
    assert banners(admin.get("/log", params={"q": "mail", "size": "100", "page": "12"}).text) == [
        "There is no page 12: the last page is 11."]
    assert "Mehr als 1.000 Einträge" in german.get("/log", params={"q": "mail"}).text
    assert "Seite 1<" in german.get("/log", params={"q": "mail"}).text
    # The whole log is counted exactly.
    assert "1,010 entries" in admin.get("/log").text
    too_deep = admin.get("/log", params={"q": "mail", "page": "999999999"})
    assert too_deep.status_code == 422 and banners(too_deep.text) == ["There is no page 999,999,999."]


def test_next_links_carry_a_cursor_and_walk_the_log_in_order(admin: TestClient, room: Mailroom) -> None:
    """Next goes on from where the page ended (keyset, fast at any depth); every other link goes by page."""
    fill_log(room, 60)
    seen: list[str] = []
    answer = admin.get("/log", params={"size": "25", "sort": "subject", "order": "asc"}).text
    for number in (1, 2, 3):
        seen += re.findall(r"Mail \d{3}", answer)
        assert f"Page {number} of 3" in answer
        following = re.search(r'<a href="([^"]+)" rel="next">', answer)
        if number == 3:
            assert following is None
            break
        assert following and "after=" in following.group(1) and f"page={number + 1}" in following.group(1)
        answer = admin.get(html.unescape(following.group(1))).text
        previous = re.search(r'<a href="([^"]+)" rel="prev">', answer)
        assert previous and "after=" not in previous.group(1)
    assert list(dict.fromkeys(seen)) == [f"Mail {i:03}" for i in range(60)]
    broken = admin.get("/log", params={"after": "nonsense", "page": "2"})
    assert broken.status_code == 422 and "not a cursor" in broken.text


def test_a_broken_cursor_is_explained_in_german(german: TestClient) -> None:
    answer = german.get("/log", params={"after": "nonsense", "page": "2"})
    assert answer.status_code == 422 and "keine Fortsetzungsmarke" in answer.text
