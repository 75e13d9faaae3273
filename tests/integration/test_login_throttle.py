"""Login throttling and sessions on both databases: failures sent in parallel are all counted, the lock
is per account and client address, and sessions end on logout, password change, reset and disable."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from mailroom import SYSTEM, Mailroom
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.session_store import SqlLoginThrottle
from mailroom.adapters.storage.token_store import SqlApiTokenStore
from mailroom.domain.sessions import ANY_ACCOUNT, ThrottleKey
from mailroom.errors import AccountLocked, AuthenticationFailed
from mailroom.ports import LoginThrottle
from tests.integration.test_migrations import _upgrade
from tests.support.memory_accounts import MemoryLoginThrottle

PASSWORD = "correct horse battery"
GUESSES = 16  # the code as found counted 5 of 40 parallel guesses (argon2 makes each try slow here)


@pytest.fixture
def room(database_url: str, secret_key: str, request: pytest.FixtureRequest) -> Iterator[Mailroom]:
    max_failures = getattr(request, "param", GUESSES)
    with Mailroom(database_url=database_url, secret_key=secret_key, login_max_failures=max_failures,
                  login_lockout_base_seconds=60.0) as room:
        room.users.create_admin("owner@example.org", PASSWORD)
        yield room


def guess(room: Mailroom, n: int) -> str:
    try:
        room.users.authenticate("owner@example.org", f"wrong {n}", client="203.0.113.66")
    except AccountLocked:
        return "locked"
    except AuthenticationFailed:
        return "failed"
    return "in"


def test_wrong_guesses_sent_in_parallel_are_all_counted(room: Mailroom) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: guess(room, n), range(GUESSES)))
    assert answers.count("in") == 0
    # Every one of the GUESSES failures counted: the next try is locked, the right password included.
    with pytest.raises(AccountLocked):
        room.users.authenticate("owner@example.org", PASSWORD, client="203.0.113.66")
    # ... from the attacker's address only: the owner elsewhere still logs in.
    assert room.users.authenticate("owner@example.org", PASSWORD, client="198.51.100.7").user.email == \
        "owner@example.org"


@pytest.mark.parametrize("room", [3], indirect=True)
def test_unknown_addresses_are_throttled_like_known_ones(room: Mailroom) -> None:
    for email in ("owner@example.org", "nobody@example.org"):
        for n in range(room.settings.login_max_failures):
            with pytest.raises(AuthenticationFailed) as caught:
                room.users.authenticate(email, f"wrong {n}", client="203.0.113.66")
            assert not isinstance(caught.value, AccountLocked)
        with pytest.raises(AccountLocked):
            room.users.authenticate(email, "wrong again", client="203.0.113.66")


def test_sessions_end_on_logout_password_change_reset_and_disable(room: Mailroom) -> None:
    owner = room.users.find_user(SYSTEM, "owner@example.org")
    assert owner is not None
    first = room.users.log_in("owner@example.org", PASSWORD, client="a")
    second = room.users.log_in("owner@example.org", PASSWORD, client="b")
    assert room.users.session_by_key(first.key) is not None
    room.users.log_out(first.key)
    assert room.users.session_by_key(first.key) is None
    assert room.users.session_by_key(second.key) is not None

    third = room.users.log_in("owner@example.org", PASSWORD, client="c")
    session = room.users.session_by_key(second.key)
    assert session is not None
    room.users.change_password(session.subject, owner.id, PASSWORD, "a new long passphrase",
                               keep_session=second.key)
    assert room.users.session_by_key(second.key) is not None
    assert room.users.session_by_key(third.key) is None

    room.users.set_enabled(SYSTEM, owner.id, False)
    room.users.set_enabled(SYSTEM, owner.id, True)
    assert room.users.session_by_key(second.key) is None


# --- one contract for the in-memory and the SQL throttle ------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def throttle(request: pytest.FixtureRequest) -> Iterator[LoginThrottle]:
    if request.param == "memory":
        yield MemoryLoginThrottle()
        return
    db = Database(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    db.migrate()
    try:
        yield SqlLoginThrottle(db)
    finally:
        db.dispose()


def test_the_throttle_contract(throttle: LoginThrottle) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    account, other, client = ThrottleKey.of("Ann@Example.org", "1.2.3.4"), ThrottleKey.of("ann@example.org", "5"), \
        ThrottleKey(ANY_ACCOUNT, "1.2.3.4")
    assert [throttle.record_failure(account, now, forget_before=now - timedelta(hours=1)) for _ in range(3)] == \
        [1, 2, 3]
    assert throttle.record_failure(client, now, forget_before=now) == 1
    assert throttle.locked_until([account, other, client], now) is None
    throttle.lock(account, now + timedelta(seconds=60))
    throttle.lock(account, now + timedelta(seconds=30))  # a racing, smaller lock does not shorten it
    throttle.lock(client, now + timedelta(seconds=10))
    assert throttle.locked_until([account, client], now) == now + timedelta(seconds=60)
    assert throttle.locked_until([other, client], now) == now + timedelta(seconds=10)
    assert throttle.locked_until([account], now + timedelta(seconds=60)) is None
    later = now + timedelta(hours=2)
    assert throttle.record_failure(account, later, forget_before=later - timedelta(hours=1)) == 1
    throttle.record_failure(other, now, forget_before=now)
    throttle.clear(client)
    assert throttle.record_failure(client, now, forget_before=now) == 1
    throttle.clear_account("ANN@example.org")
    assert throttle.record_failure(account, now, forget_before=now) == 1
    assert throttle.record_failure(other, now, forget_before=now) == 1
    assert throttle.record_failure(client, now, forget_before=now) == 2


def test_0008_goes_up_and_down_keeping_users_and_their_tokens(database_url: str) -> None:
    db = Database(database_url)
    try:
        _upgrade(db, "0005")
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO mailroom_users (id, email, email_key, first_name, last_name, title, salutation, "
                "preferred_language, verified, enabled, roles, failed_logins, locked_until, created_at, updated_at) "
                "VALUES ('u1', 'a@example.org', 'a@example.org', '', '', '', '', 'en', true, true, '', 7, :t, :t, :t)"),
                {"t": now})
            conn.execute(text("INSERT INTO mailroom_api_tokens (id, user_id, name, hint, token_hash, created_at) "
                              "VALUES ('t1', 'u1', 'shop', 'mrt_abc', 'h', :t)"), {"t": now})
        _upgrade(db, "0008")
        store = SqlApiTokenStore(db)
        [token] = store.for_user("u1")  # dropping the users' counters must not cascade into their tokens
        assert token.expires_at is None and token.active
        _upgrade(db, "0005", down=True)
        _upgrade(db, "0008")
        assert SqlApiTokenStore(db).for_user("u1")[0].name == "shop"
    finally:
        db.dispose()
