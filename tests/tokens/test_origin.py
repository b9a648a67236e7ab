"""Origin allow-list on the route and CORS that agrees with it."""

from __future__ import annotations

from typing import Any

import httpx

from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, closed_port_url, settings_for

APP = "https://app.example"
EVIL = "https://evil.example"


async def test_allowed_origin_gets_a_token_and_cors_headers(emu: Any) -> None:
    settings = settings_for(emu.http_base, allowed_origins=[APP])
    async with running_token_service(settings) as svc, httpx.AsyncClient(timeout=20) as http:
        preflight = await http.options(
            svc.token_url,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        ok = await http.post(svc.token_url, headers={**ALICE, "Origin": APP})
        evil_preflight = await http.options(
            svc.token_url, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
        )
        evil = await http.post(svc.token_url, headers={**ALICE, "Origin": EVIL})
        no_origin = await http.post(svc.token_url, headers=ALICE)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-origin" not in evil_preflight.headers
    # CORS only hides responses; the route itself must refuse, or the token is minted anyway.
    assert evil.status_code == 403
    assert "token" not in evil.json()
    assert no_origin.status_code == 200  # server-to-server callers send no Origin


async def test_no_allowed_origins_refuses_every_browser(emu: Any) -> None:
    async with (
        running_token_service(settings_for(emu.http_base, allowed_origins=[])) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        browser = await http.post(svc.token_url, headers={**ALICE, "Origin": APP})
        null_origin = await http.post(svc.token_url, headers={**ALICE, "Origin": "null"})
        server = await http.post(svc.token_url, headers=ALICE)
    assert browser.status_code == 403
    assert null_origin.status_code == 403
    assert server.status_code == 200


async def test_a_browser_on_an_allowed_origin_can_read_when_to_come_back() -> None:
    # Retry-After and retry-after-ms are not CORS-safelisted: unless exposed, a
    # cross-origin page sees a bare 503 and retries on its own backoff instead of its slot.
    settings = settings_for(closed_port_url(), allowed_origins=[APP])
    async with running_token_service(settings) as svc, httpx.AsyncClient(timeout=20) as http:
        shed = await http.post(svc.token_url, headers={**ALICE, "Origin": APP})
    assert shed.status_code == 503
    exposed = {h.strip().lower() for h in shed.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "retry-after-ms"} <= exposed
    assert int(shed.headers["retry-after-ms"]) >= 1
