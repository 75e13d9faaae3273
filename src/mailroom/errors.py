"""The one error tree of mailroom.

Every error that mailroom raises on purpose derives from :class:`MailroomError` and co-inherits the
builtin exception it resembles, so callers may catch either::

    MailroomError
    ├── InvalidInput (ValueError)             bad data given to a use case; nothing was stored
    │   ├── InvalidAddress                    an address that email-validator refuses
    │   ├── InvalidHeader                     a control character in header text, a reserved or malformed name
    │   ├── NoRecipients                      no To, Cc or Bcc
    │   ├── NoSenderAddress                   no From, and no enabled SMTP server has a sender address to use
    │   ├── AttachmentTooLarge                over ``max_attachment_bytes``
    │   ├── ConfigurationError                a setting with a value that cannot work
    │   ├── InvalidModel                      a template model that is not a JSON object / lacks variables
    │   ├── TemplateSyntaxError               a template that does not compile (with its line)
    │   ├── TemplateRenderError               a render that failed: undefined variable, sandbox, limits
    │   │   ├── SandboxViolation              a template reached for something outside its model
    │   │   └── TemplateLimitExceeded         a render went over a limit; the message names it
    │   │       ├── TemplateTooSlow           more CPU time than ``template_render_cpu_seconds``
    │   │       ├── TemplateTooLarge          more memory than ``template_render_memory_mb``, or a huge text
    │   │       └── TemplateRecursion         a template that includes or calls itself, or nests too deeply
    │   ├── SecretVariableExposed             a secret variable where a mail client loads it by itself
    │   ├── DuplicateEmail                    another user has this address
    │   ├── WeakPassword                      shorter than ``min_password_length``
    │   ├── InvalidCode                       a workflow code that is unknown, used, expired or not yours
    │   └── IdempotencyConflict               an idempotency key reused with a different mail in its window
    ├── NotFound (LookupError)
    │   ├── MailNotFound
    │   ├── ServerNotFound
    │   ├── TemplateSetNotFound
    │   ├── TemplateNotFound
    │   ├── UserNotFound
    │   └── TokenNotFound
    ├── PermissionDenied (PermissionError)    the subject lacks the permission the use case audits
    │   ├── RegistrationClosed                self-registration is switched off
    │   └── ConfidentialContent               the content of a confidential mail is never shown
    ├── AuthenticationFailed                  wrong e-mail or password (one message for both)
    │   ├── AccountLocked                     too many failures: try again after ``retry_after``
    │   └── EmailNotVerified                  the right password, but the address is not confirmed yet
    ├── RateLimited                           too many account requests (register, reset) from one place
    ├── InvalidTransition                     e.g. retrying a mail that is not failed
    │   └── ConfidentialContentGone           retrying a confidential mail whose content was dropped
    ├── SecretError                           a stored secret cannot be decrypted with the configured keys
    ├── StorageError                          the database refused or is unreachable
    │   └── StorageUnavailable                connection lost, database restarting, busy or full: try again
    └── DeliveryError                         one SMTP attempt failed (``code``/``reply`` when the server said so)
        ├── NoServerConfigured
        ├── SenderNotConfigured                  no From, and the delivering server has no sender address
        ├── SmtpConnectError (ConnectionError)   connecting, TLS or EHLO failed
        ├── SmtpAuthError                        the server refused the credentials
        ├── SmtpTimeout (TimeoutError)
        │   └── SmtpOutcomeUnknown               no answer after the whole message was sent: it may have arrived
        ├── SmtpDisconnected (ConnectionError)   the server dropped the connection mid-mail
        ├── SmtpTemporaryError                   a 4xx reply: try again later
        └── SmtpPermanentError                   a 5xx reply: do not try again

Messages never contain a password: adapters build them from server names, hosts and SMTP replies only.
"""

from __future__ import annotations

from collections.abc import Sequence


class MailroomError(Exception):
    """Root of every error mailroom raises on purpose."""


class InvalidInput(MailroomError, ValueError):
    """Data given to a use case is invalid; nothing was stored."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidAddress(InvalidInput):
    def __init__(self, address: str, reason: str, *, field: str | None = None) -> None:
        where = f" in {field}" if field else ""
        super().__init__(f"invalid e-mail address {address!r}{where}: {reason}", field=field)
        self.address = address
        self.reason = reason


class InvalidHeader(InvalidInput):
    def __init__(self, name: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"invalid header {name!r}: {reason}", field=field or name)
        self.name = name
        self.reason = reason


class NoRecipients(InvalidInput):
    def __init__(self) -> None:
        super().__init__("the mail has no recipient: give at least one address in to, cc or bcc", field="to")


class NoSenderAddress(InvalidInput):
    """A mail without a From while enabled SMTP servers exist but none has a sender address to put there:
    refused when it is sent, as it could only fail at delivery."""

    def __init__(self, servers: Sequence[str]) -> None:
        super().__init__(
            f"the mail has no From address, and no enabled SMTP server ({', '.join(servers)}) has a sender "
            "address to use instead: give the mail a sender, or set one on a server (SMTP servers in the admin "
            "UI, or `mailroom smtp update NAME --sender ADDRESS`)", field="sender")
        self.servers = tuple(servers)


class AttachmentTooLarge(InvalidInput):
    def __init__(self, filename: str, size: int, limit: int) -> None:
        super().__init__(
            f"attachment {filename!r} has {size} bytes, over the limit of {limit} bytes "
            "(raise MAILROOM_MAX_ATTACHMENT_BYTES or send a link instead)",
            field="attachments",
        )
        self.filename = filename
        self.size = size
        self.limit = limit


class ConfigurationError(InvalidInput):
    """A setting has a value that cannot work; the message names the setting."""


class InvalidModel(InvalidInput):
    """The model for a template is not a JSON object, or misses variables the template declares."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="model")


class TemplateSyntaxError(InvalidInput):
    def __init__(self, template: str, line: int | None, message: str) -> None:
        where = f" line {line}" if line else ""
        super().__init__(f"template {template!r}{where}: {message}", field="template")
        self.template = template
        self.line = line
        self.reason = message


class TemplateRenderError(InvalidInput):
    def __init__(self, template: str, message: str) -> None:
        super().__init__(f"template {template!r} cannot be rendered: {message}", field="model")
        self.template = template
        self.reason = message


class SandboxViolation(TemplateRenderError):
    """A template tried to reach attributes or functions outside its model (e.g. ``__class__``)."""


class TemplateLimitExceeded(TemplateRenderError):
    """A render was stopped at one of its limits (CPU time, memory, size, recursion)."""


class TemplateTooSlow(TemplateLimitExceeded):
    def __init__(self, template: str, cpu_seconds: float) -> None:
        super().__init__(template, f"the template used more than {cpu_seconds:g} s of CPU (a runaway loop?)")
        self.cpu_seconds = cpu_seconds


class TemplateTooLarge(TemplateLimitExceeded):
    """Over the memory limit, or a text or number far larger than any mail needs."""


class TemplateRecursion(TemplateLimitExceeded):
    """A template that includes, extends or calls itself, or nests blocks or brackets too deeply."""


class SecretVariableExposed(InvalidInput):
    """A secret variable (a reset or confirmation link) is where a mail client loads it without a click:
    an image, a stylesheet, a frame. Loading it would hand the code to that host."""

    def __init__(self, template: str, variable: str, where: str, line: int | None) -> None:
        at = f" line {line}" if line else ""
        super().__init__(
            f"template {template!r}{at}: {{{{ {variable} }}}} is secret and may not be in {where}: a mail "
            "client may load that without a click and hand the code to another host; use it only in a link "
            "(<a href>) or as text", field="html")
        self.template = template
        self.variable = variable
        self.where = where
        self.line = line


class DuplicateEmail(InvalidInput):
    def __init__(self, email: str) -> None:
        super().__init__(f"a user with the e-mail address {email!r} already exists", field="email")


class WeakPassword(InvalidInput):
    def __init__(self, minimum: int) -> None:
        super().__init__(f"the password is too short: use at least {minimum} characters", field="password")


class InvalidCode(InvalidInput):
    """The code of a confirmation or reset link cannot be used; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"this link cannot be used: {reason}", field="code")
        self.reason = reason


class IdempotencyConflict(InvalidInput):
    """An idempotency key came again with a different mail while it still names the first one. Queuing
    the new mail would go against the key; answering with the old id would drop it silently."""

    def __init__(self, key: str, mail_id: str) -> None:
        super().__init__(f"the idempotency key {key!r} was used for a different mail ({mail_id}) in its window: "
                         "use a new key for a new mail, or send exactly the same mail to get its id again",
                         field="idempotency_key")
        self.key = key
        self.mail_id = mail_id


class NotFound(MailroomError, LookupError):
    pass


class UserNotFound(NotFound):
    def __init__(self, user: str) -> None:
        super().__init__(f"no user {user!r}")


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"no active API token {token_id!r}")


class MailNotFound(NotFound):
    def __init__(self, mail_id: str) -> None:
        super().__init__(f"no mail with id {mail_id!r} (it may have been deleted by retention)")
        self.mail_id = mail_id


class ServerNotFound(NotFound):
    def __init__(self, name_or_id: str) -> None:
        super().__init__(f"no SMTP server named or with id {name_or_id!r} (see `mailroom smtp list`)")
        self.name_or_id = name_or_id


class TemplateSetNotFound(NotFound):
    def __init__(self, set_id: str) -> None:
        super().__init__(f"no template set {set_id!r} (see `mailroom templates list`)")
        self.set_id = set_id


class TemplateNotFound(NotFound):
    def __init__(self, set_id: str, name: str, locale: str | None = None) -> None:
        where = f" in locale {locale!r}" if locale else ""
        super().__init__(f"no template {name!r}{where} in set {set_id!r}")
        self.set_id = set_id
        self.name = name
        self.locale = locale


class PermissionDenied(MailroomError, PermissionError):
    def __init__(self, permission: str, user_id: str | None) -> None:
        who = f"user {user_id!r}" if user_id else "an anonymous subject"
        super().__init__(f"{who} lacks the permission {permission!r}")
        self.permission = permission
        self.user_id = user_id


class RegistrationClosed(PermissionDenied):
    def __init__(self) -> None:
        MailroomError.__init__(self, "self-registration is switched off: ask an administrator for an account")
        self.permission = "registration"
        self.user_id = None


class ConfidentialContent(PermissionDenied):
    """The content of a confidential mail (an account mail with a one-time code) is never shown, downloaded
    or searched, whatever the caller's permissions: whoever reads it could take over the account."""

    def __init__(self, mail_id: str) -> None:
        MailroomError.__init__(self, f"the content of confidential mail {mail_id!r} is hidden: it holds a "
                                     "secret for its recipient only; its log entry shows everything else")
        self.mail_id = mail_id
        self.permission = "read confidential content"
        self.user_id = None


class AuthenticationFailed(MailroomError):
    def __init__(self, message: str = "wrong e-mail address or password") -> None:
        super().__init__(message)


class EmailNotVerified(AuthenticationFailed):
    """The password is right but the address is not confirmed. A confirmation mail may never have been sent
    (an administrator created the account without one), so the message does not claim that it was."""

    def __init__(self) -> None:
        super().__init__("confirm your e-mail address first: follow the link in the confirmation mail if you got "
                         "one; if not, ask an administrator to mark your address verified or to send a new link")


class AccountLocked(AuthenticationFailed):
    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"too many failed logins: try again in {max(1, round(retry_after_seconds))} s")
        self.retry_after_seconds = retry_after_seconds


class RateLimited(MailroomError):
    """Too many registrations or reset requests for one address or from one client; nothing was sent."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"too many requests: try again in {max(1, round(retry_after_seconds))} s")
        self.retry_after_seconds = retry_after_seconds


class InvalidTransition(MailroomError):
    """The mail is not in a status that allows the operation.

    ``allowed`` names the mails that do, ``done`` the operation as a participle: "only failed, cancelled or
    deferred mails can be retried".
    """

    def __init__(self, mail_id: str, status: str, operation: str, allowed: str, done: str) -> None:
        super().__init__(f"cannot {operation} mail {mail_id!r}: it is {status}, and only {allowed} can be {done}")
        self.mail_id = mail_id
        self.status = status
        self.operation = operation


class ConfidentialContentGone(InvalidTransition):
    """A confidential mail's content is dropped when the mail ends, so it cannot be sent again."""

    def __init__(self, mail_id: str, status: str) -> None:
        MailroomError.__init__(self, f"cannot retry mail {mail_id!r}: it is {status} and confidential, and its "
                                     "content was dropped when it ended; send it again as a new mail (e.g. ask "
                                     "for a new password-reset or verification link)")
        self.mail_id = mail_id
        self.status = status
        self.operation = "retry"


class SecretError(MailroomError):
    pass


class StorageError(MailroomError):
    """The database refused or is unreachable. The message never holds SQL or parameters; ``error_id`` is
    the key under which the server log keeps the detail."""

    def __init__(self, message: str, *, error_id: str | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id


class StorageUnavailable(StorageError):
    """A transient database failure: the same call may succeed in a moment (the worker retries it)."""


class DeliveryError(MailroomError):
    """One SMTP attempt failed.

    ``temporary`` tells whether trying again later may succeed; ``try_next_server`` whether another
    server may do better at once (connection and login failures, not a refused recipient).
    """

    temporary: bool = True
    try_next_server: bool = False
    uncertain: bool = False
    """Whether the server may have taken the mail although the attempt failed (silence after DATA)."""

    def __init__(self, message: str, *, code: int | None = None, reply: str | None = None,
                 server: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply
        self.server = server


class NoServerConfigured(DeliveryError):
    def __init__(self, hint: str | None = None) -> None:
        extra = f" (hint {hint!r})" if hint else ""
        super().__init__(
            f"no enabled SMTP server is configured{extra}: add or enable one (SMTP servers in the admin UI, or "
            "`mailroom smtp add`); queued mails are kept and go out once a server exists"
        )


class SenderNotConfigured(DeliveryError):
    """The mail has no From and the server chosen to deliver it no sender address: the configuration
    changed after the mail was queued (or it was queued while no server existed). Nothing was sent."""

    temporary = False

    def __init__(self, server: str) -> None:
        super().__init__(
            f"configuration error, nothing was sent: the mail has no From address and SMTP server {server!r} has "
            f"no sender address to use instead; set one (SMTP servers in the admin UI, or `mailroom smtp update "
            f"{server} --sender ADDRESS`), then retry the mail", server=server)


class SmtpConnectError(DeliveryError, ConnectionError):
    try_next_server = True


class SmtpAuthError(DeliveryError):
    try_next_server = True


class SmtpTimeout(DeliveryError, TimeoutError):
    pass


class SmtpOutcomeUnknown(SmtpTimeout):
    """The server went silent after the end of DATA: it may have taken the mail or not."""

    uncertain = True


class SmtpDisconnected(DeliveryError, ConnectionError):
    pass


class SmtpTemporaryError(DeliveryError):
    pass


class SmtpPermanentError(DeliveryError):
    temporary = False
