"""Admin UI: the mail log and one mail's details.

The log page keeps its whole state (search, filters, sort, page) in the URL, so a view can be shared or
bookmarked. Retry, cancel and delete post a form and redirect back (post/redirect/get), the outcome
travelling as counts in the query string. The detail page parses the stored message with the standard
library; its HTML body is served on its own URL with a script-less CSP and shown in a sandboxed iframe.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from babel.lists import format_list
from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from mailroom.domain.log import MAX_OFFSET, LogPage, LogQuery, SortKey
from mailroom.domain.log_search import parse_search
from mailroom.domain.outbox import CANCELLABLE_STATUSES, RETRYABLE_STATUSES, MailStatus, OutgoingMail
from mailroom.domain.permissions import (
    CANCEL_MAIL,
    DELETE_MAIL,
    READ_MAIL,
    READ_SERVERS,
    RETRY_MAIL,
    SEND_MAIL,
    Subject,
)
from mailroom.errors import InvalidInput, InvalidTransition, MailNotFound, NotFound
from mailroom.usecases.send_mail import SendingReadiness
from mailroom.web.context import csrf_form, current, require, room
from mailroom.web.i18n import error_text, ngettext
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import page_language, render, see_other, url
from mailroom.web.security import MAIL_BODY_CSP

router = APIRouter(include_in_schema=False)

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
           "30d": timedelta(days=30)}
# Content of a mail shown or downloaded from our origin: no scripts, no remote loads, no same-origin.
MAIL_CONTENT_HEADERS = {"Content-Security-Policy": MAIL_BODY_CSP, "Cache-Control": "private, no-store"}


class MailAction(enum.StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    DELETE = "delete"


class ContentDropped(NotFound):
    def __init__(self, mail_id: str) -> None:
        super().__init__(f"the content of mail {mail_id!r} was dropped by retention; its log entry remains")


class PartNotFound(NotFound):
    def __init__(self, mail_id: str, what: str) -> None:
        super().__init__(f"mail {mail_id!r} has no {what}")


_ON_ITS_WAY = frozenset(s.value for s in MailStatus if not s.is_final)


# --- helpers shared by the mail pages (overview, test, log) ----------------------------------------


def status_label(status: str) -> str:
    """The status as the page language says it; the badge's CSS class keeps the English value."""
    labels = {MailStatus.QUEUED: _("queued"), MailStatus.SENDING: _("sending"), MailStatus.DEFERRED: _("deferred"),
              MailStatus.SENT: _("sent"), MailStatus.FAILED: _("failed"),
              MailStatus.PARTIALLY_FAILED: _("partially failed"), MailStatus.CANCELLED: _("cancelled")}
    try:
        return labels[MailStatus(status)]
    except (ValueError, KeyError):
        return status


def status_badge(status: str, mail_id: str | None = None) -> Markup:
    """The status badge; while a mail is on its way, log.js keeps it current (``data-mail-status``) and
    labels it in the page language from the ``data-label-<status>`` attributes."""
    attributes = {"class": f"badge status-{status}", "data-status": status}
    if mail_id and status in _ON_ITS_WAY:
        attributes["data-mail-status"] = mail_id
    attributes |= {f"data-label-{s.value}": status_label(s.value) for s in MailStatus}
    rendered = Markup(" ").join(Markup('{}="{}"').format(name, value) for name, value in attributes.items())
    return Markup("<span {}>{}</span>").format(rendered, status_label(status))


def mail_page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``render`` with what every mail page needs: status labels and badges, the statuses to choose from, and
    whether mails can go out now (``sending``: None for users who neither send nor read mail)."""
    return render(request, template, status_code=status_code, status_label=status_label, status_badge=status_badge,
                  all_statuses=list(MailStatus), sending=sending_readiness(request), **context)


def sending_readiness(request: Request) -> SendingReadiness | None:
    session = current(request)
    if session is None or not (session.subject.has(SEND_MAIL) or session.subject.has(READ_MAIL)):
        return None
    return room(request).sending_readiness(session.subject)


# --- the log ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogView:
    """What the log shows, exactly as the URL says it; defaults are left out of links."""

    q: str = ""
    status: str = ""
    server: str = ""
    period: str = ""
    sort: str = SortKey.QUEUED_AT.value
    order: str = "desc"
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    after: str = ""  # the cursor a Next link carries; any other link goes by the page number

    def params(self, **changes: Any) -> dict[str, str]:
        defaults = LogView()
        values = {f.name: getattr(self, f.name) for f in fields(self)} | {"after": ""} | changes
        return {name: str(value) for name, value in values.items() if value != getattr(defaults, name)}

    def link(self, request: Request, **changes: Any) -> str:
        query = urlencode(self.params(**changes))
        return url(request, "/log") + (f"?{query}" if query else "")

    def sort_link(self, request: Request, key: str) -> str:
        """Clicking the current sort column flips the order; a new column starts with its natural order."""
        if key == self.sort:
            order = "asc" if self.order == "desc" else "desc"
        else:
            order = "asc" if key in (SortKey.SUBJECT, SortKey.RECEIVER, SortKey.SERVER, SortKey.STATUS) else "desc"
        return self.link(request, sort=key, order=order, page=1)


@dataclass
class LogResult:
    page: LogPage | None = None
    errors: list[str] = field(default_factory=list)


def deepest_page(size: int) -> int:
    """The last page that can be asked for at all, however many mails there are."""
    return MAX_OFFSET // size + 1


def whole_number(value: str) -> int | None:
    """A number from the URL, or None: ``page=abc`` is the visitor's slip, not a reason for a raw error.
    Beyond 18 digits it is no page or count of this log either (and no longer formats as a number)."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def build_query(view: LogView, now: datetime) -> LogQuery:
    """The LogQuery of a view; raises InvalidInput naming the parameter that cannot be used."""
    statuses: frozenset[MailStatus] = frozenset()
    if view.status:
        try:
            statuses = frozenset({MailStatus(view.status)})
        except ValueError:
            raise InvalidInput(f"unknown status {view.status!r}", field="status") from None
    if view.period and view.period not in PERIODS:
        raise InvalidInput(f"unknown time range {view.period!r}; use one of {', '.join(PERIODS)}", field="period")
    try:
        sort = SortKey(view.sort)
    except ValueError:
        raise InvalidInput(f"cannot sort by {view.sort!r}", field="sort") from None
    if view.size not in PAGE_SIZES:
        raise InvalidInput(f"page size {view.size} is not one of {', '.join(map(str, PAGE_SIZES))}", field="size")
    if not 1 <= view.page <= deepest_page(view.size):
        raise InvalidInput(f"page {view.page} is not between 1 and {deepest_page(view.size)}", field="page")
    base = LogQuery(statuses=statuses, server=view.server or None,
                    queued_after=now - PERIODS[view.period] if view.period else None,
                    sort=sort, descending=view.order != "asc",
                    offset=0 if view.after else (max(1, view.page) - 1) * view.size, limit=view.size,
                    after=view.after or None)
    return parse_search(view.q, base)


def outcome_message(done: str, count: int, skipped: int) -> tuple[str | None, str | None]:
    """The banner after an action: (success, problem)."""
    if done == "none":
        return None, _("Select at least one mail first.")
    try:
        action = MailAction(done)
    except ValueError:
        return None, None
    success = {
        MailAction.RETRY: ngettext("%(num)s mail queued again.", "%(num)s mails queued again.", count),
        MailAction.CANCEL: ngettext("%(num)s mail cancelled.", "%(num)s mails cancelled.", count),
        MailAction.DELETE: ngettext("%(num)s mail deleted.", "%(num)s mails deleted.", count),
    }[action]
    problem = None
    if skipped:
        problem = {
            MailAction.RETRY: ngettext(
                "%(num)s mail was skipped: only failed, cancelled or deferred mails that still have their "
                "content can be retried.",
                "%(num)s mails were skipped: only failed, cancelled or deferred mails that still have their "
                "content can be retried.", skipped),
            MailAction.CANCEL: ngettext(
                "%(num)s mail was skipped: only queued or deferred mails can be cancelled.",
                "%(num)s mails were skipped: only queued or deferred mails can be cancelled.", skipped),
            MailAction.DELETE: ngettext("%(num)s mail was already gone.", "%(num)s mails were already gone.",
                                        skipped),
        }[action] % {"num": skipped}
    return success % {"num": count}, problem


@router.get("/log", response_class=HTMLResponse)
def show_log(request: Request, subject: Annotated[Subject, Depends(require(READ_MAIL))], q: str = "",
             status: str = "", server: str = "", period: str = "", sort: str = SortKey.QUEUED_AT.value,
             order: str = "desc", page: str = "1", size: str = str(DEFAULT_PAGE_SIZE), done: str = "", n: str = "0",
             skipped: str = "0", after: str = "") -> HTMLResponse:
    mailroom = room(request)
    result = LogResult()
    page_number = whole_number(page)
    if page_number is None or page_number < 1:
        result.errors.append(_("“{value}” is not a page number: enter a whole number from 1 on.").format(value=page))
        page_number = 1
    size_number = whole_number(size)
    if size_number not in PAGE_SIZES:
        sizes = format_list([str(s) for s in PAGE_SIZES], style="or", locale=page_language(request))
        result.errors.append(_("Show {sizes} mails per page, not “{value}”.").format(sizes=sizes, value=size))
        size_number = DEFAULT_PAGE_SIZE
    # A page past any log's end cannot even be asked for (the database's offset would overflow): refused,
    # and the first page shown instead, with where the end is.
    too_deep = page_number > deepest_page(size_number)
    view = LogView(q=q.strip(), status=status, server=server, period=period, sort=sort,
                   order="asc" if order == "asc" else "desc", page=1 if too_deep else page_number,
                   size=size_number, after="" if too_deep else after.strip())
    try:
        result.page = mailroom.log.search(subject, build_query(view, mailroom.clock.now()))
    except InvalidInput as exc:
        result.errors.append(error_text(exc))
    total = (result.page.total or 0) if result.page else 0
    total_exact = result.page.total_exact if result.page else True
    # More mails than were counted: there is a next page, but no last page to name.
    last_page = max(1, -(-total // view.size)) if total_exact else None
    # The page number says where a page stands, also one reached by a cursor (whose own offset is 0).
    shown = (view.page - 1) * view.size + (len(result.page.items) if result.page else 0)
    has_more = bool(result.page) and (not total_exact or total > shown)
    next_link = view.link(request, page=view.page + 1,
                          after=result.page.next_after or "" if result.page else "")
    past_end = page_number if result.page and (too_deep or (last_page and page_number > last_page)) else None
    last_page_link = Markup('<a href="{}" data-testid="last-page-hint">{}</a>').format(
        view.link(request, page=last_page or 1), format_decimal(last_page or 1, locale=page_language(request)))
    notice, problem = outcome_message(done, whole_number(n) or 0, whole_number(skipped) or 0)
    servers = [s.name for s in mailroom.servers.list(subject)] if subject.has(READ_SERVERS) else []
    if view.server and view.server not in servers:
        servers.append(view.server)
    columns = [(SortKey.SUBJECT, _("Subject")), (SortKey.RECEIVER, _("Recipients")), (SortKey.STATUS, _("Status")),
               (None, _("Last error")), (SortKey.SERVER, _("Server")), (SortKey.QUEUED_AT, _("Queued at")),
               (SortKey.SENT_AT, _("Sent at"))]
    periods = [("", _("Any time")), ("1h", _("Last hour")), ("24h", _("Last 24 hours")),
               ("7d", _("Last 7 days")), ("30d", _("Last 30 days"))]
    return mail_page(
        request, "log.html", status_code=422 if result.errors or too_deep else 200, view=view, result=result,
        servers=servers, periods=periods, page_sizes=PAGE_SIZES, columns=columns, last_page=last_page,
        total=total, total_exact=total_exact, has_more=has_more, next_link=next_link,
        notice=notice, problem=problem, past_end=past_end, last_page_link=last_page_link,
        back=view.link(request).removeprefix(url(request, "")),
        can_retry=subject.has(RETRY_MAIL), can_cancel=subject.has(CANCEL_MAIL), can_delete=subject.has(DELETE_MAIL),
        retryable=[s.value for s in RETRYABLE_STATUSES], cancellable=[s.value for s in CANCELLABLE_STATUSES],
        link=lambda **changes: view.link(request, **changes), sort_link=lambda key: view.sort_link(request, key))


def apply_action(request: Request, subject: Subject, action: MailAction, mail_ids: Sequence[str]) -> tuple[int, int]:
    """Run one action on each mail; returns (done, skipped). A missing permission stops before any change."""
    log = room(request).log
    subject.require({MailAction.RETRY: RETRY_MAIL, MailAction.CANCEL: CANCEL_MAIL,
                     MailAction.DELETE: DELETE_MAIL}[action])
    unique = list(dict.fromkeys(mail_ids))
    if action is MailAction.DELETE:
        deleted = log.delete(subject, unique)
        return deleted, len(unique) - deleted
    operation: Callable[[Subject, str], OutgoingMail] = log.retry if action is MailAction.RETRY else log.cancel
    done = 0
    for mail_id in unique:
        try:
            operation(subject, mail_id)
            done += 1
        except (InvalidTransition, MailNotFound):
            pass  # counted as skipped: the mail changed status (or vanished) since the page was shown
    return done, len(unique) - done


def back_to(request: Request, back: str, **outcome: str | int) -> RedirectResponse:
    """Redirect to a log page of this app (never elsewhere) with the outcome in its query."""
    parts = urlsplit(back)
    inside_log = parts.path == "/log" or parts.path.startswith("/log/")
    path = parts.path if inside_log and not parts.scheme and not parts.netloc and "\\" not in parts.path else "/log"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("done", "n", "skipped")]
    query += [(k, str(v)) for k, v in outcome.items()]
    return see_other(request, path + (f"?{urlencode(query)}" if query else ""))


@router.post("/log/actions", dependencies=[Depends(csrf_form)])
def bulk_action(request: Request, subject: Annotated[Subject, Depends(require(READ_MAIL))],
                action: Annotated[MailAction, Form()], ids: Annotated[list[str] | None, Form()] = None,
                back: Annotated[str, Form()] = "/log") -> Response:
    if not ids:
        return back_to(request, back, done="none")
    done, skipped = apply_action(request, subject, action, ids)
    return back_to(request, back, done=action.value, n=done, skipped=skipped)


@router.post("/log/{mail_id}/{action}", dependencies=[Depends(csrf_form)])
def mail_action(request: Request, mail_id: str, action: MailAction,
                subject: Annotated[Subject, Depends(require(READ_MAIL))],
                back: Annotated[str, Form()] = "/log") -> Response:
    done, skipped = apply_action(request, subject, action, [mail_id])
    if action is MailAction.DELETE and urlsplit(back).path == f"/log/{mail_id}":
        back = "/log"  # the detail page is gone with the mail
    return back_to(request, back, done=action.value, n=done, skipped=skipped)


# --- one mail ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartView:
    index: int
    filename: str
    content_type: str
    size: int
    inline: bool


@dataclass
class MessageView:
    """The stored message, taken apart for display."""

    headers: list[tuple[str, str]]
    html: str | None
    text: str | None
    attachments: list[PartView]
    problems: list[str]


def parse_message(raw: bytes) -> tuple[EmailMessage, MessageView]:
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)  # the default policy builds EmailMessage objects
    problems: list[str] = []
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    bodies = {id(p) for p in (html_part, text_part) if p is not None}
    attachments = [
        PartView(index=index, filename=part.get_filename() or f"part-{index}", content_type=part.get_content_type(),
                 size=len(part_bytes(part)), inline=part.get_content_disposition() != "attachment")
        for index, part in enumerate(leaves(message)) if id(part) not in bodies
    ]
    headers = [(name, str(value)) for name, value in message.items()]
    return message, MessageView(headers=headers, html=_decoded(html_part, problems),
                                text=_decoded(text_part, problems), attachments=attachments, problems=problems)


def leaves(part: Message) -> Iterator[Message]:
    """Every non-multipart part in order; an attached message counts as one part, not as its pieces."""
    if part.get_content_maintype() == "multipart":
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from leaves(sub)
    else:
        yield part


def part_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message":
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _decoded(part: Message | None, problems: list[str]) -> str | None:
    if part is None:
        return None
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError) as exc:  # an unknown charset or a broken encoding
        problems.append(_("A body part cannot be decoded: {reason}").format(reason=exc))
        return None
    return content if isinstance(content, str) else None


_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)


def inline_images(html: str, message: EmailMessage) -> str:
    """``cid:`` references replaced by data: URLs: the body's CSP allows no other image source."""
    images: dict[str, str] = {}
    for part in leaves(message):
        content_id = str(part.get("Content-ID", "")).strip().strip("<>")
        if content_id and part.get_content_maintype() == "image":
            encoded = base64.b64encode(part_bytes(part)).decode("ascii")
            images[content_id] = f"data:{part.get_content_type()};base64,{encoded}"
    return _CID.sub(lambda m: images.get(m.group(1), m.group(0)), html) if images else html


def _raw(request: Request, subject: Subject, mail_id: str) -> bytes:
    raw = room(request).log.raw_message(subject, mail_id)
    if raw is None:
        raise ContentDropped(mail_id)
    return raw


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name per RFC 6266 / RFC 5987."""
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/log/{mail_id}", response_class=HTMLResponse)
def show_mail(request: Request, mail_id: str, subject: Annotated[Subject, Depends(require(READ_MAIL))],
              done: str = "", n: str = "0", skipped: str = "0") -> HTMLResponse:
    log = room(request).log
    mail = log.get(subject, mail_id)
    # A confidential mail's content is never read: the page shows its log entry and "content hidden".
    raw = None if mail.confidential else log.raw_message(subject, mail_id)
    view = parse_message(raw)[1] if raw is not None else None
    done_count = whole_number(n) or 0
    notice, problem = outcome_message(done, done_count, whole_number(skipped) or 0)
    if problem and done_count == 0:
        notice = None  # "0 mails queued again" says nothing the problem does not
    return mail_page(request, "mail_detail.html", mail=mail, message=view, notice=notice, problem=problem,
                     can_retry=subject.has(RETRY_MAIL) and mail.status in RETRYABLE_STATUSES and mail.has_content,
                     can_cancel=subject.has(CANCEL_MAIL) and mail.status in CANCELLABLE_STATUSES,
                     can_delete=subject.has(DELETE_MAIL), back=f"/log/{mail.id}")


@router.get("/log/{mail_id}/body.html")
def mail_body(request: Request, mail_id: str, subject: Annotated[Subject, Depends(require(READ_MAIL))]) -> Response:
    message, view = parse_message(_raw(request, subject, mail_id))
    if view.html is None:
        raise PartNotFound(mail_id, "HTML body")
    return HTMLResponse(inline_images(view.html, message), headers=MAIL_CONTENT_HEADERS)


@router.get("/log/{mail_id}/message.eml")
def raw_message(request: Request, mail_id: str, subject: Annotated[Subject, Depends(require(READ_MAIL))]) -> Response:
    return Response(_raw(request, subject, mail_id), media_type="message/rfc822",
                    headers={**MAIL_CONTENT_HEADERS, "Content-Disposition": content_disposition(f"{mail_id}.eml")})


@router.get("/log/{mail_id}/parts/{index}")
def mail_part(request: Request, mail_id: str, index: int,
              subject: Annotated[Subject, Depends(require(READ_MAIL))]) -> Response:
    message, _view = parse_message(_raw(request, subject, mail_id))
    parts = list(leaves(message))
    if not 0 <= index < len(parts):
        raise PartNotFound(mail_id, f"part {index}")
    part = parts[index]
    filename = part.get_filename() or f"part-{index}"
    return Response(part_bytes(part), media_type=part.get_content_type(),
                    headers={**MAIL_CONTENT_HEADERS, "Content-Disposition": content_disposition(filename)})
