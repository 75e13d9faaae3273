"""API: rate limits per SMTP server and per recipient domain, with how much of each is used."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mailroom.domain.rate_limits import MAX_COUNT, RateLimit, limits_from
from mailroom.usecases.rate_limits import NamedLimitUse
from mailroom.web.api.schemas import API_TOKEN, STATE_CHANGING, Caller, Key, errors
from mailroom.web.context import room

router = APIRouter(tags=["rate limits"], dependencies=[API_TOKEN])

Count = Annotated[int | None, Field(ge=1, le=MAX_COUNT, description="At most this many mails in any such window; "
                                                               "null or missing: no limit for it.")]


class LimitsIn(BaseModel):
    """The limits of one server or domain; they replace its earlier ones (the sends already counted stay)."""

    model_config = ConfigDict(extra="forbid")
    per_second: Count = None
    per_minute: Count = None
    per_hour: Count = None
    per_day: Count = None

    def limits(self) -> tuple[RateLimit, ...]:
        return limits_from(per_second=self.per_second, per_minute=self.per_minute, per_hour=self.per_hour,
                           per_day=self.per_day)


class LimitUseOut(BaseModel):
    kind: Literal["server", "domain"]
    name: str = Field(description="The server's name, or the recipient domain.")
    window: Literal["second", "minute", "hour", "day"]
    limit: int
    used: int = Field(description="Mails sent in the last window of this length.")

    @classmethod
    def of(cls, named: NamedLimitUse) -> LimitUseOut:
        use = named.use
        return cls(kind=use.scope.kind.value, name=named.name, window=use.limit.window.label,  # type: ignore[arg-type]
                   limit=use.limit.count, used=use.used)


@router.get("/rate-limits", response_model=list[LimitUseOut], summary="Every rate limit and its use",
            responses=errors(takes_input=False))
def list_limits(request: Request, caller: Caller) -> list[LimitUseOut]:
    return [LimitUseOut.of(use) for use in room(request).rate_limits.list(caller)]


@router.put("/rate-limits/servers/{name_or_id}", status_code=204, response_class=Response,
            summary="Set an SMTP server's rate limits", dependencies=STATE_CHANGING, responses=errors(400, 404))
def set_server_limits(request: Request, name_or_id: Key, body: LimitsIn, caller: Caller) -> Response:
    """All four counts null removes the server's limits."""
    room(request).rate_limits.set_for_server(caller, name_or_id, body.limits())
    return Response(status_code=204)


@router.put("/rate-limits/domains/{domain}", status_code=204, response_class=Response,
            summary="Set the rate limits of mails to a recipient domain", dependencies=STATE_CHANGING,
            responses=errors(400))
def set_domain_limits(request: Request, domain: Key, body: LimitsIn, caller: Caller) -> Response:
    """All four counts null removes the domain's limits. A mail to several limited domains waits for the
    strictest."""
    room(request).rate_limits.set_for_domain(caller, domain, body.limits())
    return Response(status_code=204)
