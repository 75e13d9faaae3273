"""API: SMTP servers: list, show, add, change, remove and test them. Passwords go in, never out."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from mailroom.domain.servers import ServerSettings
from mailroom.web.api.schemas import (
    API_TOKEN,
    STATE_CHANGING,
    Caller,
    Key,
    ProbeResult,
    ProbeStepOut,
    ServerIn,
    ServerOut,
    errors,
)
from mailroom.web.context import room

router = APIRouter(tags=["servers"], dependencies=[API_TOKEN])


def settings_of(body: ServerIn) -> ServerSettings:
    return ServerSettings(name=body.name, host=body.host, port=body.port, security=body.security,
                          username=body.username, sender=body.sender, priority=body.priority, enabled=body.enabled,
                          timeout_seconds=body.timeout_seconds, helo_name=body.helo_name)


def password_of(body: ServerIn) -> str | None:
    return None if body.password is None else body.password.get_secret_value()


@router.get("/smtp-servers", response_model=list[ServerOut], summary="List SMTP servers",
            responses=errors(takes_input=False))
def list_servers(request: Request, caller: Caller) -> list[ServerOut]:
    return [ServerOut.of(server) for server in room(request).servers.list(caller)]


@router.get("/smtp-servers/{name_or_id}", response_model=ServerOut, summary="One SMTP server, by name or id",
            responses=errors(404))
def get_server(request: Request, name_or_id: Key, caller: Caller) -> ServerOut:
    return ServerOut.of(room(request).servers.get(caller, name_or_id))


@router.post("/smtp-servers", status_code=201, response_model=ServerOut, summary="Add an SMTP server",
             dependencies=STATE_CHANGING, responses=errors(400))
def add_server(request: Request, body: ServerIn, caller: Caller) -> ServerOut:
    """The password is stored encrypted; mails waiting for a server start going out."""
    return ServerOut.of(room(request).servers.add(caller, settings_of(body), password_of(body)))


@router.put("/smtp-servers/{name_or_id}", response_model=ServerOut, summary="Change an SMTP server",
            dependencies=STATE_CHANGING, responses=errors(400, 404))
def update_server(request: Request, name_or_id: Key, body: ServerIn, caller: Caller) -> ServerOut:
    """Replaces every setting; a missing or null `password` keeps the stored one, `""` removes it."""
    return ServerOut.of(room(request).servers.update(caller, name_or_id, settings_of(body), password_of(body)))


@router.delete("/smtp-servers/{name_or_id}", status_code=204, response_class=Response,
               summary="Remove an SMTP server", dependencies=STATE_CHANGING, responses=errors(404))
def remove_server(request: Request, name_or_id: Key, caller: Caller) -> Response:
    room(request).servers.remove(caller, name_or_id)
    return Response(status_code=204)


@router.post("/smtp-servers/{name_or_id}/test", response_model=ProbeResult,
             summary="Test an SMTP server: connect, EHLO, STARTTLS, login",
             dependencies=STATE_CHANGING, responses=errors(404))
def probe_server(request: Request, name_or_id: Key, caller: Caller) -> ProbeResult:
    """Each step with its outcome; an SMTP failure is a step with `ok: false`, not an error answer."""
    # The probe is async but reads the server from the database first; run on this worker thread's own
    # loop, as the CLI does, so neither the query nor a slow server holds up the app's event loop.
    steps = asyncio.run(room(request).servers.test(caller, name_or_id))
    return ProbeResult(server=name_or_id, ok=bool(steps) and all(step.ok for step in steps),
                       steps=[ProbeStepOut.of(step) for step in steps])
