"""Serve the browser client next to the token route.

Two kinds of URL, so pages get both a stable address and long-lived caching:

* ``GET {base}/client.js`` — stable: a one-line module re-exporting the current version.
  ``Cache-Control: no-cache`` with an ``ETag``: browsers revalidate it (a 304, no body).
* ``GET {base}/client/{version}/{file}.js`` — versioned by content hash, so it is
  ``Cache-Control: public, max-age=31536000, immutable``. Only the current version is
  served; an old version answers 404 (its URL was never cacheable for a different body).

``{base}`` is the token route's folder (``/api/live`` for ``/api/live/token``). The files are
public code with no secret in them, so they carry ``Access-Control-Allow-Origin: *`` and a
page on another origin may import them.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from tunnelproof.browser import MODULE_FILES, module_path, module_version

JS_TYPE = "text/javascript; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"
_COMMON = {"X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}


def client_base(token_path: str) -> str:
    """The folder of the token route: ``/api/live/token`` -> ``/api/live``."""
    return token_path.rstrip("/").rsplit("/", 1)[0]


def client_url(token_path: str) -> str:
    """The stable URL of the client module for a token route path."""
    return f"{client_base(token_path)}/client.js"


def static_router(token_path: str) -> APIRouter:
    """An ``APIRouter`` serving the browser client beside ``token_path``."""
    base = client_base(token_path)
    version = module_version()
    bodies = {name: module_path(name).read_bytes() for name in MODULE_FILES}
    entry = (
        f"// tunnelproof browser client {version}: this stable URL revalidates; the\n"
        f"// versioned files it imports are cached for a year.\n"
        f'export * from "./client/{version}/client.js";\n'
    ).encode()
    entry_etag = f'"{version}"'
    router = APIRouter()

    @router.get(f"{base}/client.js", include_in_schema=False)
    async def entry_module(request: Request) -> Response:
        headers = {**_COMMON, "Cache-Control": "no-cache", "ETag": entry_etag}
        if request.headers.get("if-none-match") == entry_etag:
            return Response(status_code=304, headers=headers)
        return Response(entry, media_type=JS_TYPE, headers=headers)

    @router.get(f"{base}/client/{{file_version}}/{{name}}", include_in_schema=False)
    async def versioned_file(file_version: str, name: str) -> Response:
        body = bodies.get(name)
        if file_version != version or body is None:
            return Response(b"not found", status_code=404, media_type="text/plain", headers=_COMMON)
        return Response(body, media_type=JS_TYPE, headers={**_COMMON, "Cache-Control": IMMUTABLE})

    return router
