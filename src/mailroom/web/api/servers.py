"""API: servers."""

from fastapi import APIRouter

router = APIRouter(tags=["servers"])
