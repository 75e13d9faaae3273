"""Users and the account workflows end to end: each mail goes through the queue into a real aiosmtpd
server, the test follows the link in the delivered mail and finishes the workflow."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mailroom import SYSTEM, Mail, Mailroom, MailStatus, ServerSettings, Subject
from mailroom.adapters.storage.tables import idempotency_keys, login_throttle, mails, one_time_codes, users
from mailroom.domain.permissions import (
    CANCEL_MAIL,
    DELETE_MAIL,
    EDIT_TEMPLATES,
    MANAGE_SERVERS,
    MANAGE_USERS,
    PERMISSIONS,
    READ_MAIL,
    READ_SERVERS,
    READ_TEMPLATES,
    READ_USERS,
    RETRY_MAIL,
    SEND_MAIL,
)
from mailroom.domain.servers import Security
from mailroom.domain.sessions import ANY_ACCOUNT
from mailroom.domain.templates import TemplateSet
from mailroom.domain.users import ADMIN_ROLE, MAIL_OPERATOR_ROLE, TEMPLATE_EDITOR_ROLE, Profile
from mailroom.errors import (
    AccountLocked,
    AuthenticationFailed,
    DuplicateEmail,
    InvalidCode,
    InvalidInput,
    PermissionDenied,
    RegistrationClosed,
    TemplateNotFound,
    WeakPassword,
)
from tests.support.smtp_servers import SmtpServerHandle

PASSWORD = "correct horse battery"
FLOOR = 0.2


@pytest.fixture
def room(database_url: str, secret_key: str, smtp_server: SmtpServerHandle) -> Iterator[Mailroom]:
    with Mailroom(database_url=database_url, secret_key=secret_key, self_registration=True,
                  public_base_url="https://mail.acme.example/admin", application_name="Acme",
                  reset_request_floor_seconds=FLOOR, login_lockout_base_seconds=60.0) as room:
        room.servers.add(SYSTEM, ServerSettings(name="relay", host=smtp_server.host, port=smtp_server.port,
                                                security=Security.NONE, sender="accounts@acme.example"))
        yield room


def deliver(room: Mailroom, server: SmtpServerHandle, count: int) -> list[Any]:
    """Run the worker until the queue is empty and return the messages the SMTP server holds."""
    room.deliver_pending()
    return [r.message() for r in server.wait_for(count)]


def link_code(message: Any, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    match = re.search(rf"https://mail\.acme\.example/admin/{path}\?code=([A-Za-z0-9_%-]+)", text)
    assert match, f"no {path} link in:\n{text}"
    html = message.get_body(("html",)).get_content()
    assert match.group(0) in html, "the HTML part carries the same link"
    return match.group(1)


def count(room: Mailroom, table: Any) -> int:
    with room.database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_registration_confirm_and_login(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    user = room.users.register(Profile(email="Ann.Lee@Example.org", first_name="Ann", preferred_language="de_DE"),
                               PASSWORD)
    assert not user.verified and user.roles == ()
    [message] = deliver(room, smtp_server, 1)
    assert message["To"] == "Ann.Lee@example.org"  # the domain is normalised, the local part kept
    assert message["Subject"] == "Bestätigen Sie Ihre Registrierung bei Acme"
    code = link_code(message, "confirm-email")
    with pytest.raises(AuthenticationFailed, match="confirm your e-mail address first"):
        room.users.authenticate("ann.lee@example.org", PASSWORD)

    confirmed = room.users.confirm_email(code)
    assert confirmed.verified
    session = room.users.authenticate("ANN.LEE@example.org", PASSWORD)
    assert session.user.id == user.id and session.subject.permissions == frozenset()
    with pytest.raises(InvalidCode, match="already used"):
        room.users.confirm_email(code)
    logged = room.search_mail_log(SYSTEM, recipient="ann.lee@example.org").items[0]
    assert logged.template == "mailroom.account/registration_confirmation" and logged.locale == "de"


def test_registration_can_be_switched_off(database_url: str, secret_key: str) -> None:
    with Mailroom(database_url=database_url, secret_key=secret_key) as room:
        with pytest.raises(RegistrationClosed, match="self-registration is switched off"):
            room.users.register(Profile(email="a@example.org"), PASSWORD)
        assert count(room, users) == 0 and count(room, mails) == 0


def test_admin_created_user_verifies_and_email_change_is_verified_again(
        room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    user = room.users.create_user(SYSTEM, Profile(email="bob@example.org", first_name="Bob"), password=PASSWORD,
                                  roles=[MAIL_OPERATOR_ROLE])
    [first] = deliver(room, smtp_server, 1)
    assert first["Subject"] == "Verify your e-mail address for Acme"
    room.users.confirm_email(link_code(first, "confirm-email"))
    session = room.users.authenticate("bob@example.org", PASSWORD)

    changed = room.users.change_email(session.subject, user.id, "robert@example.org")
    assert changed.email == "robert@example.org" and not changed.verified
    second = deliver(room, smtp_server, 2)[1]
    assert second["To"] == "robert@example.org"
    code = link_code(second, "confirm-email")
    room.users.change_email(session.subject, user.id, "rob@example.org")
    with pytest.raises(InvalidCode, match="already used"):
        room.users.confirm_email(code)  # a link to the previous new address stops working
    third = deliver(room, smtp_server, 3)[2]
    assert third["To"] == "rob@example.org"
    assert room.users.confirm_email(link_code(third, "confirm-email")).email == "rob@example.org"


def test_change_email_without_notify_sends_nothing(room: Mailroom) -> None:
    user = room.users.create_admin("admin@example.org", PASSWORD)
    room.users.change_email(SYSTEM, user.id, "root@example.org", notify_user=False)
    assert count(room, mails) == 0
    assert room.users.get_user(SYSTEM, user.id).verified is False


def test_password_reset_end_to_end(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    room.users.create_admin("carol@example.org", PASSWORD, first_name="Carol")
    room.users.request_password_reset("carol@example.org")
    room.users.request_password_reset("CAROL@example.org ")  # a double click: no second mail
    assert room.search_mail_log(SYSTEM).total == 1
    with room.database.write() as conn:  # a minute later: the next request mails a second link
        conn.execute(update(idempotency_keys).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    room.users.request_password_reset("CAROL@example.org ")
    first, second = deliver(room, smtp_server, 2)
    assert first["Subject"] == "Reset your password for Acme"
    old_code, new_code = link_code(first, "reset-password"), link_code(second, "reset-password")
    assert old_code != new_code and len(new_code) >= 22  # 128 bits in URL-safe base64

    with pytest.raises(WeakPassword):
        room.users.reset_password(new_code, "short")
    assert room.users.check_reset_code(new_code).email == "carol@example.org"
    room.users.reset_password(new_code, "a brand new passphrase")
    with pytest.raises(InvalidCode, match="already used"):
        room.users.reset_password(new_code, "yet another passphrase")
    with pytest.raises(InvalidCode, match="already used"):
        room.users.reset_password(old_code, "yet another passphrase")  # every other reset link is dead
    with pytest.raises(AuthenticationFailed):
        room.users.authenticate("carol@example.org", PASSWORD)
    assert room.users.authenticate("carol@example.org", "a brand new passphrase").user.email == "carol@example.org"

    notice = deliver(room, smtp_server, 3)[2]
    assert notice["Subject"] == "Your password for Acme was changed"
    with room.database.read() as conn:
        stored = {row.code_hash for row in conn.execute(select(one_time_codes.c.code_hash))}
    assert old_code not in stored and new_code not in stored, "codes are stored only as hashes"


def test_reset_answer_is_the_same_for_known_unknown_and_disabled_addresses(room: Mailroom) -> None:
    known = room.users.create_admin("dave@example.org", PASSWORD)
    disabled = room.users.create_admin("erin@example.org", PASSWORD)
    room.users.set_enabled(SYSTEM, disabled.id, False)
    answers: dict[str, tuple[object, float]] = {}
    for email in ("dave@example.org", "nobody@example.org", "erin@example.org", "not an address"):
        started = time.monotonic()
        answers[email] = (room.users.request_password_reset(email), time.monotonic() - started)
    assert {answer for answer, _ in answers.values()} == {None}
    # The floor is a lower bound the use case sleeps up to, so every answer falls in the same timing class.
    assert all(elapsed >= FLOOR for _, elapsed in answers.values())
    sent = room.search_mail_log(SYSTEM).items
    assert [m.recipients[0].email for m in sent] == [known.email], "only the enabled known user gets a mail"


def test_expired_code_and_code_of_another_user_are_refused(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    ann = room.users.register(Profile(email="ann@example.org"), PASSWORD)
    bob = room.users.register(Profile(email="bob@example.org"), PASSWORD)
    messages = deliver(room, smtp_server, 2)
    ann_code = link_code(next(m for m in messages if m["To"] == ann.email), "confirm-email")
    with pytest.raises(InvalidCode, match="another account"):
        room.users.confirm_email(ann_code, user_id=bob.id)
    with room.database.write() as conn:
        conn.execute(update(one_time_codes).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(InvalidCode, match="expired"):
        room.users.confirm_email(ann_code)
    with pytest.raises(InvalidCode, match="unknown"):
        room.users.confirm_email("made-up-code")
    assert not room.users.get_user(SYSTEM, ann.id).verified


@pytest.mark.parametrize(("action", "error"), [
    (lambda room: room.users.create_user(SYSTEM, Profile(email="ann@example.org")), DuplicateEmail),
    (lambda room: room.users.register(Profile(email="not-an-address"), PASSWORD), InvalidInput),
    (lambda room: room.users.register(Profile(email="new@example.org"), "short"), WeakPassword),
    (lambda room: room.users.create_user(SYSTEM, Profile(email="new@example.org"), roles=["nope"]), InvalidInput),
    (lambda room: room.users.register(Profile(email="new@example.org", first_name="A\r\nBcc: x@evil.example"),
                                      PASSWORD), InvalidInput),
])
def test_bad_input_changes_nothing(room: Mailroom, action: Callable[[Mailroom], object],
                                   error: type[Exception]) -> None:
    room.users.create_admin("ann@example.org", PASSWORD)
    before = (count(room, users), count(room, mails), count(room, one_time_codes))
    with pytest.raises(error):
        action(room)
    assert (count(room, users), count(room, mails), count(room, one_time_codes)) == before


def test_registering_a_taken_address_mails_its_owner_a_reset_link_instead(room: Mailroom,
                                                                          smtp_server: SmtpServerHandle) -> None:
    ann = room.users.create_admin("ann@example.org", PASSWORD)
    assert room.users.register(Profile(email="ANN@example.org"), "someone else's passphrase") is None
    assert count(room, users) == 1
    [message] = deliver(room, smtp_server, 1)
    assert message["To"] == "ann@example.org"
    room.users.reset_password(link_code(message, "reset-password"), "ann's own new passphrase")
    assert room.users.authenticate("ann@example.org", "ann's own new passphrase").user.id == ann.id


def test_no_user_is_left_behind_when_the_verification_mail_cannot_be_made(room: Mailroom) -> None:
    room.templates.delete_template(SYSTEM, "mailroom.account", "registration_confirmation")
    with pytest.raises(TemplateNotFound):
        room.users.register(Profile(email="ann@example.org"), PASSWORD)
    assert count(room, users) == 0 and count(room, one_time_codes) == 0


def test_repeated_failures_lock_the_account_and_are_recorded(room: Mailroom) -> None:
    room.users.create_admin("frank@example.org", PASSWORD)
    for _ in range(room.settings.login_max_failures):
        with pytest.raises(AuthenticationFailed) as caught:
            room.users.authenticate("frank@example.org", "wrong password")
        assert not isinstance(caught.value, AccountLocked)
        assert str(caught.value) == "wrong e-mail address or password"
    with pytest.raises(AccountLocked) as locked:
        room.users.authenticate("frank@example.org", PASSWORD)
    assert 0 < locked.value.retry_after_seconds <= 60
    with room.database.read() as conn:
        counters = {(row.account, row.failures) for row in conn.execute(select(login_throttle))}
    assert counters == {("frank@example.org", room.settings.login_max_failures),
                        (ANY_ACCOUNT, room.settings.login_max_failures)}
    with pytest.raises(AuthenticationFailed, match="wrong e-mail address or password"):
        room.users.authenticate("nobody@example.org", PASSWORD)


def test_failures_reset_after_a_good_login(room: Mailroom) -> None:
    user = room.users.create_admin("gina@example.org", PASSWORD)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            room.users.authenticate("gina@example.org", "nope")
    room.users.authenticate("gina@example.org", PASSWORD)
    for _ in range(room.settings.login_max_failures - 1):
        with pytest.raises(AuthenticationFailed):
            room.users.authenticate("gina@example.org", "nope")
    assert room.users.authenticate("gina@example.org", PASSWORD).user.id == user.id


def test_disabled_user_cannot_log_in_and_loses_the_session(room: Mailroom) -> None:
    user = room.users.create_admin("hal@example.org", PASSWORD)
    assert room.users.session(user.id) is not None
    room.users.set_enabled(SYSTEM, user.id, False)
    with pytest.raises(AuthenticationFailed, match="wrong e-mail address or password"):
        room.users.authenticate("hal@example.org", PASSWORD)
    assert room.users.session(user.id) is None


def test_roles_grant_their_permissions(room: Mailroom) -> None:
    admin = room.users.create_admin("root@example.org", PASSWORD)
    assert room.users.subject_of(admin).permissions == PERMISSIONS.ids()
    operator = room.users.create_user(SYSTEM, Profile(email="op@example.org"), password=PASSWORD,
                                      roles=[MAIL_OPERATOR_ROLE], verified=True, notify_user=False)
    subject = room.users.authenticate("op@example.org", PASSWORD).subject
    assert subject.has(SEND_MAIL) and subject.has(READ_MAIL)
    with pytest.raises(PermissionDenied):
        room.templates.save_set(subject, TemplateSet(id="x", name="x"))
    with pytest.raises(PermissionDenied):
        room.servers.add(subject, ServerSettings(name="evil", host="smtp.evil.example"))
    editor = room.users.set_roles(SYSTEM, operator.id, [TEMPLATE_EDITOR_ROLE])
    assert room.users.subject_of(editor).permissions == frozenset({READ_TEMPLATES, EDIT_TEMPLATES})
    assert {r.id for r in room.users.roles(SYSTEM)} >= {ADMIN_ROLE, MAIL_OPERATOR_ROLE, TEMPLATE_EDITOR_ROLE}


USE_CASE_OF: dict[str, Callable[[Mailroom, Subject], object]] = {
    SEND_MAIL: lambda room, s: room.send_mail(s, Mail(to="a@example.org", subject="s", text="t")),
    READ_MAIL: lambda room, s: room.search_mail_log(s),
    DELETE_MAIL: lambda room, s: room.delete_mails(s, ["0"]),
    RETRY_MAIL: lambda room, s: room.retry_mail(s, "0"),
    CANCEL_MAIL: lambda room, s: room.cancel_mail(s, "0"),
    READ_SERVERS: lambda room, s: room.servers.list(s),
    MANAGE_SERVERS: lambda room, s: room.servers.add(s, ServerSettings(name="n", host="smtp.example.org")),
    READ_TEMPLATES: lambda room, s: room.templates.list_sets(s),
    EDIT_TEMPLATES: lambda room, s: room.templates.save_set(s, TemplateSet(id="x", name="x")),
    READ_USERS: lambda room, s: room.users.list_users(s),
    MANAGE_USERS: lambda room, s: room.users.create_user(s, Profile(email="z@example.org")),
}


def test_every_declared_permission_has_a_use_case_test() -> None:
    assert set(USE_CASE_OF) == PERMISSIONS.ids()


@pytest.mark.parametrize("permission", sorted(PERMISSIONS.ids()))
def test_each_use_case_refuses_a_subject_without_its_permission(room: Mailroom, permission: str) -> None:
    lacking = Subject.user("u1", PERMISSIONS.ids() - {permission})
    with pytest.raises(PermissionDenied) as denied:
        USE_CASE_OF[permission](room, lacking)
    assert denied.value.permission == permission
    assert room.search_mail_log(SYSTEM).total == 0 and count(room, users) == 0


def test_mails_of_workflows_are_sent_with_high_priority(room: Mailroom, smtp_server: SmtpServerHandle) -> None:
    room.users.register(Profile(email="ivy@example.org"), PASSWORD)
    deliver(room, smtp_server, 1)
    [sent] = room.search_mail_log(SYSTEM).items
    assert sent.status is MailStatus.SENT and sent.priority == "high" and "account" in sent.tags
