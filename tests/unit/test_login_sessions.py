"""The login use cases over in-memory ports: throttling per account and client address, sessions that end
on logout, password change, reset and disable, and a registration that does not reveal accounts."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from mailroom.domain.events import EventBus
from mailroom.domain.idempotency import Queued
from mailroom.domain.permissions import SYSTEM
from mailroom.domain.sessions import CLIENT_FAILURE_FACTOR, MAX_LOCKOUT_SECONDS, lockout_seconds
from mailroom.domain.users import AccountPolicy, CodePurpose, Profile
from mailroom.errors import AccountLocked, AuthenticationFailed
from mailroom.usecases.api_tokens import ApiTokenUseCases
from mailroom.usecases.users import UserUseCases
from tests.support.memory_accounts import (
    MemoryLoginThrottle,
    MemorySessionStore,
    MemoryTokenStore,
    MemoryUserStore,
    MovableClock,
    PlainHasher,
)

PASSWORD = "correct horse battery"
MAX_FAILURES = 3
BASE_SECONDS = 10.0


class Accounts:
    def __init__(self, *, self_registration: bool = True) -> None:
        self.clock = MovableClock()
        self.store, self.sessions = MemoryUserStore(), MemorySessionStore()
        self.throttle, self.tokens = MemoryLoginThrottle(), MemoryTokenStore()
        self.mails: list[dict[str, Any]] = []
        templates = SimpleNamespace(
            send_template_mail=lambda _subject, **mail: self.mails.append(mail) or "id",
            queue_template_mail=lambda _subject, **mail: self.mails.append(mail) or Queued("id"))
        policy = AccountPolicy(public_base_url="https://x.example", application_name="x",
                               self_registration=self_registration, min_password_length=10,
                               verification_code_hours=48, reset_code_hours=1, login_max_failures=MAX_FAILURES,
                               login_lockout_base_seconds=BASE_SECONDS, reset_request_floor_seconds=0,
                               session_hours=12)
        self.users = UserUseCases(store=self.store, hasher=PlainHasher(), templates=templates,  # type: ignore[arg-type]
                                  events=EventBus(), clock=self.clock, policy=policy, sessions=self.sessions,
                                  throttle=self.throttle, tokens=self.tokens, sleep=lambda _s: None)
        self.users.ensure_builtin_roles()
        self.api_tokens = ApiTokenUseCases(store=self.tokens, users=self.users, clock=self.clock)
        self.owner = self.users.create_admin("owner@example.org", PASSWORD)

    def fail(self, email: str = "owner@example.org", client: str = "attacker", times: int = 1) -> None:
        for _ in range(times):
            with pytest.raises(AuthenticationFailed) as caught:
                self.users.authenticate(email, "wrong guess", client=client)
            assert not isinstance(caught.value, AccountLocked)


@pytest.fixture
def accounts() -> Accounts:
    return Accounts()


def test_lockout_doubles_from_the_limit_up_to_fifteen_minutes() -> None:
    delays = [lockout_seconds(n, max_failures=3, base_seconds=2) for n in range(1, 7)]
    assert delays == [None, None, 2, 4, 8, 16]
    assert lockout_seconds(100, max_failures=3, base_seconds=2) == MAX_LOCKOUT_SECONDS


def test_the_attackers_address_is_locked_and_the_owners_is_not(accounts: Accounts) -> None:
    accounts.fail(times=MAX_FAILURES)
    with pytest.raises(AccountLocked) as locked:
        accounts.users.authenticate("owner@example.org", PASSWORD, client="attacker")
    assert locked.value.retry_after_seconds == BASE_SECONDS
    assert accounts.users.authenticate("owner@example.org", PASSWORD, client="owner").user.id == accounts.owner.id


def test_the_lock_ends_and_the_next_failure_doubles_it(accounts: Accounts) -> None:
    accounts.fail(times=MAX_FAILURES)
    accounts.clock.advance(seconds=BASE_SECONDS)
    accounts.fail()
    with pytest.raises(AccountLocked) as locked:
        accounts.users.authenticate("owner@example.org", PASSWORD, client="attacker")
    assert locked.value.retry_after_seconds == 2 * BASE_SECONDS


def test_unknown_addresses_are_counted_and_locked_like_known_ones(accounts: Accounts) -> None:
    accounts.fail("nobody@example.org", times=MAX_FAILURES)
    with pytest.raises(AccountLocked):
        accounts.users.authenticate("nobody@example.org", "any", client="attacker")


def test_one_client_trying_many_accounts_is_locked_for_all(accounts: Accounts) -> None:
    for n in range(MAX_FAILURES * CLIENT_FAILURE_FACTOR):
        accounts.fail(f"user{n}@example.org")
    with pytest.raises(AccountLocked):
        accounts.users.authenticate("owner@example.org", PASSWORD, client="attacker")
    accounts.users.authenticate("owner@example.org", PASSWORD, client="owner")


def test_counters_forget_failures_after_an_hour_and_reset_on_a_good_login(accounts: Accounts) -> None:
    accounts.fail(times=MAX_FAILURES - 1)
    accounts.clock.advance(hours=1, seconds=1)
    accounts.fail(times=MAX_FAILURES - 1)
    accounts.users.authenticate("owner@example.org", PASSWORD, client="attacker")
    accounts.fail(times=MAX_FAILURES - 1)
    accounts.users.authenticate("owner@example.org", PASSWORD, client="attacker")


def test_a_password_reset_clears_the_accounts_counters(accounts: Accounts) -> None:
    accounts.fail(times=MAX_FAILURES)
    accounts.users.request_password_reset("owner@example.org")
    code = accounts.mails[-1]["model"]["confirm_url"].split("code=")[1]
    accounts.users.reset_password(code, "a new long passphrase")
    accounts.users.authenticate("owner@example.org", "a new long passphrase", client="attacker")


def test_sessions_end_on_logout_and_expiry(accounts: Accounts) -> None:
    one = accounts.users.log_in("owner@example.org", PASSWORD)
    two = accounts.users.log_in("owner@example.org", PASSWORD)
    assert one.key and two.key and one.key != two.key
    accounts.users.log_out(one.key)
    assert accounts.users.session_by_key(one.key) is None
    assert accounts.users.session_by_key(two.key) is not None
    accounts.clock.advance(hours=12)
    assert accounts.users.session_by_key(two.key) is None
    assert accounts.users.session_by_key("made-up") is None


def test_a_password_change_keeps_only_the_changing_session(accounts: Accounts) -> None:
    mine = accounts.users.log_in("owner@example.org", PASSWORD)
    other = accounts.users.log_in("owner@example.org", PASSWORD)
    assert mine.key and other.key
    accounts.users.change_password(mine.subject, accounts.owner.id, PASSWORD, "a new long passphrase",
                                   keep_session=mine.key)
    assert accounts.users.session_by_key(mine.key) is not None
    assert accounts.users.session_by_key(other.key) is None


def test_a_reset_ends_every_session_and_revokes_tokens_when_asked(accounts: Accounts) -> None:
    session = accounts.users.log_in("owner@example.org", PASSWORD)
    assert session.key
    _token, secret = accounts.api_tokens.create(SYSTEM, accounts.owner.id, "shop")
    for revoke_tokens in (False, True):
        accounts.users.request_password_reset("owner@example.org")
        code = accounts.mails[-1]["model"]["confirm_url"].split("code=")[1]
        accounts.users.reset_password(code, "a new long passphrase", revoke_tokens=revoke_tokens)
        assert accounts.users.session_by_key(session.key) is None
        if not revoke_tokens:
            accounts.api_tokens.authenticate(secret)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        accounts.api_tokens.authenticate(secret)


def test_disabling_ends_the_sessions_for_good(accounts: Accounts) -> None:
    user = accounts.users.create_user(SYSTEM, Profile(email="op@example.org"), password=PASSWORD, verified=True,
                                      notify_user=False)
    session = accounts.users.log_in("op@example.org", PASSWORD)
    assert session.key
    accounts.users.set_enabled(SYSTEM, user.id, False)
    accounts.users.set_enabled(SYSTEM, user.id, True)
    assert accounts.users.session_by_key(session.key) is None


def test_tokens_expire(accounts: Accounts) -> None:
    token, secret = accounts.api_tokens.create(SYSTEM, accounts.owner.id, "ci", expires_days=2)
    assert token.expires_at == accounts.clock.now() + timedelta(days=2)
    accounts.api_tokens.authenticate(secret)
    accounts.clock.advance(days=2)
    with pytest.raises(AuthenticationFailed, match="expired"):
        accounts.api_tokens.authenticate(secret)


def test_registering_a_taken_address_mails_the_owner_and_creates_nothing(accounts: Accounts) -> None:
    assert accounts.users.register(Profile(email="OWNER@example.org"), "another long passphrase") is None
    assert accounts.store.count() == 1
    [mail] = accounts.mails
    assert mail["to"] == "owner@example.org" and mail["name"] == "password_reset"
    assert any(c.purpose is CodePurpose.RESET_PASSWORD for c in accounts.store.codes.values())
