"""API: send mail (plain or from a template) and work the mail log: search, show, download, retry,
cancel, delete."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, get_origin

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel

from mailroom.domain.mail import Attachment, Mail
from mailroom.errors import InvalidInput, MailNotFound, NotFound
from mailroom.web.api.schemas import (
    API_TOKEN,
    STATE_CHANGING,
    AttachmentIn,
    BulkDeleteRequest,
    Caller,
    Deleted,
    Key,
    MailCreated,
    MailDetail,
    MailPage,
    MailSearch,
    MailStatuses,
    MailSummary,
    SendMailRequest,
    SendTemplateMailRequest,
    StatusQuery,
    errors,
)
from mailroom.web.context import room

router = APIRouter(tags=["mails"], dependencies=[API_TOKEN])

IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="Your key for this request: repeating it (by the same user) within the idempotency window "
                "(`MAILROOM_IDEMPOTENCY_WINDOW_SECONDS`, default 24 h) returns the first mail's id and queues "
                "nothing; the same key with a different mail is a 422 `idempotency_conflict`.")]


def decode_attachments(attachments: Sequence[AttachmentIn]) -> list[Attachment]:
    """The attachments with their bytes; bad base64 is invalid input naming the attachment's field."""
    decoded: list[Attachment] = []
    for index, given in enumerate(attachments):
        where = f"attachments.{index}"
        try:
            # Whitespace is dropped first: base64 wrapped at 76 columns (as MIME tools write it) is fine.
            content = base64.b64decode("".join(given.content_base64.split()), validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text
            raise InvalidInput(f"{where}.content_base64 is not valid base64: {exc}",
                               field=f"{where}.content_base64") from exc
        try:
            decoded.append(Attachment(filename=given.filename, content=content, content_type=given.content_type,
                                      inline=given.inline, content_id=given.content_id))
        except InvalidInput as exc:
            exc.field = where
            raise
    return decoded


def name_request_field(exc: InvalidInput, headers: Sequence[str] = ()) -> None:
    """Point ``exc.field`` at the request's field: the domain says ``from`` for the sender and names an
    extra header by itself."""
    if exc.field == "from":
        exc.field = "sender"
    elif exc.field in headers:
        exc.field = f"headers.{exc.field}"


@router.post("/mails", status_code=201, response_model=MailCreated, summary="Queue a mail",
             dependencies=STATE_CHANGING, responses=errors(400))
def send_mail(request: Request, body: SendMailRequest, caller: Caller,
              idempotency_key: IdempotencyKeyHeader = None) -> MailCreated:
    """Validate the mail, store it in the queue and wake a worker; delivery happens in the background, so
    follow `GET /mails/{id}` for the outcome."""
    attachments = decode_attachments(body.attachments)
    try:
        mail = Mail(to=body.to, cc=body.cc, bcc=body.bcc, sender=body.sender, reply_to=body.reply_to,
                    subject=body.subject, text=body.text, html=body.html, attachments=attachments,
                    headers=body.headers, smtp_hint=body.smtp_hint, priority=body.priority, send_at=body.send_at,
                    expires_at=body.expires_at, tags=body.tags, correlation_id=body.correlation_id,
                    confidential=body.confidential)
    except InvalidInput as exc:
        name_request_field(exc, list(body.headers))
        raise
    return MailCreated(id=room(request).send_mail(caller, mail, idempotency_key=idempotency_key))


@router.post("/mails/template", status_code=201, response_model=MailCreated, summary="Queue a mail from a template",
             dependencies=STATE_CHANGING, responses=errors(400, 404))
def send_template_mail(request: Request, body: SendTemplateMailRequest, caller: Caller,
                       idempotency_key: IdempotencyKeyHeader = None) -> MailCreated:
    """Render the template in the negotiated locale with `model` and queue the result. An unknown set or
    template is a 404; a model lacking declared variables, or a render error, a 422 on `model`."""
    attachments = decode_attachments(body.attachments)
    try:
        mail_id = room(request).send_template_mail(
            caller, to=body.to, cc=body.cc, bcc=body.bcc, sender=body.sender, reply_to=body.reply_to,
            set_id=body.set_id, name=body.name, language=body.language, model=body.model, attachments=attachments,
            smtp_hint=body.smtp_hint, priority=body.priority, tags=body.tags, correlation_id=body.correlation_id,
            confidential=body.confidential, idempotency_key=idempotency_key)
    except InvalidInput as exc:
        name_request_field(exc)
        raise
    return MailCreated(id=mail_id)


def refuse_repeated_parameters(request: Request, model: type[BaseModel]) -> None:
    """A filter that takes one value, given twice, is refused: FastAPI would quietly keep the last one, so
    ``correlation_id=a&correlation_id=b`` would search for b alone."""
    for name, field in model.model_fields.items():
        if get_origin(field.annotation) is not list and len(request.query_params.getlist(name)) > 1:
            raise InvalidInput(f"{name} may be given once (only repeatable filters, like status, take more)",
                               field=name)


@router.get("/mails", response_model=MailPage, summary="Search the mail log", responses=errors())
def search_mails(request: Request, search: Annotated[MailSearch, Query()], caller: Caller) -> MailPage:
    """One page of the mails matching every given filter, newest first unless sorted otherwise."""
    refuse_repeated_parameters(request, MailSearch)
    page = room(request).log.search(caller, search.to_query())
    return MailPage(items=[MailSummary.of(mail) for mail in page.items], total=page.total,
                    total_exact=page.total_exact, offset=page.offset, limit=page.limit, next_after=page.next_after)


# Before "/mails/{mail_id}", which would otherwise take "statuses" for a mail id.
@router.get("/mails/statuses", response_model=MailStatuses, summary="The statuses of several mails in one call",
            responses=errors())
def mail_statuses(request: Request, query: Annotated[StatusQuery, Query()], caller: Caller) -> MailStatuses:
    """For pages and scripts that follow mails on their way: one call for all of them instead of one
    `GET /mails/{id}` each. Poll it sparingly (the admin UI asks every 2 s at most, and not at all while its
    tab is hidden or once every mail it shows is final)."""
    return MailStatuses(statuses=room(request).log.statuses(caller, query.id))


@router.get("/mails/{mail_id}", response_model=MailDetail, summary="A mail with its status, recipients and attempts",
            responses=errors(404))
def get_mail(request: Request, mail_id: Key, caller: Caller) -> MailDetail:
    return MailDetail.of(room(request).log.get(caller, mail_id))


@router.get("/mails/{mail_id}/raw", response_class=Response, summary="Download the mail as an .eml file",
            responses={200: {"description": "The message as stored (RFC 5322).",
                             "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}},
                       **errors(404)})
def get_raw_mail(request: Request, mail_id: Key, caller: Caller) -> Response:
    """The message exactly as handed to the SMTP server (without Bcc). 404 once retention dropped it; 403
    (`confidential_content`) for a confidential mail, whose content nobody reads back."""
    message = room(request).log.raw_message(caller, mail_id)
    if message is None:
        raise NotFound(f"the content of mail {mail_id!r} was dropped by retention")
    return Response(message, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="{mail_id}.eml"'})


@router.post("/mails/{mail_id}/retry", response_model=MailDetail,
             summary="Queue a failed or cancelled mail again, or try a deferred one now",
             dependencies=STATE_CHANGING, responses=errors(404, 409))
def retry_mail(request: Request, mail_id: Key, caller: Caller) -> MailDetail:
    log = room(request).log
    log.retry(caller, mail_id)
    return MailDetail.of(log.get(caller, mail_id))  # read again: with the attempts so far


@router.post("/mails/{mail_id}/cancel", response_model=MailDetail, summary="Stop a queued or deferred mail",
             dependencies=STATE_CHANGING, responses=errors(404, 409))
def cancel_mail(request: Request, mail_id: Key, caller: Caller) -> MailDetail:
    log = room(request).log
    log.cancel(caller, mail_id)
    return MailDetail.of(log.get(caller, mail_id))


@router.delete("/mails/{mail_id}", status_code=204, response_class=Response, summary="Remove a mail from the log",
               dependencies=STATE_CHANGING, responses=errors(404))
def delete_mail(request: Request, mail_id: Key, caller: Caller) -> Response:
    if not room(request).log.delete(caller, [mail_id]):
        raise MailNotFound(mail_id)
    return Response(status_code=204)


@router.post("/mails/bulk-delete", response_model=Deleted, summary="Remove many mails from the log",
             dependencies=STATE_CHANGING, responses=errors(400))
def delete_mails(request: Request, body: BulkDeleteRequest, caller: Caller) -> Deleted:
    return Deleted(deleted=room(request).log.delete(caller, body.ids))
