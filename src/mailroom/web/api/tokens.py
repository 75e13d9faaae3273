"""API: the caller's own API tokens: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from mailroom.usecases.users import Session
from mailroom.web.api.schemas import API_TOKEN, STATE_CHANGING, Key, TokenCreated, TokenIn, TokenOut, errors
from mailroom.web.context import login, room

router = APIRouter(tags=["tokens"], dependencies=[API_TOKEN])

LoggedIn = Annotated[Session, Depends(login)]


@router.get("/tokens", response_model=list[TokenOut], summary="List your API tokens, revoked ones included",
            responses=errors(takes_input=False))
def list_tokens(request: Request, session: LoggedIn) -> list[TokenOut]:
    return [TokenOut.of(token) for token in room(request).api_tokens.list(session.subject, session.user.id)]


@router.post("/tokens", status_code=201, response_model=TokenCreated, summary="Create an API token",
             dependencies=STATE_CHANGING, responses=errors(400))
def create_token(request: Request, body: TokenIn, session: LoggedIn) -> TokenCreated:
    """The token acts with your permissions. Its secret is in this answer only: only a hash is kept."""
    token, secret = room(request).api_tokens.create(session.subject, session.user.id, body.name,
                                                    expires_days=body.expires_days)
    return TokenCreated(**TokenOut.fields_of(token), token=secret)


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response, summary="Revoke an API token",
               dependencies=STATE_CHANGING, responses=errors(404))
def revoke_token(request: Request, token_id: Key, session: LoggedIn) -> Response:
    room(request).api_tokens.revoke(session.subject, session.user.id, token_id)
    return Response(status_code=204)
