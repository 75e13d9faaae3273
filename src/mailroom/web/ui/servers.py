"""Admin UI: SMTP servers — list, add, change, enable, order, remove, and test the connection.

A password goes one way only: from the form into the encrypted store. No page renders it, not even masked,
and a form that comes back with an error asks for it again rather than echoing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailroom.domain.permissions import MANAGE_SERVERS, Subject
from mailroom.domain.rate_limits import limits_from
from mailroom.domain.servers import Security, ServerSettings, SmtpServer
from mailroom.errors import InvalidInput
from mailroom.ports import ProbeStep
from mailroom.web import context
from mailroom.web.context import csrf_form, room, web_session
from mailroom.web.i18n import error_text
from mailroom.web.i18n import gettext as _
from mailroom.web.pages import render, see_other

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
FormFlag = Annotated[str | None, Form()]


@dataclass(frozen=True, slots=True)
class ServerForm:
    """The server form's fields as typed (numbers still text, so a typo comes back to be corrected).

    There is deliberately no password here: the form object is what pages render.
    """

    name: str = ""
    host: str = ""
    port: str = "587"
    security: str = Security.STARTTLS.value
    username: str = ""
    sender: str = ""
    priority: str = "0"
    enabled: bool = True
    timeout_seconds: str = "30"
    helo_name: str = ""

    @classmethod
    def of(cls, server: SmtpServer) -> ServerForm:
        return cls(name=server.name, host=server.host, port=str(server.port), security=server.security.value,
                   username=server.username, sender=server.sender, priority=str(server.priority),
                   enabled=server.enabled, timeout_seconds=f"{server.timeout_seconds:g}", helo_name=server.helo_name)

    def settings(self) -> ServerSettings:
        return ServerSettings(name=self.name, host=self.host, port=whole_number(self.port, "port", _("Port")),
                              security=security_of(self.security),
                              username=self.username, sender=self.sender, enabled=self.enabled,
                              priority=whole_number(self.priority, "priority", _("Priority")),
                              timeout_seconds=positive_number(self.timeout_seconds, "timeout_seconds",
                                                              _("Timeout")),
                              helo_name=self.helo_name)


def security_of(value: str) -> Security:
    try:
        return Security(value)
    except ValueError:
        raise InvalidInput(_("Choose STARTTLS, TLS or none as security."), field="security") from None


def whole_number(value: str, field: str, label: str) -> int:
    # At most 20 digits: int() of a long digit string costs quadratic time, and the domain bounds it anyway.
    text = value.strip()
    try:
        if len(text) > 20:
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise InvalidInput(_("{label} must be a whole number.").format(label=label), field=field) from None


def positive_number(value: str, field: str, label: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        number = 0.0
    # "inf" and "nan" are floats to Python, not a number of seconds to anyone.
    if not (math.isfinite(number) and number > 0):
        raise InvalidInput(_("{label} must be a positive number of seconds.").format(label=label), field=field)
    return number


def server_form(name: FormText = "", host: FormText = "", port: FormText = "587",
                security: FormText = Security.STARTTLS.value, username: FormText = "", sender: FormText = "",
                priority: FormText = "0", enabled: FormFlag = None, timeout_seconds: FormText = "30",
                helo_name: FormText = "") -> ServerForm:
    return ServerForm(name=name.strip(), host=host.strip(), port=port, security=security, username=username.strip(),
                      sender=sender.strip(), priority=priority, enabled=enabled is not None,
                      timeout_seconds=timeout_seconds, helo_name=helo_name.strip())


ServerFormData = Annotated[ServerForm, Depends(server_form)]


def settings_of(server: SmtpServer, **changes: Any) -> ServerSettings:
    """The server's settings with some changed (the stored password is not part of them)."""
    values = {f.name: getattr(server, f.name) for f in dataclasses.fields(ServerSettings)}
    return ServerSettings(**(values | changes))


def security_labels() -> dict[str, str]:
    return {Security.STARTTLS.value: _("STARTTLS (port 587)"), Security.TLS.value: _("TLS (port 465)"),
            Security.NONE.value: _("None (unencrypted)")}


def security_names() -> dict[str, str]:
    """Short names for the list, where the port has its own column."""
    return {Security.STARTTLS.value: "STARTTLS", Security.TLS.value: "TLS", Security.NONE.value: _("none")}


def step_labels() -> dict[str, str]:
    return {"connect": _("Connect"), "ehlo": "EHLO", "starttls": "STARTTLS", "login": _("Login")}


def list_page(request: Request, caller: Subject, *, notice: str | None = None, error: str | None = None,
              probe: tuple[SmtpServer, list[ProbeStep]] | None = None, status_code: int = 200,
              limits_form: dict[str, str] | None = None) -> HTMLResponse:
    servers = sorted(room(request).servers.list(caller), key=lambda s: (-s.priority, s.name))
    return render(request, "servers.html", status_code=status_code, servers=servers, notice=notice, error=error,
                  probe=probe, step_labels=step_labels(), security_names=security_names(),
                  limits=room(request).rate_limits.list(caller), limits_form=limits_form or {},
                  window_labels=window_labels())


def window_labels() -> dict[str, str]:
    return {"second": _("per second"), "minute": _("per minute"), "hour": _("per hour"), "day": _("per day")}


def form_page(request: Request, form: ServerForm, *, server: SmtpServer | None = None, error: str | None = None,
              error_field: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render(request, "servers_form.html", status_code=status_code, form=form, server=server, error=error,
                  error_field=error_field, security_labels=security_labels())


# English msgids of admin.po, translated when shown.
DONE_NOTICES = {"added": "The SMTP server {name} was added. Test the connection to check the settings.",
                "saved": "The SMTP server {name} was saved.",
                "enabled": "The SMTP server {name} is enabled.",
                "disabled": "The SMTP server {name} is disabled: no mail goes through it.",
                "priority": "The priority of {name} was changed.",
                "deleted": "The SMTP server {name} was deleted.",
                "limits": "The rate limits of {name} were saved."}


@router.get("/smtp", response_class=HTMLResponse)
def list_servers(request: Request) -> HTMLResponse:
    found = web_session(request).take_notice()
    notice = _(DONE_NOTICES[found[0]]).format(name=found[1]) if found and found[0] in DONE_NOTICES else None
    return list_page(request, context.subject(request), notice=notice)


def done(request: Request, what: str, name: str) -> RedirectResponse:
    # The notice rides in the signed session cookie, not the URL: a link cannot make the page say anything.
    web_session(request).flash(what, name)
    return see_other(request, "/smtp")


@router.get("/smtp/new", response_class=HTMLResponse)
def new_server(request: Request) -> HTMLResponse:
    context.subject(request).require(MANAGE_SERVERS)
    return form_page(request, ServerForm())


@router.post("/smtp", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def add_server(request: Request, form: ServerFormData, password: FormText = "") -> Response:
    caller = context.subject(request)
    caller.require(MANAGE_SERVERS)
    try:
        server = room(request).servers.add(caller, form.settings(), password or None)
    except InvalidInput as exc:
        return form_page(request, form, error=error_text(exc), error_field=exc.field, status_code=422)
    return done(request, "added", server.name)


@router.get("/smtp/{server_id}/edit", response_class=HTMLResponse)
def edit_server(request: Request, server_id: str) -> HTMLResponse:
    caller = context.subject(request)
    caller.require(MANAGE_SERVERS)
    server = room(request).servers.get(caller, server_id)
    return form_page(request, ServerForm.of(server), server=server)


@router.post("/smtp/{server_id}", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def update_server(request: Request, server_id: str, form: ServerFormData, password: FormText = "",
                  remove_password: FormFlag = None) -> Response:
    """A blank password field keeps the stored password; only the checkbox removes it."""
    caller = context.subject(request)
    caller.require(MANAGE_SERVERS)
    servers = room(request).servers
    server = servers.get(caller, server_id)
    new_password = "" if remove_password is not None else (password or None)
    try:
        updated = servers.update(caller, server.id, form.settings(), new_password)
    except InvalidInput as exc:
        return form_page(request, form, server=server, error=error_text(exc), error_field=exc.field, status_code=422)
    return done(request, "saved", updated.name)


@router.post("/smtp/{server_id}/enabled", dependencies=[Depends(csrf_form)])
def set_enabled(request: Request, server_id: str, enabled: FormText) -> Response:
    caller = context.subject(request)
    servers = room(request).servers
    server = servers.get(caller, server_id)
    turn_on = enabled == "true"
    servers.update(caller, server.id, settings_of(server, enabled=turn_on), None)
    return done(request, "enabled" if turn_on else "disabled", server.name)


@router.post("/smtp/{server_id}/priority", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def set_priority(request: Request, server_id: str, priority: FormText) -> Response:
    caller = context.subject(request)
    servers = room(request).servers
    server = servers.get(caller, server_id)
    try:
        servers.update(caller, server.id, settings_of(server, priority=whole_number(priority, "priority",
                                                                                     _("Priority"))), None)
    except InvalidInput as exc:
        return list_page(request, caller, error=error_text(exc), status_code=422)
    return done(request, "priority", server.name)


@router.post("/smtp/{server_id}/delete", dependencies=[Depends(csrf_form)])
def delete_server(request: Request, server_id: str) -> Response:
    caller = context.subject(request)
    servers = room(request).servers
    server = servers.get(caller, server_id)
    servers.remove(caller, server.id)
    return done(request, "deleted", server.name)


@router.post("/smtp/{server_id}/test", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def test_server(request: Request, server_id: str) -> HTMLResponse:
    """Connect, EHLO, STARTTLS and log in, showing each step; the probe itself never raises for SMTP trouble."""
    caller = context.subject(request)
    servers = room(request).servers
    server = servers.get(caller, server_id)
    # The probe reads the server and its password from the database before it connects: on this worker
    # thread's own loop (as the API and the CLI run it), neither holds up the app's event loop.
    steps = asyncio.run(servers.test(caller, server.id))
    return list_page(request, caller, probe=(server, steps))


@router.post("/smtp-limits", response_class=HTMLResponse, dependencies=[Depends(csrf_form)])
def set_limits(request: Request, scope: FormText = "", domain: FormText = "", per_second: FormText = "",
               per_minute: FormText = "", per_hour: FormText = "", per_day: FormText = "") -> Response:
    """One form for a server's or a domain's limits: empty fields are no limit, all empty removes them."""
    caller = context.subject(request)
    typed = {"scope": scope, "domain": domain, "per_second": per_second, "per_minute": per_minute,
             "per_hour": per_hour, "per_day": per_day}
    try:
        counts = {window: whole_number(value, f"per_{window}", label) if value.strip() else None
                  for window, value, label in (("second", per_second, _("per second")),
                                               ("minute", per_minute, _("per minute")),
                                               ("hour", per_hour, _("per hour")), ("day", per_day, _("per day")))}
        limits = limits_from(per_second=counts["second"], per_minute=counts["minute"], per_hour=counts["hour"],
                             per_day=counts["day"])
        if scope == "domain":
            room(request).rate_limits.set_for_domain(caller, domain, limits)
            name = domain.strip().lower()
        else:
            server = room(request).servers.get(caller, scope.removeprefix("server:"))
            room(request).rate_limits.set_for_server(caller, server.id, limits)
            name = server.name
    except InvalidInput as exc:
        return list_page(request, caller, error=error_text(exc), status_code=400, limits_form=typed)
    return done(request, "limits", name)
