"""``create_app``: the admin UI and the JSON API as one FastAPI application.

Mount it in another ASGI app under a prefix (``parent.mount("/mail", create_app(room))``) or serve it
alone (``mailroom serve``). Endpoints are plain functions: FastAPI runs them in its thread pool, so the
synchronous use cases never block the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from mailroom.app import Mailroom
from mailroom.web import api, api_docs, errors, probes
from mailroom.web.context import WebState
from mailroom.web.pages import activate_page_language, url
from mailroom.web.security import AccountRequestLimits, SecurityHeaders, SessionCookies, redact_access_log
from mailroom.web.ui import account, log, mail_test, overview, servers, templates, users


def create_app(room: Mailroom | None = None) -> FastAPI:
    """The web app over ``room`` (default: one built from the MAILROOM_* settings)."""
    room = room or Mailroom()
    s = room.settings
    app = FastAPI(title="mailroom", summary="Mail management: queue, deliver and search mail.",
                  version="1", docs_url=None, redoc_url=None, openapi_url="/api/v1/openapi.json")
    cookies = SessionCookies(room.secrets.derive_key("web-session"), max_age_seconds=s.session_hours * 3600,
                             secure=s.public_base_url.startswith("https://"))
    limits = AccountRequestLimits(per_address=s.account_requests_per_address,
                                  per_client=s.account_requests_per_client)
    app.state.mailroom = WebState(room=room, cookies=cookies, limits=limits)
    redact_access_log()

    @app.middleware("http")
    async def session_cookie(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.removeprefix(request.scope.get("root_path", "")) in probes.PROBE_PATHS:
            return await call_next(request)  # a probe gets no cookie: it would be a new session every time
        session = cookies.load(request)
        request.state.web_session = session
        response = await call_next(request)
        if session.changed:
            cookies.store(request, response, session)
        return response

    app.add_middleware(SecurityHeaders)
    errors.install(app)
    app.mount("/static", StaticFiles(directory=str(resources.files("mailroom.web") / "static")), name="static")
    app.add_api_route("/favicon.ico", favicon, include_in_schema=False)
    app.include_router(api.router, prefix="/api/v1")
    app.include_router(probes.router)
    app.include_router(api_docs.router)  # Swagger UI from our own files: FastAPI's loads a CDN
    for module in (account, overview, mail_test, log, templates, servers, users):
        app.include_router(module.router, dependencies=[Depends(activate_page_language)])
    return app


def favicon(request: Request) -> RedirectResponse:
    """Browsers ask for /favicon.ico by themselves wherever no page names an icon (a JSON answer in a tab)."""
    return RedirectResponse(url(request, "/static/favicon.svg"), status_code=301)
