"""One contract for the RateLimits port: the in-memory fake the worker's unit tests use, and the SQL store on
SQLite and PostgreSQL. A limit holds for any window of its length; a reservation is all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from mailroom import Mailroom
from mailroom.domain.rate_limits import LimitScope, RateLimit, Window
from mailroom.ports import RateLimits
from tests.support.fakes import FakeRateLimits

T0 = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
RELAY = LimitScope.server("relay-id")
GMAIL = LimitScope.domain("gmail.com")


@pytest.fixture(params=["fake", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def limits(request: pytest.FixtureRequest) -> Iterator[RateLimits]:
    if request.param == "fake":
        yield FakeRateLimits()
        return
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    room = Mailroom(database_url=url, secret_key=Fernet.generate_key().decode())
    try:
        yield room.rate_limit_store
    finally:
        room.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_limit_holds_for_any_window_not_just_calendar_minutes(limits: RateLimits) -> None:
    limits.set_limits(RELAY, [RateLimit(3, Window.MINUTE)])
    assert [limits.reserve([RELAY], at(s)) for s in (0, 10, 29)] == [None, None, None]
    denial = limits.reserve([RELAY], at(31))  # a new calendar minute, but 3 went out within the last 60 s
    assert denial is not None and denial.scope == RELAY and denial.until == at(60)
    assert limits.reserve([RELAY], at(60)) is None
    assert limits.reserve([RELAY], at(65)) is not None
    assert limits.reserve([RELAY], at(70)) is None


def test_a_reservation_is_all_or_nothing_and_waits_for_the_strictest(limits: RateLimits) -> None:
    limits.set_limits(RELAY, [RateLimit(10, Window.SECOND), RateLimit(100, Window.HOUR)])
    limits.set_limits(GMAIL, [RateLimit(1, Window.MINUTE)])
    assert limits.reserve([RELAY, GMAIL], at(0)) is None
    denial = limits.reserve([RELAY, GMAIL], at(1))
    assert denial is not None and denial.scope == GMAIL and denial.until == at(60)
    uses = {(u.scope, u.limit.window): u.used for u in limits.usage(at(2))}
    assert uses == {(RELAY, Window.SECOND): 0, (RELAY, Window.HOUR): 1, (GMAIL, Window.MINUTE): 1}
    assert limits.reserve([RELAY], at(2)) is None  # the denied mail did not count against the server


def test_changing_a_limit_keeps_what_was_sent_and_removing_it_frees_the_scope(limits: RateLimits) -> None:
    limits.set_limits(RELAY, [RateLimit(2, Window.MINUTE)])
    assert limits.reserve([RELAY], at(0)) is None and limits.reserve([RELAY], at(1)) is None
    limits.set_limits(RELAY, [RateLimit(3, Window.MINUTE)])
    assert limits.reserve([RELAY], at(2)) is None
    assert limits.reserve([RELAY], at(3)) is not None  # the two earlier sends still count
    limits.set_limits(RELAY, [])
    assert limits.rules() == {} and limits.reserve([RELAY], at(4)) is None


@pytest.mark.postgres
def test_concurrent_workers_together_never_exceed_the_limit(postgres_url: str) -> None:
    rooms = [Mailroom(database_url=postgres_url, secret_key=Fernet.generate_key().decode()) for _ in range(4)]
    try:
        rooms[0].rate_limit_store.set_limits(RELAY, [RateLimit(25, Window.MINUTE)])
        granted: list[int] = []
        start = threading.Barrier(len(rooms))

        def reserve(room: Mailroom) -> None:
            start.wait()
            granted.append(sum(room.rate_limit_store.reserve([RELAY], at(n / 100)) is None for n in range(20)))

        threads = [threading.Thread(target=reserve, args=(room,)) for room in rooms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(granted) == 25, granted
    finally:
        for room in rooms:
            room.close()


def test_a_sent_mail_counts_from_its_arrival_so_the_server_never_sees_more_than_the_limit(limits: RateLimits) -> None:
    """Counted from the start of each send, a slow send let the server take 102 mails in a minute against 100:
    the next mail on the same count went a window after the slow one started, not after it arrived."""
    limits.set_limits(RELAY, [RateLimit(1, Window.MINUTE)])
    assert limits.reserve([RELAY], at(0)) is None
    limits.sent([RELAY], at(0), at(8))  # the server had it 8 s later
    denial = limits.reserve([RELAY], at(60))
    assert denial is not None and denial.until == at(68)
    assert limits.reserve([RELAY], at(68)) is None
