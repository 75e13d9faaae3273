"""The web adapter: one ASGI app with the admin UI (server-rendered) and the JSON API under ``/api/v1``."""

from mailroom.web.app import create_app

__all__ = ["create_app"]
