"""``/api/docs``: Swagger UI, its files served by us from the swagger-ui-bundle package.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an inline script, which our CSP
blocks (a blank page), and which would need the network at run time. This page loads exactly two files of
the package and one start script of ours, all from our origin, under a CSP that allows nothing else.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mailroom.errors import NotFound
from mailroom.web.pages import render, url

router = APIRouter(include_in_schema=False)

DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'self'; form-action 'self'; base-uri 'none'")
SWAGGER_UI_FILES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
                    "swagger-ui.css": "text/css; charset=utf-8"}
OPENAPI_URL = "/api/v1/openapi.json"


class AssetNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"the API docs have no file {name!r}")


@cache
def swagger_ui_folder() -> Path:
    """The package's Swagger UI distribution (``vendor/swagger-ui-<version>``)."""
    vendor = Path(str(resources.files("swagger_ui_bundle") / "vendor"))
    return max(vendor.glob("swagger-ui-*"), key=lambda folder: _version(folder.name))


def _version(folder_name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in folder_name.removeprefix("swagger-ui-").split(".") if part.isdigit())


def reads_openapi_31() -> bool:
    """Swagger UI reads OpenAPI 3.1 (FastAPI's version) from its version 5 on."""
    return _version(swagger_ui_folder().name)[:1] >= (5,)


@router.get("/api/docs", response_class=HTMLResponse)
def docs_page(request: Request) -> HTMLResponse:
    document = OPENAPI_URL if reads_openapi_31() else "/api/docs/openapi-3.0.json"
    page = render(request, "api_docs.html", openapi_url=url(request, document))
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


@router.get("/api/docs/swagger-ui/{name}")
def swagger_ui_file(name: str) -> Response:
    if name not in SWAGGER_UI_FILES:
        raise AssetNotFound(name)
    return FileResponse(swagger_ui_folder() / name, media_type=SWAGGER_UI_FILES[name],
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/api/docs/openapi-3.0.json")
def openapi_for_swagger_ui_4(request: Request) -> JSONResponse:
    """The API's document as OpenAPI 3.0, for a Swagger UI before version 5, which refuses 3.1 outright."""
    document = as_openapi_30(request.app.openapi())
    root_path = request.scope.get("root_path", "").rstrip("/")
    if root_path:  # mounted under a prefix: "Try it out" must call inside it (as FastAPI's own document does)
        document["servers"] = [{"url": root_path}]
    return JSONResponse(document)


def as_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The constructs of 3.1 that FastAPI writes, said the 3.0 way: ``anyOf`` with a ``null`` member is
    ``nullable``, ``const`` a one-value ``enum``, a numeric ``exclusiveMinimum`` a flag on ``minimum``."""
    converted = _schema_30(document)
    assert isinstance(converted, dict)
    converted["openapi"] = "3.0.3"
    return converted


def _schema_30(value: Any) -> Any:
    if isinstance(value, list):
        return [_schema_30(item) for item in value]
    if not isinstance(value, dict):
        return value
    node = {key: _schema_30(item) for key, item in value.items()}
    for combination in ("anyOf", "oneOf"):
        members = node.get(combination)
        if isinstance(members, list) and {"type": "null"} in members:
            rest = [member for member in members if member != {"type": "null"}]
            del node[combination]
            if len(rest) == 1 and "$ref" not in rest[0]:
                node = {**rest[0], **node}
            else:
                node[combination if len(rest) > 1 else "allOf"] = rest  # a $ref takes no siblings in 3.0
            node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[limit], node[bound] = node[bound], True
    return node
