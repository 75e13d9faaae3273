"""API: templates."""

from fastapi import APIRouter

router = APIRouter(tags=["templates"])
