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

Every message is a :class:`Text`: an English template with ``{named}`` fields, and their values. ``str()``
gives the English; an edge that speaks another language looks the template up as its message id (the web UI
in its gettext catalogs) and fills in the same values. The core knows no language but English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Text:
    """Words for people: an English ``template`` with ``{named}`` fields (``str.format`` syntax) and their
    ``params``. A param may itself be a Text (a reason inside a message); edges translate both."""

    __slots__ = ("params", "template")

    def __init__(self, template: str, params: Mapping[str, object] | None = None) -> None:
        self.template = template
        self.params: dict[str, object] = dict(params or {})

    def __str__(self) -> str:
        return self.render(lambda template: template)

    def __repr__(self) -> str:
        return f"Text({self.template!r}, {self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Text) and (self.template, self.params) == (other.template, other.params)

    def __hash__(self) -> int:
        return hash(self.template)

    def render(self, translate: Any) -> str:
        """The text with ``translate`` (template → template) applied to it and to every Text among its
        params; a translation that does not fit the params falls back to the English template."""
        values = {name: value.render(translate) if isinstance(value, Text) else value
                  for name, value in self.params.items()}
        translated = translate(self.template)
        if not values:
            return str(translated)
        try:
            return str(translated).format_map(values)
        except (KeyError, IndexError, ValueError, AttributeError):
            return self.template.format_map(values)

    def to_json(self) -> dict[str, Any]:
        """For a process boundary: params that are not texts, numbers or Texts travel as their ``str``."""
        return {"template": self.template,
                "params": {name: value.to_json() if isinstance(value, Text)
                           else value if isinstance(value, str | int | float | bool) or value is None
                           else str(value) for name, value in self.params.items()}}

    @classmethod
    def from_json(cls, data: object) -> Text:
        if not isinstance(data, dict):
            return cls(str(data))
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        assert isinstance(params, dict)
        return cls(str(data.get("template", "")),
                   {str(name): cls.from_json(value) if isinstance(value, dict) else value
                    for name, value in params.items()})


def text(message: str | Text, params: Mapping[str, object] | None = None) -> Text:
    return message if isinstance(message, Text) else Text(message, params)


def english(message: Text | None) -> str | None:
    """The English of a message that may be absent: what the API, the CLI and searches keep."""
    return None if message is None else str(message)


class MailroomError(Exception):
    """Root of every error mailroom raises on purpose. ``text`` keeps the message as template and params,
    for the edges to translate; ``str()`` is the English."""

    def __init__(self, message: str | Text = "", params: Mapping[str, object] | None = None) -> None:
        self.text = text(message, params)
        super().__init__(str(self.text))

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other arguments than ``args`` holds: rebuild from the attributes instead (a
        # worker's storage process sends its errors back pickled).
        return _rebuilt, (type(self), self.__dict__)


class InvalidInput(MailroomError, ValueError):
    """Data given to a use case is invalid; nothing was stored."""

    def __init__(self, message: str | Text, params: Mapping[str, object] | None = None, *,
                 field: str | None = None) -> None:
        super().__init__(message, params)
        self.field = field


class InvalidAddress(InvalidInput):
    def __init__(self, address: str, reason: str | Text, *, field: str | None = None) -> None:
        if field:
            super().__init__("invalid e-mail address {address!r} in {field}: {reason}",
                             {"address": address, "field": field, "reason": text(reason)}, field=field)
        else:
            super().__init__("invalid e-mail address {address!r}: {reason}",
                             {"address": address, "reason": text(reason)})
        self.address = address
        self.reason = reason


class InvalidHeader(InvalidInput):
    def __init__(self, name: str, reason: str | Text, *, field: str | None = None) -> None:
        super().__init__("invalid header {name!r}: {reason}", {"name": name, "reason": text(reason)},
                         field=field or name)
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
            "attachment {filename!r} has {size} bytes, over the limit of {limit} bytes "
            "(raise MAILROOM_MAX_ATTACHMENT_BYTES or send a link instead)",
            {"filename": filename, "size": size, "limit": limit}, field="attachments",
        )
        self.filename = filename
        self.size = size
        self.limit = limit


class ConfigurationError(InvalidInput):
    """A setting has a value that cannot work; the message names the setting."""


class InvalidModel(InvalidInput):
    """The model for a template is not a JSON object, or misses variables the template declares."""

    def __init__(self, message: str | Text, params: Mapping[str, object] | None = None) -> None:
        super().__init__(message, params, field="model")


class TemplateSyntaxError(InvalidInput):
    def __init__(self, template: str, line: int | None, message: str | Text) -> None:
        if line:
            super().__init__("template {template!r} line {line}: {reason}",
                             {"template": template, "line": line, "reason": text(message)}, field="template")
        else:
            super().__init__("template {template!r}: {reason}", {"template": template, "reason": text(message)},
                             field="template")
        self.template = template
        self.line = line
        self.reason = message


class TemplateRenderError(InvalidInput):
    def __init__(self, template: str, message: str | Text) -> None:
        super().__init__("template {template!r} cannot be rendered: {reason}",
                         {"template": template, "reason": text(message)}, field="model")
        self.template = template
        self.reason = message


class SandboxViolation(TemplateRenderError):
    """A template tried to reach attributes or functions outside its model (e.g. ``__class__``)."""


class TemplateLimitExceeded(TemplateRenderError):
    """A render was stopped at one of its limits (CPU time, memory, size, recursion)."""


class TemplateTooSlow(TemplateLimitExceeded):
    def __init__(self, template: str, cpu_seconds: float) -> None:
        super().__init__(template, Text("the template used more than {seconds:g} s of CPU (a runaway loop?)",
                                        {"seconds": cpu_seconds}))
        self.cpu_seconds = cpu_seconds


class TemplateTooLarge(TemplateLimitExceeded):
    """Over the memory limit, or a text or number far larger than any mail needs."""


class TemplateRecursion(TemplateLimitExceeded):
    """A template that includes, extends or calls itself, or nests blocks or brackets too deeply."""


class SecretVariableExposed(InvalidInput):
    """A secret variable (a reset or confirmation link) is where a mail client loads it without a click:
    an image, a stylesheet, a frame. Loading it would hand the code to that host."""

    def __init__(self, template: str, variable: str, where: str, line: int | None) -> None:
        at = Text(" line {line}", {"line": line}) if line else ""
        super().__init__(
            "template {template!r}{at}: {{{{ {variable} }}}} is secret and may not be in {where}: a mail "
            "client may load that without a click and hand the code to another host; use it only in a link "
            "(<a href>) or as text", {"template": template, "at": at, "variable": variable, "where": where},
            field="html")
        self.template = template
        self.variable = variable
        self.where = where
        self.line = line


class DuplicateEmail(InvalidInput):
    def __init__(self, email: str) -> None:
        super().__init__("a user with the e-mail address {email!r} already exists", {"email": email}, field="email")


class WeakPassword(InvalidInput):
    def __init__(self, minimum: int) -> None:
        super().__init__("the password is too short: use at least {minimum} characters", {"minimum": minimum},
                         field="password")


class InvalidCode(InvalidInput):
    """The code of a confirmation or reset link cannot be used; the message says why."""

    def __init__(self, reason: str | Text) -> None:
        super().__init__("this link cannot be used: {reason}", {"reason": text(reason)}, field="code")
        self.reason = reason


class IdempotencyConflict(InvalidInput):
    """An idempotency key came again with a different mail while it still names the first one. Queuing
    the new mail would go against the key; answering with the old id would drop it silently."""

    def __init__(self, key: str, mail_id: str) -> None:
        super().__init__("the idempotency key {key!r} was used for a different mail ({mail_id}) in its window: "
                         "use a new key for a new mail, or send exactly the same mail to get its id again",
                         {"key": key, "mail_id": mail_id}, field="idempotency_key")
        self.key = key
        self.mail_id = mail_id


class NotFound(MailroomError, LookupError):
    pass


class UserNotFound(NotFound):
    def __init__(self, user: str) -> None:
        super().__init__("no user {user!r}", {"user": user})


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__("no active API token {token_id!r}", {"token_id": token_id})


class MailNotFound(NotFound):
    def __init__(self, mail_id: str) -> None:
        super().__init__("no mail with id {mail_id!r} (it may have been deleted by retention)", {"mail_id": mail_id})
        self.mail_id = mail_id


class ServerNotFound(NotFound):
    def __init__(self, name_or_id: str) -> None:
        super().__init__("no SMTP server named or with id {name_or_id!r} (see `mailroom smtp list`)",
                         {"name_or_id": name_or_id})
        self.name_or_id = name_or_id


class TemplateSetNotFound(NotFound):
    def __init__(self, set_id: str) -> None:
        super().__init__("no template set {set_id!r} (see `mailroom templates list`)", {"set_id": set_id})
        self.set_id = set_id


class TemplateNotFound(NotFound):
    def __init__(self, set_id: str, name: str, locale: str | None = None) -> None:
        if locale:
            super().__init__("no template {name!r} in locale {locale!r} in set {set_id!r}",
                             {"name": name, "locale": locale, "set_id": set_id})
        else:
            super().__init__("no template {name!r} in set {set_id!r}", {"name": name, "set_id": set_id})
        self.set_id = set_id
        self.name = name
        self.locale = locale


class PermissionDenied(MailroomError, PermissionError):
    def __init__(self, permission: str, user_id: str | None) -> None:
        if user_id:
            super().__init__("user {user_id!r} lacks the permission {permission!r}",
                             {"user_id": user_id, "permission": permission})
        else:
            super().__init__("an anonymous subject lacks the permission {permission!r}", {"permission": permission})
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
        MailroomError.__init__(self, "the content of confidential mail {mail_id!r} is hidden: it holds a "
                                     "secret for its recipient only; its log entry shows everything else",
                               {"mail_id": mail_id})
        self.mail_id = mail_id
        self.permission = "read confidential content"
        self.user_id = None


class AuthenticationFailed(MailroomError):
    def __init__(self, message: str | Text = "wrong e-mail address or password") -> None:
        super().__init__(message)


class EmailNotVerified(AuthenticationFailed):
    """The password is right but the address is not confirmed. A confirmation mail may never have been sent
    (an administrator created the account without one), so the message does not claim that it was."""

    def __init__(self) -> None:
        super().__init__("confirm your e-mail address first: follow the link in the confirmation mail if you got "
                         "one; if not, ask an administrator to mark your address verified or to send a new link")


class AccountLocked(AuthenticationFailed):
    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(Text("too many failed logins: try again in {seconds} s",
                              {"seconds": max(1, round(retry_after_seconds))}))
        self.retry_after_seconds = retry_after_seconds


class RateLimited(MailroomError):
    """Too many registrations or reset requests for one address or from one client; nothing was sent."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("too many requests: try again in {seconds} s", {"seconds": max(1, round(retry_after_seconds))})
        self.retry_after_seconds = retry_after_seconds


class InvalidTransition(MailroomError):
    """The mail is not in a status that allows the operation.

    ``allowed`` names the mails that do, ``done`` the operation as a participle: "only failed, cancelled or
    deferred mails can be retried".
    """

    def __init__(self, mail_id: str, status: str | Text, operation: str | Text, allowed: str | Text,
                 done: str | Text) -> None:
        super().__init__("cannot {operation} mail {mail_id!r}: it is {status}, and only {allowed} can be {done}",
                         {"operation": text(operation), "mail_id": mail_id, "status": text(status),
                          "allowed": text(allowed), "done": text(done)})
        self.mail_id = mail_id
        self.status = status
        self.operation = operation


class ConfidentialContentGone(InvalidTransition):
    """A confidential mail's content is dropped when the mail ends, so it cannot be sent again."""

    def __init__(self, mail_id: str, status: str) -> None:
        MailroomError.__init__(self, "cannot retry mail {mail_id!r}: it is {status} and confidential, and its "
                                     "content was dropped when it ended; send it again as a new mail (e.g. ask "
                                     "for a new password-reset or verification link)",
                               {"mail_id": mail_id, "status": text(status)})
        self.mail_id = mail_id
        self.status = status
        self.operation = "retry"


class SecretError(MailroomError):
    pass


class StorageError(MailroomError):
    """The database refused or is unreachable. The message never holds SQL or parameters; ``error_id`` is
    the key under which the server log keeps the detail."""

    def __init__(self, message: str | Text, params: Mapping[str, object] | None = None, *,
                 error_id: str | None = None) -> None:
        super().__init__(message, params)
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

    def __init__(self, message: str | Text, params: Mapping[str, object] | None = None, *, code: int | None = None,
                 reply: str | None = None, server: str | None = None) -> None:
        super().__init__(message, params)
        self.code = code
        self.reply = reply
        self.server = server


class NoServerConfigured(DeliveryError):
    def __init__(self, hint: str | None = None) -> None:
        extra = Text(" (hint {hint!r})", {"hint": hint}) if hint else ""
        super().__init__(
            "no enabled SMTP server is configured{extra}: add or enable one (SMTP servers in the admin UI, or "
            "`mailroom smtp add`); queued mails are kept and go out once a server exists", {"extra": extra}
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


def _rebuilt(cls: type[MailroomError], state: dict[str, Any]) -> MailroomError:
    error = cls.__new__(cls)
    Exception.__init__(error, str(state["text"]))
    error.__dict__.update(state)
    return error
