"""A user created with a password but without the confirmation mail (issue #13, item 13): the login tells the
truth, and an administrator can mark the address verified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom import SYSTEM, Mailroom
from mailroom.domain.permissions import Subject
from mailroom.domain.users import Profile
from mailroom.errors import EmailNotVerified, PermissionDenied

PASSWORD = "a long test passphrase"


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Mailroom]:
    with Mailroom(database_url=f"sqlite:///{tmp_path / 'users.db'}", secret_key_file=str(tmp_path / "key")) as room:
        yield room


def test_the_login_does_not_claim_a_mail_was_sent(room: Mailroom) -> None:
    room.users.create_user(SYSTEM, Profile(email="ann@example.org"), password=PASSWORD, notify_user=False)

    with pytest.raises(EmailNotVerified) as refused:
        room.users.authenticate("ann@example.org", PASSWORD)

    message = str(refused.value)
    assert "the mail we sent" not in message
    assert "if you got one" in message and "ask an administrator" in message


def test_an_administrator_marks_the_address_verified(room: Mailroom) -> None:
    user = room.users.create_user(SYSTEM, Profile(email="ann@example.org"), password=PASSWORD, notify_user=False)

    verified = room.users.mark_verified(SYSTEM, user.id)

    assert verified.verified and room.users.get_user(SYSTEM, user.id).verified
    assert room.users.authenticate("ann@example.org", PASSWORD).user.id == user.id
    assert room.users.mark_verified(SYSTEM, user.id).verified  # again: nothing changes, no error


def test_marking_verified_needs_the_manage_permission(room: Mailroom) -> None:
    user = room.users.create_user(SYSTEM, Profile(email="ann@example.org"), password=PASSWORD, notify_user=False)

    with pytest.raises(PermissionDenied):
        room.users.mark_verified(Subject.user("someone", []), user.id)
    assert not room.users.get_user(SYSTEM, user.id).verified
