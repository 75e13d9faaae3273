"""Users and the account workflows mail management needs: registration, e-mail verification, password
reset, and the login that gives the web UI its subject.

Every workflow mail is a template of the ``mailroom.account`` set, queued like any other mail.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from mailroom.domain.events import EmailChanged, EventBus, UserCreated
from mailroom.domain.idempotency import IdempotencyKey, Queued
from mailroom.domain.mail import Priority
from mailroom.domain.permissions import MANAGE_USERS, PERMISSIONS, READ_USERS, SYSTEM, Permission, Subject
from mailroom.domain.sessions import (
    ANY_ACCOUNT,
    CLIENT_FAILURE_FACTOR,
    FORGET_FAILURES_AFTER,
    LoginSession,
    ThrottleKey,
    lockout_seconds,
)
from mailroom.domain.users import (
    ADMIN_ROLE,
    BUILTIN_ROLES,
    AccountPolicy,
    CodePurpose,
    OneTimeCode,
    Profile,
    Role,
    User,
)
from mailroom.errors import (
    AccountLocked,
    AuthenticationFailed,
    DuplicateEmail,
    EmailNotVerified,
    InvalidCode,
    InvalidInput,
    PermissionDenied,
    RegistrationClosed,
    WeakPassword,
)
from mailroom.ports import ApiTokenStore, Clock, LoginThrottle, PasswordHasher, SessionStore, UserStore
from mailroom.usecases.templates import TemplateUseCases

ACCOUNT_SET = "mailroom.account"
MAX_PASSWORD_LENGTH = 1024
# A second "send me a reset link" (a double click, an impatient user) or "resend verification" within this
# time queues no second mail: the first is on its way, and its link stays the one that works.
ACCOUNT_MAIL_REPEAT_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user: what the web UI keeps per request."""

    user: User
    subject: Subject
    key: str | None = None
    """The web session's key (what its cookie carries); None for API tokens and plain checks."""


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class UserUseCases:
    def __init__(self, *, store: UserStore, hasher: PasswordHasher, templates: TemplateUseCases, events: EventBus,
                 clock: Clock, policy: AccountPolicy, sessions: SessionStore, throttle: LoginThrottle,
                 tokens: ApiTokenStore, sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._sessions = sessions
        self._throttle = throttle
        self._tokens = tokens
        self._hasher = hasher
        self._templates = templates
        self._events = events
        self._clock = clock
        self._policy = policy
        self._sleep = sleep
        self._dummy_hash: str | None = None
        events.subscribe(UserCreated, self._on_user_created)
        events.subscribe(EmailChanged, self._on_email_changed)

    @property
    def policy(self) -> AccountPolicy:
        return self._policy

    # --- roles and permissions ------------------------------------------------------------------

    @staticmethod
    def permissions() -> list[Permission]:
        """Every permission a use case audits, with its label and description."""
        return PERMISSIONS.all()

    def ensure_builtin_roles(self) -> None:
        """Create or refresh the shipped roles; custom roles are left alone."""
        stored = {role.id: role for role in self._store.roles()}
        for role in BUILTIN_ROLES:
            if stored.get(role.id) != role:
                self._store.save_role(role)

    def roles(self, subject: Subject) -> list[Role]:
        subject.require(READ_USERS)
        return self._store.roles()

    def save_role(self, subject: Subject, role: Role) -> None:
        subject.require(MANAGE_USERS)
        unknown = role.permissions - PERMISSIONS.ids()
        if unknown:
            raise InvalidInput(f"unknown permission(s): {', '.join(sorted(unknown))}", field="permissions")
        if role.id in {r.id for r in BUILTIN_ROLES}:
            raise InvalidInput(f"{role.id!r} is a built-in role and cannot be changed", field="id")
        self._store.save_role(role)

    # --- users ----------------------------------------------------------------------------------

    def list_users(self, subject: Subject) -> list[User]:
        subject.require(READ_USERS)
        return self._store.all_users()

    def get_user(self, subject: Subject, user_id: str) -> User:
        subject.require_unless_self(user_id, READ_USERS)
        return self._store.get(user_id)

    def find_user(self, subject: Subject, email: str) -> User | None:
        subject.require(READ_USERS)
        return self._store.find_by_email(email)

    def has_users(self) -> bool:
        return self._store.count() > 0

    def create_user(self, subject: Subject, profile: Profile, *, password: str | None = None,
                    roles: Sequence[str] = (), verified: bool = False, notify_user: bool = True) -> User:
        """An administrator creates an account; with ``notify_user`` a verification mail goes out."""
        subject.require(MANAGE_USERS)
        return self._create(profile, password=password, roles=roles, verified=verified, notify_user=notify_user,
                            self_registered=False)

    def create_admin(self, email: str, password: str, **profile: str) -> User:
        """Bootstrap (CLI, ``make run``): a verified user with the admin role."""
        return self.create_user(SYSTEM, Profile(email=email, **profile), password=password, roles=[ADMIN_ROLE],
                                verified=True, notify_user=False)

    def register(self, profile: Profile, password: str) -> User | None:
        """Self-registration: the account exists at once and is verified through the mailed link.

        When the address already has an account, its owner gets a password-reset mail instead and the
        result is None: the caller answers the same either way, so registering does not reveal accounts.
        """
        if not self._policy.self_registration:
            raise RegistrationClosed()
        try:
            return self._create(profile, password=password, roles=(), verified=False, notify_user=True,
                                self_registered=True)
        except DuplicateEmail:
            existing = self._store.find_by_email(profile.email)
            if existing is not None and existing.enabled:
                self._send_reset_link(existing)
            return None

    def update_profile(self, subject: Subject, user_id: str, profile: Profile, *, notify_user: bool = True) -> User:
        """Change a user's profile; a new address must be verified again (mailed when ``notify_user``)."""
        subject.require_unless_self(user_id, MANAGE_USERS)
        user = self._store.get(user_id)
        changed_email = profile.email.lower() != user.email.lower()
        updated = replace(user, profile=profile, updated_at=self._clock.now(),
                          verified=user.verified and not changed_email)
        self._store.update(updated)
        if changed_email:
            self._store.invalidate_codes(user_id, CodePurpose.VERIFY_EMAIL, self._clock.now())
            try:
                self._events.publish(EmailChanged(user_id=user_id, old_email=user.email,
                                                  new_email=profile.email, notify_user=notify_user))
            except Exception:
                self._store.update(user)  # no verification mail: keep the address that works
                raise
        return updated

    def change_email(self, subject: Subject, user_id: str, new_email: str, *, notify_user: bool = True) -> User:
        subject.require_unless_self(user_id, MANAGE_USERS)
        user = self._store.get(user_id)
        return self.update_profile(subject, user_id, replace(user.profile, email=new_email), notify_user=notify_user)

    def set_roles(self, subject: Subject, user_id: str, roles: Sequence[str]) -> User:
        subject.require(MANAGE_USERS)
        self._check_roles(roles)
        user = self._store.get(user_id)
        updated = replace(user, roles=tuple(dict.fromkeys(roles)), updated_at=self._clock.now())
        self._store.update(updated)
        return updated

    def set_enabled(self, subject: Subject, user_id: str, enabled: bool) -> User:
        subject.require(MANAGE_USERS)
        if subject.user_id == user_id and not enabled:
            raise InvalidInput("you cannot disable your own account", field="enabled")
        user = self._store.get(user_id)
        updated = replace(user, enabled=enabled, updated_at=self._clock.now())
        self._store.update(updated)
        if not enabled:
            # Enabling again must not bring back the sessions of before: they end now.
            self._sessions.revoke_for_user(user_id, self._clock.now())
        return updated

    def resend_verification(self, subject: Subject, user_id: str) -> str:
        """Send a fresh verification mail (older links stop working); returns the mail id."""
        subject.require(MANAGE_USERS)
        user = self._store.get(user_id)
        if user.verified:
            raise InvalidInput(f"{user.email} is already verified", field="user")
        # Its own key: an admin's resend right after the account was created does mail again; a double
        # click on "resend" does not.
        return self._send_verification(user, "email_verification", replace_older=True,
                                       action="resend_verification").mail_id

    def mark_verified(self, subject: Subject, user_id: str) -> User:
        """An administrator vouches for the user's address (say, an account created without the confirmation
        mail): the user can log in, and verification links still out stop working."""
        subject.require(MANAGE_USERS)
        user = self._store.get(user_id)
        if user.verified:
            return user
        now = self._clock.now()
        updated = replace(user, verified=True, updated_at=now)
        self._store.update(updated)
        self._store.invalidate_codes(user_id, CodePurpose.VERIFY_EMAIL, now)
        return updated

    def change_password(self, subject: Subject, user_id: str, current_password: str, new_password: str, *,
                        keep_session: str | None = None) -> None:
        """A logged-in user changes their own password; they get the "password changed" notice.

        Every other session of the user ends; the one with the key ``keep_session`` (the caller's) stays.
        """
        if subject.user_id != user_id:
            raise PermissionDenied("own account", subject.user_id)
        user = self._store.get(user_id)
        stored = self._store.password_hash(user_id)
        if stored is None or not self._hasher.verify(stored, current_password):
            raise AuthenticationFailed("the current password is wrong")
        self._check_password(new_password)
        self._set_password(user, new_password)
        self._sessions.revoke_for_user(user_id, self._clock.now(),
                                       keep=hash_code(keep_session) if keep_session else None)

    # --- the code workflows -----------------------------------------------------------------------

    def confirm_email(self, code: str, *, user_id: str | None = None) -> User:
        """Follow a verification link: the address it was sent to becomes verified."""
        found = self._valid_code(code, CodePurpose.VERIFY_EMAIL, user_id=user_id)
        user = self._store.get(found.user_id)
        if found.email.lower() != user.email.lower():
            raise InvalidCode("the account's e-mail address changed after this link was sent")
        if not self._store.use_code(found.code_hash, self._clock.now()):
            raise InvalidCode("it was already used")
        updated = replace(user, verified=True, updated_at=self._clock.now())
        self._store.update(updated)
        return updated

    def request_password_reset(self, email: str) -> None:
        """Mail a reset link when the address belongs to an enabled user.

        The caller learns nothing: the answer is the same for every address, and it never comes sooner
        than ``reset_request_floor_seconds``, so timing does not tell a known address from an unknown one.
        """
        started = time.monotonic()
        try:
            user = self._store.find_by_email(email.strip()) if "@" in email else None
            if user is not None and user.enabled:
                self._send_reset_link(user)
        finally:
            remaining = self._policy.reset_request_floor_seconds - (time.monotonic() - started)
            if remaining > 0:
                self._sleep(remaining)

    def check_reset_code(self, code: str) -> User:
        """The user a reset link belongs to, so a form can greet them; the code stays unused."""
        return self._store.get(self._valid_code(code, CodePurpose.RESET_PASSWORD).user_id)

    def reset_password(self, code: str, new_password: str, *, user_id: str | None = None,
                       revoke_tokens: bool = False) -> User:
        """Set a new password with a reset link's code; every other reset link of the user stops working,
        every session of the user ends, and with ``revoke_tokens`` every API token too (someone who knew the
        old password may have made one). The login counters of the account are reset: the owner proved
        who they are."""
        self._check_password(new_password)
        found = self._valid_code(code, CodePurpose.RESET_PASSWORD, user_id=user_id)
        user = self._store.get(found.user_id)
        if not user.enabled:
            raise InvalidCode("the account is disabled")
        if not self._store.use_code(found.code_hash, self._clock.now()):
            raise InvalidCode("it was already used")
        self._store.invalidate_codes(user.id, CodePurpose.RESET_PASSWORD, self._clock.now())
        # The mail went to this address, so following the link also proves the address.
        if not user.verified and found.email.lower() == user.email.lower():
            user = replace(user, verified=True, updated_at=self._clock.now())
            self._store.update(user)
        self._set_password(user, new_password)
        now = self._clock.now()
        self._sessions.revoke_for_user(user.id, now)
        if revoke_tokens:
            self._tokens.revoke_all(user.id, now)
        self._throttle.clear_account(user.email)
        return user

    # --- authentication -------------------------------------------------------------------------

    def authenticate(self, email: str, password: str, *, client: str = "") -> Session:
        """Check a login from the client address ``client``.

        Unknown address, wrong password and disabled account give the same error, and are counted the same
        way: per (address typed, client) and per client across addresses. After ``login_max_failures``
        failures of a counter (ten times that for the per-client one) each attempt waits longer (doubling, at
        most 15 min) and gets AccountLocked, whatever the password. The owner logging in from elsewhere has
        counters of their own, so an attacker cannot lock them out.
        """
        now = self._clock.now()
        account = ThrottleKey.of(email, client)
        from_client = ThrottleKey(ANY_ACCOUNT, account.client)
        locked_until = self._throttle.locked_until([account, from_client], now)
        if locked_until is not None:
            raise AccountLocked((locked_until - now).total_seconds())
        user = self._store.find_by_email(email.strip()) if "@" in email else None
        stored = self._store.password_hash(user.id) if user is not None else None
        # A dummy check when there is no hash: an unknown address takes as long as a wrong password.
        matches = self._hasher.verify(stored or self._dummy(), password) and stored is not None
        if user is None or not matches or not user.enabled:
            self._record_failure(account, from_client, now)
            raise AuthenticationFailed()
        if not user.verified:
            raise EmailNotVerified()
        if stored is not None and self._hasher.needs_rehash(stored):
            self._store.set_password_hash(user.id, self._hasher.hash(password), now)
        self._throttle.clear(account)  # not the per-client counter: one good login must not hide many bad
        return Session(user=user, subject=self.subject_of(user))

    def log_in(self, email: str, password: str, *, client: str = "") -> Session:
        """``authenticate`` and start a web session; the result's ``key`` goes into the cookie."""
        session = self.authenticate(email, password, client=client)
        now = self._clock.now()
        key = secrets.token_urlsafe(32)  # 256 bits; only its hash is stored
        self._sessions.purge(now)
        self._sessions.add(LoginSession(key_hash=hash_code(key), user_id=session.user.id, created_at=now,
                                        expires_at=now + timedelta(hours=self._policy.session_hours)))
        return replace(session, key=key)

    def session_by_key(self, key: str) -> Session | None:
        """The session a cookie's key stands for, while it is neither revoked nor expired and its user is
        enabled."""
        if not key or len(key) > 200:
            return None
        found = self._sessions.find(hash_code(key))
        if found is None or not found.valid(self._clock.now()):
            return None
        session = self.session(found.user_id)
        return None if session is None else replace(session, key=key)

    def log_out(self, key: str) -> None:
        """End the web session with this key (a copy of its cookie stops working too)."""
        if key and len(key) <= 200:
            self._sessions.revoke(hash_code(key), self._clock.now())

    def subject_of(self, user: User) -> Subject:
        return user.subject(self._store.roles())

    def session(self, user_id: str) -> Session | None:
        """The session of a still enabled user (web sessions re-check this per request)."""
        try:
            user = self._store.get(user_id)
        except LookupError:
            return None
        return Session(user=user, subject=self.subject_of(user)) if user.enabled else None

    # --- internals ------------------------------------------------------------------------------

    def _create(self, profile: Profile, *, password: str | None, roles: Sequence[str], verified: bool,
                notify_user: bool, self_registered: bool) -> User:
        if password is not None:
            self._check_password(password)
        self._check_roles(roles)
        now = self._clock.now()
        user = User(id=uuid.uuid4().hex, profile=profile, verified=verified, roles=tuple(dict.fromkeys(roles)),
                    created_at=now, updated_at=now)
        self._store.add(user, self._hasher.hash(password) if password is not None else None)
        try:
            self._events.publish(UserCreated(user_id=user.id, email=user.email, notify_user=notify_user,
                                             self_registered=self_registered))
        except Exception:
            # The verification mail could not be queued: do not leave an account nobody can verify.
            self._store.remove(user.id)
            raise
        return user

    def _on_user_created(self, event: UserCreated) -> None:
        if event.notify_user:
            user = self._store.get(event.user_id)
            if not user.verified:
                name = "registration_confirmation" if event.self_registered else "email_verification"
                self._send_verification(user, name)

    def _on_email_changed(self, event: EmailChanged) -> None:
        if event.notify_user:
            self._send_verification(self._store.get(event.user_id), "email_verification")

    def _send_verification(self, user: User, template: str, *, replace_older: bool = False,
                           action: str | None = None) -> Queued:
        return self._send_code_mail(user, template, CodePurpose.VERIFY_EMAIL, "confirm-email",
                                    hours=self._policy.verification_code_hours, replace_older=replace_older,
                                    action=action)

    def _send_reset_link(self, user: User) -> Queued:
        return self._send_code_mail(user, "password_reset", CodePurpose.RESET_PASSWORD, "reset-password",
                                    hours=self._policy.reset_code_hours)

    def _send_code_mail(self, user: User, template: str, purpose: CodePurpose, path: str, *, hours: float,
                        replace_older: bool = False, action: str | None = None) -> Queued:
        """Mail a link with a fresh code, at most once per user, action (the template's name unless given)
        and address within ACCOUNT_MAIL_REPEAT_WINDOW (the queue's idempotency key decides, also between
        racing requests).

        A repeat queues nothing, and its code, never mailed, is used up at once; the earlier mail's link
        keeps working. With ``replace_older`` a mail that did go out makes every older link of the purpose
        stop working.
        """
        code = self._new_code(user, purpose, hours=hours)
        # Per address too: a change of address within the window still mails the new one. Hashed: an address
        # may be long, and the key table needs no copy of it.
        name = f"{ACCOUNT_SET}/{action or template}/{user.id}/{hash_code(user.email.lower())[:16]}"
        # The mails differ by their codes: the request the key stands for is the workflow, not the content.
        key = IdempotencyKey(name, window=ACCOUNT_MAIL_REPEAT_WINDOW, request=name)
        queued = self._queue_account_mail(user, template, idempotency_key=key,
                                          confirm_url=self._policy.link(path, code))
        now = self._clock.now()
        if not queued.new:
            self._store.use_code(hash_code(code), now)
        elif replace_older:
            self._store.invalidate_codes(user.id, purpose, now, keep=hash_code(code))
        return queued

    def _send_account_mail(self, user: User, template: str) -> str:
        return self._queue_account_mail(user, template).mail_id

    def _queue_account_mail(self, user: User, template: str, *, idempotency_key: IdempotencyKey | None = None,
                            confirm_url: str | None = None) -> Queued:
        model = user.model(application_name=self._policy.application_name)
        if confirm_url is not None:
            model["confirm_url"] = confirm_url
        # Confidential, every one of them: a reset or verification link read from the log lets a mail
        # operator take over the account, and the others say what happened to an account.
        return self._templates.queue_template_mail(
            SYSTEM, to=user.email, set_id=ACCOUNT_SET, name=template, model=model,
            language=user.profile.preferred_language, priority=Priority.HIGH, tags=("account", template),
            correlation_id=user.id, confidential=True, idempotency_key=idempotency_key)

    def _new_code(self, user: User, purpose: CodePurpose, *, hours: float) -> str:
        code = secrets.token_urlsafe(32)  # 256 bits; only its hash is stored
        now = self._clock.now()
        self._store.add_code(OneTimeCode(code_hash=hash_code(code), user_id=user.id, purpose=purpose,
                                         email=user.email, created_at=now, expires_at=now + timedelta(hours=hours)))
        return code

    def _valid_code(self, code: str, purpose: CodePurpose, *, user_id: str | None = None) -> OneTimeCode:
        found = self._store.find_code(hash_code(code.strip())) if code and len(code) <= 200 else None
        if found is None or found.purpose is not purpose:
            raise InvalidCode("it is unknown; copy the whole link from the mail")
        if user_id is not None and found.user_id != user_id:
            raise InvalidCode("it was sent to another account")
        if found.used_at is not None:
            raise InvalidCode("it was already used")
        if found.expires_at <= self._clock.now():
            raise InvalidCode("it has expired; ask for a new one")
        return found

    def _set_password(self, user: User, new_password: str) -> None:
        """Store the new hash and send the notice; the caller has checked the password."""
        self._store.set_password_hash(user.id, self._hasher.hash(new_password), self._clock.now())
        self._send_account_mail(user, "password_changed")

    def _record_failure(self, account: ThrottleKey, from_client: ThrottleKey, now: datetime) -> None:
        limits = ((account, self._policy.login_max_failures),
                  (from_client, self._policy.login_max_failures * CLIENT_FAILURE_FACTOR))
        for key, max_failures in limits:
            failures = self._throttle.record_failure(key, now, forget_before=now - FORGET_FAILURES_AFTER)
            delay = lockout_seconds(failures, max_failures=max_failures,
                                    base_seconds=self._policy.login_lockout_base_seconds)
            if delay is not None:
                self._throttle.lock(key, now + timedelta(seconds=delay))

    def _check_password(self, password: str) -> None:
        if len(password) < self._policy.min_password_length:
            raise WeakPassword(self._policy.min_password_length)
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidInput(f"the password is longer than {MAX_PASSWORD_LENGTH} characters", field="password")

    def _check_roles(self, roles: Iterable[str]) -> None:
        known = {role.id for role in self._store.roles()}
        unknown = sorted(set(roles) - known)
        if unknown:
            raise InvalidInput(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                               field="roles")

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash
