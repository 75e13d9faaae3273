"""Every account-workflow mail is queued as confidential (issue #11, item 1), checked on the use case with
small in-memory fakes: the decision is the use case's, whatever store and templates are behind it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mailroom import SYSTEM, Mail
from mailroom.domain.events import EventBus
from mailroom.domain.idempotency import Queued
from mailroom.domain.users import AccountPolicy, Profile
from mailroom.usecases.users import UserUseCases
from tests.support.memory_accounts import (
    MemoryLoginThrottle,
    MemorySessionStore,
    MemoryTokenStore,
    MemoryUserStore,
    MovableClock,
    PlainHasher,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class RecordingTemplates:
    """Renders nothing: keeps what the use case asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_template_mail(self, subject: Any, **options: Any) -> str:
        self.sent.append(options)
        return f"mail-{len(self.sent)}"

    def queue_template_mail(self, subject: Any, **options: Any) -> Queued:
        return Queued(self.send_template_mail(subject, **options))


@pytest.fixture
def world() -> tuple[UserUseCases, str, RecordingTemplates]:
    templates = RecordingTemplates()
    policy = AccountPolicy(public_base_url="https://mail.example.org", application_name="Acme",
                           self_registration=True, min_password_length=8, verification_code_hours=48,
                           reset_code_hours=1, login_max_failures=5, login_lockout_base_seconds=1,
                           reset_request_floor_seconds=0, session_hours=12)
    users = UserUseCases(store=MemoryUserStore(), hasher=PlainHasher(), templates=templates,  # type: ignore[arg-type]
                         events=EventBus(), clock=MovableClock(), policy=policy, sessions=MemorySessionStore(),
                         throttle=MemoryLoginThrottle(), tokens=MemoryTokenStore(), sleep=lambda _s: None)
    users.ensure_builtin_roles()
    ann = users.create_user(SYSTEM, Profile(email="ann@example.org"), password="an old password")
    return users, ann.id, templates


def test_every_account_mail_is_confidential(world: tuple[UserUseCases, str, RecordingTemplates]) -> None:
    users, ann, templates = world
    users.request_password_reset("ann@example.org")
    users.resend_verification(SYSTEM, ann)
    users.change_email(SYSTEM, ann, "ann@new.example.org")
    reset_link = templates.sent[1]["model"]["confirm_url"]
    users.reset_password(reset_link.split("code=")[1], "a new password")
    users.register(Profile(email="bob@example.org"), "a long password")
    users.create_user(SYSTEM, Profile(email="cy@example.org"))

    names = [options["name"] for options in templates.sent]
    assert names == ["email_verification", "password_reset", "email_verification", "email_verification",
                     "password_changed", "registration_confirmation", "email_verification"]
    assert all(options["confidential"] is True for options in templates.sent)


def test_mails_are_not_confidential_unless_asked() -> None:
    assert Mail(to="a@example.org", text="x").confidential is False
    assert Mail(to="a@example.org", text="x", confidential=True).with_changes(subject="y").confidential is True
