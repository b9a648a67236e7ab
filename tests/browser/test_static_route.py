"""The token service serves the browser client: stable entry URL + immutable versioned files."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tunnelproof.browser import MODULE_FILES, module_path, module_version
from tunnelproof.browser.static import IMMUTABLE, client_url
from tunnelproof.tokens.app import create_app
from tunnelproof.tokens.router import create_token_router
from tunnelproof.tokens.settings import TokenServiceSettings


def _settings(**kwargs: object) -> TokenServiceSettings:
    return TokenServiceSettings(auth_mode="static", static_keys=[SecretStr("u:k")], **kwargs)


def _check(client: TestClient, base: str) -> None:
    entry = client.get(f"{base}/client.js")
    assert entry.status_code == 200
    assert entry.headers["content-type"].startswith("text/javascript")
    assert entry.headers["cache-control"] == "no-cache"
    match = re.search(r'"\./client/([^/]+)/client\.js"', entry.text)
    assert match is not None and match.group(1) == module_version()
    assert (
        client.get(
            f"{base}/client.js", headers={"If-None-Match": entry.headers["etag"]}
        ).status_code
        == 304
    )
    for name in MODULE_FILES:
        r = client.get(f"{base}/client/{module_version()}/{name}")
        assert r.status_code == 200, name
        assert r.headers["cache-control"] == IMMUTABLE
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == module_path(name).read_bytes()
    # Old versions, other files and path tricks are not served.
    assert client.get(f"{base}/client/0.0.1-000000000000/client.js").status_code == 404
    assert client.get(f"{base}/client/{module_version()}/__init__.py").status_code == 404
    assert client.get(f"{base}/client/{module_version()}/..%2F__init__.py").status_code == 404


def test_standalone_app_serves_the_client() -> None:
    with TestClient(create_app(_settings())) as client:
        _check(client, "/api/live")


def test_router_mounted_in_an_app_serves_it_beside_a_custom_token_path() -> None:
    app = FastAPI()
    app.include_router(create_token_router(_settings(path="/voice/token")))
    with TestClient(app) as client:
        _check(client, "/voice")
        assert client.get("/api/live/client.js").status_code == 404
    assert client_url("/voice/token") == "/voice/client.js"


def test_version_changes_with_the_content() -> None:
    version = module_version()
    assert re.fullmatch(r"[\w.+-]+-[0-9a-f]{12}", version)
    module_version.cache_clear()
    assert module_version() == version  # deterministic for the same files
