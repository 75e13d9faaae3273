"""Probes for process supervisors and load balancers: ``/healthz`` (liveness) and ``/readyz`` (readiness).

Outside ``/api/v1`` and the OpenAPI document, as orchestrators expect them at the root. No login, no
session cookie, no CSRF (create_app lets these paths past its session middleware), no page language: a
probe every few seconds must neither fill the log of sessions nor cost more than one short query.

- ``/healthz``: the process answers HTTP. It never touches the database, so an outage of the database
  does not make a supervisor restart every web process (which would not help).
- ``/readyz``: the database answers and its schema is at this code's newest migration; otherwise 503 with
  a JSON reason, so a load balancer sends no traffic to a process that can only answer errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailroom.errors import StorageError
from mailroom.web.context import room

PROBE_PATHS = frozenset({"/healthz", "/readyz"})

router = APIRouter(include_in_schema=False)


@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/readyz", methods=["GET", "HEAD"])
def readyz(request: Request) -> JSONResponse:
    try:
        schema = room(request).database.schema_revision()
    except StorageError as exc:
        return _not_ready(f"the database does not answer: {exc}")
    if schema.current is None:
        return _not_ready("the database has no mailroom schema yet: run `mailroom migrate`")
    if not schema.known:
        return _not_ready(f"the database schema is at revision {schema.current}, which this mailroom does not "
                          f"know (its newest is {schema.head}): a newer mailroom migrated it; upgrade this one")
    if not schema.at_head:
        return _not_ready(f"the database schema is at revision {schema.current}, this mailroom needs "
                          f"{schema.head}: run `mailroom migrate`")
    return JSONResponse({"status": "ready", "database": "ok", "schema": schema.current})


def _not_ready(reason: str) -> JSONResponse:
    body: dict[str, Any] = {"status": "not ready", "reason": reason}
    return JSONResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
