"""The log's search syntax: words, filters, quotes, negation, dates, and errors that say what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailroom.domain.log import LogQuery, SearchTerm, SortKey, TermField
from mailroom.domain.log_search import MAX_TERMS, parse_search
from mailroom.domain.outbox import MailStatus
from mailroom.errors import InvalidInput


def test_plain_words_each_become_a_text_term() -> None:
    query = parse_search("  Invoice   ann ")
    assert query.terms == (SearchTerm(TermField.TEXT, "invoice"), SearchTerm(TermField.TEXT, "ann"))
    assert query.statuses == frozenset() and query.text is None


def test_an_empty_search_is_the_base_query() -> None:
    base = LogQuery(sort=SortKey.SUBJECT, limit=25, offset=50)
    assert parse_search("", base) == base
    assert parse_search('""', base) == base


@pytest.mark.parametrize(("text", "field", "value"), [
    ("to:ann@example.org", TermField.RECIPIENT, "ann@example.org"),
    ("from:Shop@", TermField.SENDER, "shop@"),
    ("subject:report", TermField.SUBJECT, "report"),
    ("server:relay", TermField.SERVER, "relay"),
    ("tag:billing", TermField.TAG, "billing"),
    ("TO:ann", TermField.RECIPIENT, "ann"),
])
def test_text_filters(text: str, field: TermField, value: str) -> None:
    assert parse_search(text).terms == (SearchTerm(field, value),)


def test_quotes_keep_words_together_with_and_without_a_filter() -> None:
    query = parse_search('subject:"two words" "monthly report" -"spam offer"')
    assert query.terms == (SearchTerm(TermField.SUBJECT, "two words"), SearchTerm(TermField.TEXT, "monthly report"),
                           SearchTerm(TermField.TEXT, "spam offer", negated=True))


def test_a_leading_minus_negates() -> None:
    query = parse_search("-newsletter -to:ann -status:sent,cancelled")
    assert query.terms == (SearchTerm(TermField.TEXT, "newsletter", negated=True),
                           SearchTerm(TermField.RECIPIENT, "ann", negated=True))
    assert query.excluded_statuses == {MailStatus.SENT, MailStatus.CANCELLED}
    assert query.statuses == frozenset()


def test_a_minus_inside_or_alone_is_text() -> None:
    assert parse_search("re-send - x").terms == (SearchTerm(TermField.TEXT, "re-send"),
                                                 SearchTerm(TermField.TEXT, "-"), SearchTerm(TermField.TEXT, "x"))


def test_statuses_combine_with_or() -> None:
    assert parse_search("status:failed status:DEFERRED").statuses == {MailStatus.FAILED, MailStatus.DEFERRED}
    assert parse_search("status:failed,deferred").statuses == {MailStatus.FAILED, MailStatus.DEFERRED}


def test_statuses_of_the_search_narrow_those_of_the_base() -> None:
    base = LogQuery(statuses=frozenset({MailStatus.FAILED, MailStatus.SENT}))
    assert parse_search("status:sent", base).statuses == {MailStatus.SENT}
    nothing = parse_search("status:queued", base)
    assert nothing.excluded_statuses == set(MailStatus)  # no status is in both: nothing can match
    assert parse_search("-status:sent", base).statuses == {MailStatus.FAILED, MailStatus.SENT}


def test_dates_are_midnight_utc_and_date_times_keep_their_offset() -> None:
    query = parse_search("after:2024-05-01 before:2024-05-02T12:30+02:00")
    assert query.queued_after == datetime(2024, 5, 1, tzinfo=UTC)
    assert query.queued_before == datetime(2024, 5, 2, 10, 30, tzinfo=UTC)
    zurich = timezone(timedelta(hours=1))
    assert parse_search("after:2024-05-01T08:00", timezone=zurich).queued_after == datetime(2024, 5, 1, 7,
                                                                                          tzinfo=UTC)


def test_negated_bounds_flip_and_the_tightest_bound_wins() -> None:
    query = parse_search("-before:2024-05-01 -after:2024-06-01")
    assert query.queued_after == datetime(2024, 5, 1, tzinfo=UTC)
    assert query.queued_before == datetime(2024, 6, 1, tzinfo=UTC)
    base = LogQuery(queued_after=datetime(2024, 5, 10, tzinfo=UTC), queued_before=datetime(2024, 5, 20, tzinfo=UTC))
    narrowed = parse_search("after:2024-05-01 before:2024-05-15", base)
    assert narrowed.queued_after == datetime(2024, 5, 10, tzinfo=UTC)
    assert narrowed.queued_before == datetime(2024, 5, 15, tzinfo=UTC)


def test_the_base_query_keeps_sorting_paging_and_its_own_terms() -> None:
    base = LogQuery(sort=SortKey.SENT_AT, descending=False, offset=100, limit=25, server="relay",
                    terms=(SearchTerm(TermField.TAG, "billing"),))
    query = parse_search("ann", base)
    assert (query.sort, query.descending, query.offset, query.limit, query.server) == (
        SortKey.SENT_AT, False, 100, 25, "relay")
    assert query.terms == (SearchTerm(TermField.TAG, "billing"), SearchTerm(TermField.TEXT, "ann"))


@pytest.mark.parametrize(("text", "message"), [
    ("status:snt", "unknown status 'snt' (did you mean 'sent'?)"),
    ("status:nope", "unknown status 'nope'; the statuses are queued"),
    ("colour:red", "unknown filter 'colour:'"),
    ("Re: invoice", "Put text with a colon in quotes"),
    ("to:", "'to:' needs a value, e.g. to:ann@example.org"),
    ('subject:""', "'subject:' needs a value"),
    ('subject:"two words', "is not closed"),
    ("before:2024-13-01", "before: '2024-13-01' is not a date"),
    ("after:yesterday", "after: 'yesterday' is not a date; use YYYY-MM-DD"),
])
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_search(text)
    assert message in str(raised.value)
    assert raised.value.field == "q"


def test_quoted_text_with_a_colon_is_a_word() -> None:
    assert parse_search('"Re: invoice"').terms == (SearchTerm(TermField.TEXT, "re: invoice"),)


def test_the_search_is_bounded() -> None:
    with pytest.raises(InvalidInput, match="at most"):
        parse_search(" ".join(["w"] * (MAX_TERMS + 1)))
    with pytest.raises(InvalidInput, match="longer than"):
        parse_search("x" * 2000)
