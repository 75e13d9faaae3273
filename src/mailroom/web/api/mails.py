"""API: mails."""

from fastapi import APIRouter

router = APIRouter(tags=["mails"])
