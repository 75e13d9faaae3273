"""Every account-workflow mail is queued as confidential (issue #11, item 1), checked on the use case with
small in-memory fakes: the decision is the use case's, whatever store and templates are behind it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mailroom import SYSTEM, Mail
from mailroom.domain.events import EventBus
from mailroom.domain.users import AccountPolicy, OneTimeCode, Profile, Role, User
from mailroom.usecases.users import UserUseCases

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


class PlainHasher:
    def hash(self, password: str) -> str:
        return "h:" + password

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == "h:" + password

    def needs_rehash(self, password_hash: str) -> bool:
        return False


class MemoryUsers:
    """The part of UserStore the workflows use."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.hashes: dict[str, str] = {}
        self.codes: dict[str, OneTimeCode] = {}

    def add(self, user: User, password_hash: str | None) -> None:
        self.users[user.id] = user
        if password_hash:
            self.hashes[user.id] = password_hash

    def get(self, user_id: str) -> User:
        return self.users[user_id]

    def find_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email.lower() == email.lower()), None)

    def update(self, user: User) -> None:
        self.users[user.id] = user

    def password_hash(self, user_id: str) -> str | None:
        return self.hashes.get(user_id)

    def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None:
        self.hashes[user_id] = password_hash

    def add_code(self, code: OneTimeCode) -> None:
        self.codes[code.code_hash] = code

    def find_code(self, code_hash: str) -> OneTimeCode | None:
        return self.codes.get(code_hash)

    def use_code(self, code_hash: str, now: datetime) -> bool:
        code = self.codes[code_hash]
        if code.used_at is not None:
            return False
        self.codes[code_hash] = replace(code, used_at=now)
        return True

    def invalidate_codes(self, user_id: str, purpose: str, now: datetime) -> int:
        return 0

    def roles(self) -> list[Role]:
        return []


class RecordingTemplates:
    """Renders nothing: keeps what the use case asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_template_mail(self, subject: Any, **options: Any) -> str:
        self.sent.append(options)
        return f"mail-{len(self.sent)}"


@pytest.fixture
def world() -> tuple[UserUseCases, MemoryUsers, RecordingTemplates]:
    store, templates = MemoryUsers(), RecordingTemplates()
    policy = AccountPolicy(public_base_url="https://mail.example.org", application_name="Acme",
                           self_registration=True, min_password_length=8, verification_code_hours=48,
                           reset_code_hours=1, login_max_failures=5, login_lockout_base_seconds=1,
                           reset_request_floor_seconds=0)
    users = UserUseCases(store=store, hasher=PlainHasher(), templates=templates,  # type: ignore[arg-type]
                         events=EventBus(), clock=FixedClock(), policy=policy, sleep=lambda _s: None)
    store.add(User(id="u1", profile=Profile(email="ann@example.org"), created_at=NOW, updated_at=NOW),
              "h:old password")
    return users, store, templates


def test_every_account_mail_is_confidential(world: tuple[UserUseCases, MemoryUsers, RecordingTemplates]) -> None:
    users, _store, templates = world
    users.request_password_reset("ann@example.org")
    users.resend_verification(SYSTEM, "u1")
    users.change_email(SYSTEM, "u1", "ann@new.example.org")
    reset_link = templates.sent[0]["model"]["confirm_url"]
    users.reset_password(reset_link.split("code=")[1], "a new password")
    users.register(Profile(email="bob@example.org"), "a long password")
    users.create_user(SYSTEM, Profile(email="cy@example.org"))

    names = [options["name"] for options in templates.sent]
    assert names == ["password_reset", "email_verification", "email_verification", "password_changed",
                     "registration_confirmation", "email_verification"]
    assert all(options["confidential"] is True for options in templates.sent)


def test_mails_are_not_confidential_unless_asked() -> None:
    assert Mail(to="a@example.org", text="x").confidential is False
    assert Mail(to="a@example.org", text="x", confidential=True).with_changes(subject="y").confidential is True
