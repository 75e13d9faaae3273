"""The bodies the JSON API reads and writes, and what its routes share (the caller, the error answers).

Request models forbid unknown fields, so a misspelt field (``"bcc "``, ``"html_body"``) is a 422 naming
it rather than a mail silently sent without it. Response models are built from the domain objects by
their ``of`` class methods; none of them has a field that could carry a password.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from mailroom.domain.addresses import header_text_problem
from mailroom.domain.log import MAX_PAGE_SIZE, LogQuery, SortKey
from mailroom.domain.log_search import parse_search
from mailroom.domain.mail import Priority
from mailroom.domain.outbox import (
    DeliveryAttempt,
    MailStatus,
    OutgoingMail,
    RecipientKind,
    RecipientResult,
    RecipientStatus,
)
from mailroom.domain.permissions import Subject
from mailroom.domain.servers import Security, SmtpServer
from mailroom.domain.templates import RenderedTemplate, Template, TemplateKind, TemplateSet
from mailroom.domain.users import ApiToken
from mailroom.ports import ProbeStep
from mailroom.web.context import csrf_header, login, subject

# --- what the routes share ---------------------------------------------------------------------------

Caller = Annotated[Subject, Depends(subject)]
"""The logged-in subject (API token or session cookie); each use case checks its permission itself."""

# Login first, so an anonymous call is told 401 "log in" rather than 403 "missing CSRF token".
STATE_CHANGING = [Depends(login), Depends(csrf_header)]

# Only declares the scheme in the OpenAPI document (and the docs page's "Authorize" button):
# ``context.current`` reads the header itself, and the session cookie works as well.
API_TOKEN = Depends(HTTPBearer(auto_error=False, scheme_name="api_token",
                               description="An API token (`mrt_...`) from the account page or `POST /tokens`."))


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    code: str = Field(description="Stable, snake case: `invalid_input`, `mail_not_found`, `permission_denied`...")
    message: str = Field(description="For people; may change between versions.")
    field: str | None = Field(default=None, description="The request field at fault, when one is.")
    error_id: str | None = Field(default=None, description="For database and unexpected errors: the id under "
                                                           "which the server log keeps the detail.")


_ERROR_MEANINGS = {
    400: "The body is not JSON in UTF-8.",
    401: "Not logged in, or the API token is unknown or revoked.",
    403: "The caller lacks the permission, or a cookie-authenticated call lacks the X-CSRF-Token header.",
    404: "No such object.",
    409: "The object's status does not allow this operation.",
    422: "Invalid input; `field` names the culprit.",
}


def errors(*statuses: int, takes_input: bool = True) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route: 401 and 403 always, 422 when it ``takes_input``, plus
    ``statuses``. (Declaring 422 also keeps FastAPI from documenting its own, differently shaped one.)"""
    always = {401, 403, 422} if takes_input else {401, 403}
    return {status: {"model": ErrorBody, "description": _ERROR_MEANINGS[status]}
            for status in sorted(always | set(statuses))}


# --- value types -------------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    problem = header_text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# The domain's own check (control and separator characters); run here as well so the error names the exact
# field (``attachments.0.filename``) instead of the domain's description of it. The pattern tells clients.
_ONE_LINE_SCHEMA = Field(json_schema_extra={
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]*$"})
OneLine = Annotated[str, AfterValidator(_one_line), _ONE_LINE_SCHEMA]
# Lengths of the database columns these end up in: longer values would be refused by PostgreSQL.
ShortLine = Annotated[str, StringConstraints(max_length=255), AfterValidator(_one_line), _ONE_LINE_SCHEMA]
AddressLine = Annotated[str, StringConstraints(max_length=320), AfterValidator(_one_line), _ONE_LINE_SCHEMA]


_NOT_A_MOMENT = "expected an ISO 8601 date and time with offset, e.g. 2030-01-31T08:00:00+01:00"


def _iso_8601(value: object) -> object:
    # Pydantic would also read a number ("0.5") as seconds since 1970; a moment here is ISO 8601 only.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(_NOT_A_MOMENT)
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(_NOT_A_MOMENT) from exc


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00-05:00 is past the last representable moment
        raise ValueError("the moment lies outside the years 1 to 9999 in UTC") from exc


Moment = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]
"""A point in time with its offset (``2030-01-31T08:00:00+01:00``), normalised to UTC."""

# A list longer than this is a mailing list, not a mail (and recipients are numbered in a small integer).
MAX_ADDRESSES = 1000
Addresses = Annotated[list[OneLine], Field(max_length=MAX_ADDRESSES,
                                           description="Addresses, each `a@example.org` or `Ann <a@example.org>`.")]
Tags = Annotated[list[OneLine], Field(description="Labels to find the mail by; 1-100 characters, no comma.")]


def unstorable_text(value: object) -> tuple[str, str] | None:
    """Where (a dotted path inside ``value``, ``""`` for itself) and why ``value`` cannot be stored, or None.

    JSON may carry an unpaired surrogate (``"\\ud800"``), which no UTF-8 database or mail can hold, and
    NUL, which PostgreSQL refuses in text and RFC 5322 in messages. Refused at the door, they are a 422
    naming the field instead of a 500 from deep inside the storage or the MIME builder.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        if "\x00" in value:
            return "", "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "", "must be valid Unicode (it contains an unpaired surrogate)"
        return None
    children: list[tuple[str, object]] = []
    if isinstance(value, dict):
        children = [(key, key) for key in value] + [(key, item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        children = [(str(index), item) for index, item in enumerate(value)]
    for name, child in children:
        found = unstorable_text(child)
        if found is not None:
            # The name itself may be the culprit: escaped, so the error answer can be encoded.
            printable = str(name).encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
            return ".".join(filter(None, (printable, found[0]))), found[1]
    return None


class StorableText(BaseModel):
    """Refuses text that cannot be stored, in any field (nested models check their own fields)."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: object) -> object:
        found = unstorable_text(value)
        if found is not None:
            where, reason = found
            raise ValueError(f"at {where}: {reason}" if where else reason)
        return value


def _storable_key(value: str) -> str:
    found = unstorable_text(value)
    if found is not None:
        raise ValueError(found[1])
    return value


Key = Annotated[str, AfterValidator(_storable_key)]
"""A path parameter (an id, a name): NUL would make PostgreSQL refuse the lookup with an error, not a miss."""
LocaleKey = Annotated[str, StringConstraints(max_length=35), AfterValidator(_storable_key)]
"""A locale in a path; 35 characters as in the database (BCP 47 tags in practice stay far below)."""


class RequestModel(StorableText):
    model_config = ConfigDict(extra="forbid")


# --- mails -------------------------------------------------------------------------------------------


class AttachmentIn(RequestModel):
    """A file sent with the mail; `inline` with a `content_id` for an image the HTML shows as `cid:...`."""

    filename: OneLine
    content_base64: str = Field(description="The file's bytes in standard base64; line breaks are ignored.")
    content_type: OneLine = Field(default="", description="Guessed from the file name when empty.")
    inline: bool = False
    content_id: OneLine | None = None


class SendMailRequest(RequestModel):
    """One mail to queue. It needs a recipient (to, cc or bcc) and a body (text, html or both)."""

    to: Addresses = []
    cc: Addresses = []
    bcc: Addresses = []
    sender: OneLine | None = Field(default=None, description="The From address; the SMTP server's when missing.")
    reply_to: Addresses = []
    subject: OneLine = ""
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentIn] = []
    headers: dict[str, OneLine] = Field(default={}, description="Extra headers (not From, To, Subject, ...).")
    smtp_hint: ShortLine | None = Field(default=None, description="Name or id of the SMTP server to try first.")
    priority: Priority = Priority.NORMAL
    send_at: Moment | None = Field(default=None, description="Not before this moment.")
    expires_at: Moment | None = Field(default=None, description="Fail the mail when still undelivered then.")
    tags: Tags = []
    correlation_id: ShortLine | None = None
    confidential: bool = Field(default=False, description="The content holds a secret for the recipients only "
                               "(a login or reset link): stored encrypted, never shown, downloaded or searched, "
                               "and dropped once the mail is sent, failed or cancelled.")


class SendTemplateMailRequest(RequestModel):
    """A mail rendered from a template when it is queued; the log records the template and locale used."""

    to: Addresses = []
    cc: Addresses = []
    bcc: Addresses = []
    sender: OneLine | None = None
    reply_to: Addresses = []
    set_id: str
    name: str
    language: str | None = Field(default=None, description="Wanted locale (`de-CH`); negotiated against the "
                                                            "set's locales, falling back to its default.")
    model: dict[str, Any] = Field(default={}, description="The template's variables; a JSON object.")
    attachments: list[AttachmentIn] = []
    smtp_hint: ShortLine | None = None
    priority: Priority = Priority.NORMAL
    tags: Tags = []
    correlation_id: ShortLine | None = None
    confidential: bool = Field(default=False, description="The content holds a secret for the recipients only "
                               "(a login or reset link): stored encrypted, never shown, downloaded or searched, "
                               "and dropped once the mail is sent, failed or cancelled.")


class MailCreated(BaseModel):
    id: str


class StatusQuery(StorableText):
    """The mails whose statuses to tell. Unknown parameters are refused, as a misspelt ``ids`` would
    otherwise be an empty answer that looks like "no such mails"."""

    model_config = ConfigDict(extra="forbid")

    id: list[Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable_key)]] = Field(
        min_length=1, max_length=MAX_PAGE_SIZE,
        description=f"A mail id; repeat the parameter for more mails (at most {MAX_PAGE_SIZE}).")


class MailSearch(StorableText):
    """Filters of the mail log; they combine with AND."""

    q: str | None = Field(default=None, max_length=1000, description=(
        "The log's search syntax: plain words (subject or recipient) and to:, from:, subject:, status:, "
        "server:, tag:, before:, after: filters; quote values with spaces; '-' negates a filter."))
    status: list[MailStatus] = Field(default=[], description="Any of these statuses; repeat the parameter.")
    recipient: str | None = Field(default=None, description="Part of a recipient address.")
    text: str | None = Field(default=None, description="Part of the subject or of a recipient address.")
    subject: str | None = Field(default=None, description="Part of the subject.")
    server: str | None = Field(default=None, description="Name of the SMTP server that handled the mail.")
    tag: str | None = None
    correlation_id: str | None = None
    queued_after: Moment | None = None
    queued_before: Moment | None = None
    sort: SortKey = SortKey.QUEUED_AT
    descending: bool = True
    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)
    after: str | None = Field(default=None, max_length=2000, description=(
        "A page's `next_after`: the page right after it, in the same order (instead of an offset, which reads "
        "every mail before it)."))

    def to_query(self) -> LogQuery:
        structured = LogQuery(statuses=frozenset(self.status), recipient=self.recipient, text=self.text,
                        subject=self.subject, server=self.server, tag=self.tag, correlation_id=self.correlation_id,
                        queued_after=self.queued_after, queued_before=self.queued_before, sort=self.sort,
                        descending=self.descending, offset=self.offset, limit=self.limit, after=self.after)
        return parse_search(self.q, structured) if self.q else structured


class MailStatuses(BaseModel):
    """Where each asked-for mail stands."""

    statuses: dict[str, MailStatus] = Field(description=(
        "Mail id to status, for each asked-for mail that exists; ids of mails that do not exist (any more) are "
        "left out."))


class RecipientOut(BaseModel):
    """An envelope recipient and what the SMTP server said of it at the last attempt."""

    email: str
    name: str
    kind: RecipientKind
    status: RecipientStatus
    code: int | None
    reply: str | None

    @classmethod
    def of(cls, recipient: RecipientResult) -> RecipientOut:
        return cls(email=recipient.email, name=recipient.name, kind=recipient.kind, status=recipient.status,
                   code=recipient.code, reply=recipient.reply)


class AttemptOut(BaseModel):
    """One try to hand the mail to an SMTP server."""

    number: int
    time: datetime
    server: str | None
    outcome: MailStatus
    code: int | None
    reply: str | None
    duration_ms: int
    uncertain: bool = Field(description="The server went silent after the whole message: it may have arrived.")

    @classmethod
    def of(cls, attempt: DeliveryAttempt) -> AttemptOut:
        return cls(number=attempt.number, time=attempt.started_at, server=attempt.server_name,
                   outcome=attempt.outcome, code=attempt.code, reply=attempt.reply, duration_ms=attempt.duration_ms,
                   uncertain=attempt.uncertain)


class MailSummary(BaseModel):
    """A mail as the log lists it."""

    id: str
    status: MailStatus
    subject: str
    sender: str | None
    recipients: list[RecipientOut]
    priority: Priority
    queued_at: datetime
    send_at: datetime | None
    expires_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    finished_at: datetime | None
    attempt_count: int
    last_error: str | None
    server: str | None = Field(description="The SMTP server that handled the mail last.")
    smtp_hint: str | None
    tags: list[str]
    correlation_id: str | None
    template: str | None = Field(description="`set_id/name` when rendered from a template.")
    locale: str | None = Field(description="The template locale actually used.")
    message_id: str
    size_bytes: int
    confidential: bool = Field(description="Its content is hidden: /raw answers 403; everything else shows.")

    @classmethod
    def fields_of(cls, mail: OutgoingMail) -> dict[str, Any]:
        return {
            "id": mail.id, "status": mail.status, "subject": mail.subject, "sender": mail.sender,
            "recipients": [RecipientOut.of(r) for r in mail.recipients], "priority": Priority(mail.priority),
            "queued_at": mail.queued_at, "send_at": mail.send_at, "expires_at": mail.expires_at,
            "next_attempt_at": mail.next_attempt_at, "sent_at": mail.sent_at, "finished_at": mail.finished_at,
            "attempt_count": mail.attempts, "last_error": mail.last_error, "server": mail.server_name,
            "smtp_hint": mail.smtp_hint, "tags": list(mail.tags), "correlation_id": mail.correlation_id,
            "template": mail.template, "locale": mail.locale, "message_id": mail.message_id,
            "size_bytes": mail.size_bytes, "confidential": mail.confidential,
        }

    @classmethod
    def of(cls, mail: OutgoingMail) -> MailSummary:
        return cls(**cls.fields_of(mail))


class MailDetail(MailSummary):
    """A mail with every attempt; `status` is what the UI polls until it is final."""

    attempts: list[AttemptOut]
    original_recipients: list[str] = Field(description="The recipients asked for, when staging redirected them.")
    has_content: bool = Field(description="False once retention dropped the body: /raw then answers 404.")

    @classmethod
    def of(cls, mail: OutgoingMail) -> MailDetail:
        return cls(**cls.fields_of(mail), attempts=[AttemptOut.of(a) for a in mail.attempt_log],
                   original_recipients=list(mail.original_recipients), has_content=mail.has_content)


class MailPage(BaseModel):
    items: list[MailSummary]
    total: int | None = Field(description="Mails matching the filters, over all pages; with `total_exact` false, "
                                          "more than this many match (a filtered search counts up to a limit, "
                                          "or to the end of the page asked for).")
    total_exact: bool = Field(True, description="Whether `total` is the exact number of matching mails.")
    offset: int
    limit: int
    next_after: str | None = Field(None, description=(
        "Pass as `after` for the next page (sorted by queued_at, subject, status, recipients or attempts); null "
        "when no more mails follow or the order is by sent_at or server."))


class BulkDeleteRequest(RequestModel):
    ids: list[str] = Field(min_length=1, max_length=MAX_PAGE_SIZE)


class Deleted(BaseModel):
    deleted: int = Field(description="How many mails were removed; unknown ids are skipped.")


# --- templates ---------------------------------------------------------------------------------------


class TemplateSetOut(BaseModel):
    id: str
    name: str
    description: str
    tags: list[str]
    default_locale: str

    @classmethod
    def fields_of(cls, template_set: TemplateSet) -> dict[str, Any]:
        return {"id": template_set.id, "name": template_set.name, "description": template_set.description,
                "tags": list(template_set.tags), "default_locale": template_set.default_locale}

    @classmethod
    def of(cls, template_set: TemplateSet) -> TemplateSetOut:
        return cls(**cls.fields_of(template_set))


class TemplateSummary(BaseModel):
    name: str
    locale: str
    kind: TemplateKind
    version: int
    description: str
    variables: dict[str, str] = Field(description="Declared variables with their sample values.")
    updated_at: datetime | None
    updated_by: str | None

    @classmethod
    def fields_of(cls, template: Template) -> dict[str, Any]:
        return {"name": template.name, "locale": template.locale, "kind": template.kind,
                "version": template.version, "description": template.description,
                "variables": dict(template.variables), "updated_at": template.updated_at,
                "updated_by": template.updated_by}

    @classmethod
    def of(cls, template: Template) -> TemplateSummary:
        return cls(**cls.fields_of(template))


class TemplateSetDetail(TemplateSetOut):
    templates: list[TemplateSummary]

    @classmethod
    def of_set(cls, template_set: TemplateSet, templates: list[Template]) -> TemplateSetDetail:
        return cls(**cls.fields_of(template_set), templates=[TemplateSummary.of(t) for t in templates])


class TemplateOut(TemplateSummary):
    set_id: str
    subject: str
    html: str | None
    text: str | None

    @classmethod
    def of(cls, template: Template) -> TemplateOut:
        return cls(**cls.fields_of(template), set_id=template.set_id, subject=template.subject,
                   html=template.html, text=template.text)


class TemplateIn(RequestModel):
    """A template's new content; saving keeps the previous version."""

    kind: TemplateKind = TemplateKind.TEMPLATE
    subject: str = ""
    html: str | None = None
    text: str | None = None
    description: str = ""
    variables: dict[str, str] = Field(default={}, description="Every variable used, with a sample value.")


class UnsavedTemplate(RequestModel):
    """Content being edited, rendered with the set's saved partials."""

    subject: str
    html: str | None = None
    text: str | None = None
    variables: dict[str, str] | None = Field(
        default=None, description="Sample values; those of the saved template when missing.")


class PreviewRequest(RequestModel):
    language: str | None = None
    model: dict[str, Any] | None = Field(default=None, description="The declared samples when missing.")
    template: UnsavedTemplate | None = Field(default=None, description="Render this instead of the saved one.")


class Rendered(BaseModel):
    subject: str
    html: str | None
    text: str
    locale: str
    template: str = Field(description="`set_id/name`.")

    @classmethod
    def of(cls, rendered: RenderedTemplate) -> Rendered:
        return cls(subject=rendered.subject, html=rendered.html, text=rendered.text, locale=rendered.locale,
                   template=rendered.template)


# --- SMTP servers ------------------------------------------------------------------------------------


class ServerIn(RequestModel):
    """An SMTP server's settings. On update, a missing or null `password` keeps the stored one and `""`
    removes it."""

    name: ShortLine
    host: ShortLine
    port: int = Field(default=587, ge=1, le=65535)
    security: Security = Security.STARTTLS
    username: ShortLine = ""
    password: SecretStr | None = None
    sender: AddressLine = Field(default="", description="The From of mails that name none.")
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="Higher is tried first.")
    enabled: bool = True
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    helo_name: str = Field(default="", max_length=253, pattern=r"^[A-Za-z0-9.-]*$",
                           description="The name given in EHLO; empty: the worker's default.")


class ServerOut(BaseModel):
    """An SMTP server; the password is never shown, only whether one is stored."""

    id: str
    name: str
    host: str
    port: int
    security: Security
    username: str
    sender: str
    priority: int
    enabled: bool
    timeout_seconds: float
    helo_name: str
    has_password: bool

    @classmethod
    def of(cls, server: SmtpServer) -> ServerOut:
        return cls(id=server.id, name=server.name, host=server.host, port=server.port, security=server.security,
                   username=server.username, sender=server.sender, priority=server.priority,
                   enabled=server.enabled, timeout_seconds=server.timeout_seconds, helo_name=server.helo_name,
                   has_password=server.has_password)


class ProbeStepOut(BaseModel):
    name: str = Field(description="connect, ehlo, starttls or login.")
    ok: bool
    detail: str
    error: str | None = Field(description="What went wrong, when the step failed.")

    @classmethod
    def of(cls, step: ProbeStep) -> ProbeStepOut:
        return cls(name=step.name, ok=step.ok, detail=step.detail, error=None if step.ok else step.detail)


class ProbeResult(BaseModel):
    server: str
    ok: bool = Field(description="Every step succeeded.")
    steps: list[ProbeStepOut]


# --- API tokens --------------------------------------------------------------------------------------


class TokenIn(RequestModel):
    name: str = Field(description="What the token is for; 1 to 200 characters on one line.")
    expires_days: int | None = Field(default=None, gt=0, le=3650,
                                     description="The token stops working this many days from now; "
                                                 "leave out for a token that lasts until revoked.")


class TokenOut(BaseModel):
    id: str
    name: str
    hint: str = Field(description="The secret's first characters, to tell tokens apart.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = Field(description="When the token stops working; null: until revoked.")
    active: bool

    @classmethod
    def fields_of(cls, token: ApiToken) -> dict[str, Any]:
        return {"id": token.id, "name": token.name, "hint": token.hint, "created_at": token.created_at,
                "last_used_at": token.last_used_at, "revoked_at": token.revoked_at, "expires_at": token.expires_at,
                "active": token.active}

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(**cls.fields_of(token))


class TokenCreated(TokenOut):
    token: str = Field(description="The secret, for `Authorization: Bearer ...`; shown this once only.")
