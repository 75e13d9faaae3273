"""Admin UI: the overview ("Mail & SMTP").

The queue now (queued, deferred), what finished in the last 24 hours (sent, failed), a chart of sent and
failed mails per hour over the last 48 hours drawn as SVG on the server (no chart library, no script),
and a card for each area the user may open. Every part shows only with its permission, so any logged-in
user can land here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mailroom.domain.log import HourlyCount
from mailroom.domain.outbox import MailStatus
from mailroom.domain.permissions import READ_MAIL, READ_SERVERS, READ_TEMPLATES
from mailroom.web import i18n
from mailroom.web.context import login, room
from mailroom.web.i18n import gettext as _
from mailroom.web.ui.log import mail_page

router = APIRouter(include_in_schema=False)

CHART_HOURS = 48


@dataclass(frozen=True)
class Bar:
    kind: str  # "sent" or "failed": the CSS class that colours it
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Slot:
    """One hour of the chart: its bars and the invisible full-height area that carries the tooltip."""

    x: float
    width: float
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    slots: tuple[Slot, ...]
    grid: tuple[Label, ...]  # y is the line's position, text the value it marks
    ticks: tuple[Label, ...]
    sent: int
    failed: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value``: round numbers on the axis."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def hourly_chart(hours: Sequence[HourlyCount], language: str, *, width: int = 960, height: int = 220) -> Chart:
    """Stacked bars (sent below, failed above) per hour, with a y grid and a tick every six hours."""
    left, right, top, bottom = 44, 8, 10, 24
    plot_width, plot_height = width - left - right, height - top - bottom
    scale_top = nice_ceiling(max((h.sent + h.failed for h in hours), default=0) or 1)
    slot_width = plot_width / max(1, len(hours))
    bar_width = slot_width * 0.7

    def number(value: int) -> str:
        return format_decimal(value, locale=language)

    slots: list[Slot] = []
    ticks: list[Label] = []
    for index, hour in enumerate(hours):
        x = left + index * slot_width
        sent_height = hour.sent / scale_top * plot_height
        failed_height = hour.failed / scale_top * plot_height
        baseline = top + plot_height
        bars = tuple(bar for bar in (
            Bar("sent", x + (slot_width - bar_width) / 2, baseline - sent_height, bar_width, sent_height),
            Bar("failed", x + (slot_width - bar_width) / 2, baseline - sent_height - failed_height, bar_width,
                failed_height),
        ) if bar.height > 0)
        title = _("{start} to {end} UTC: {sent} sent, {failed} failed").format(
            start=hour.hour.strftime("%Y-%m-%d %H:%M"), end=(hour.hour + timedelta(hours=1)).strftime("%H:%M"),
            sent=number(hour.sent), failed=number(hour.failed))
        slots.append(Slot(x=x, width=slot_width, title=title, bars=bars))
        if hour.hour.hour % 6 == 0:
            text = format_date(hour.hour, "d MMM", locale=language) if hour.hour.hour == 0 \
                else hour.hour.strftime("%H:%M")
            ticks.append(Label(x=x + slot_width / 2, y=height - 6, text=text))
    values = [0, scale_top // 2, scale_top] if scale_top % 2 == 0 else [0, scale_top]
    grid = tuple(Label(x=left - 6, y=top + plot_height - value / scale_top * plot_height, text=number(value))
                 for value in values)
    return Chart(width=width, height=height, left=left, right=right, top=top, bottom=bottom, slots=tuple(slots),
                 grid=grid, ticks=tuple(ticks), sent=sum(h.sent for h in hours), failed=sum(h.failed for h in hours))


@router.get("/", response_class=HTMLResponse)
def show_overview(request: Request) -> HTMLResponse:
    session = login(request)
    subject = session.subject
    mailroom = room(request)
    language = i18n.choose_language(session.user.profile.preferred_language, request.headers.get("accept-language"))
    activity = chart = None
    if subject.has(READ_MAIL):
        activity = mailroom.log.activity(subject, hours=CHART_HOURS)
        chart = hourly_chart(activity.hourly, language)
    template_sets = len(mailroom.templates.list_sets(subject)) if subject.has(READ_TEMPLATES) else None
    servers = mailroom.servers.list(subject) if subject.has(READ_SERVERS) else None
    return mail_page(request, "overview.html", activity=activity, chart=chart, template_sets=template_sets,
                     servers=servers, enabled_servers=sum(s.enabled for s in servers or []),
                     queued=activity.by_status.get(MailStatus.QUEUED, 0) if activity else 0,
                     deferred=activity.by_status.get(MailStatus.DEFERRED, 0) if activity else 0)
