"""API: health, for load balancers and monitoring (no login needed, no details leaked)."""

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from mailroom.errors import StorageError
from mailroom.web.context import room

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


@router.get("/health", response_model=Health, summary="Is the service up and its database reachable?",
            responses={503: {"description": "The database is unreachable."}})
def health(request: Request) -> Health:
    with room(request).database.read() as conn:
        if conn.execute(text("SELECT 1")).scalar_one() != 1:
            raise StorageError("the database answered strangely")
    return Health(status="ok", database="ok")
