"""The JSON API, version 1: every route is under ``/api/v1`` and in the OpenAPI document."""

from fastapi import APIRouter

from mailroom.web.api import health, mails, rate_limits, servers, templates, tokens

router = APIRouter()
for module in (health, mails, templates, servers, rate_limits, tokens):
    router.include_router(module.router)
