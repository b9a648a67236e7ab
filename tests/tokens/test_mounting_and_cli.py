"""The router mounted in a user's own app, and `tunnelproof serve` flags and errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens import TokenService, create_token_router

from .helpers import ALICE, serve_subprocess, settings_for, static_env


async def test_router_mounted_in_a_user_app(emu: Any) -> None:
    settings = settings_for(emu.http_base, path="/voice/token")
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.include_router(create_token_router(settings))
    service = TokenService(settings)  # only for the handle's URL bookkeeping
    async with (
        running_token_service(app=app, service=service) as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        assert (await http.get(svc.url + "/hello")).json() == {"hello": "world"}
        r = await http.post(svc.url + "/voice/token", headers=ALICE)
        unauth = await http.post(svc.url + "/voice/token")
    assert r.status_code == 200
    assert r.json()["token"].startswith("auth_tokens/")
    assert unauth.status_code == 401


async def test_serve_flags_override_env(emu: Any, tmp_path: Path) -> None:
    env = static_env(emu.http_base, TUNNELPROOF_PATH="/from-env")
    async with (
        serve_subprocess(tmp_path, env, "--path", "/from-flag") as svc,
        httpx.AsyncClient(timeout=20) as http,
    ):
        assert svc.token_url.endswith("/from-flag")
        assert (await http.post(svc.token_url, headers=ALICE)).status_code == 200
        assert (await http.post(svc.url + "/from-env", headers=ALICE)).status_code == 404


async def test_serve_refuses_incomplete_auth_config_without_echoing_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELPROOF_")}
    env.update({"TUNNELPROOF_AUTH_MODE": "static", "TUNNELPROOF_STATIC_KEYS": "no-colon-secret"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from tunnelproof.cli import main; main()",
        "serve",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"bad configuration" in err
    assert b"no-colon-secret" not in err + out
    assert not [line for line in out.splitlines() if json.loads(line or b"{}").get("event")]


async def test_plugin_fixture_token_service(token_service: Any) -> None:
    # The fixture users get from the pytest plugin: a service minting from an emulator.
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(token_service.token_url, headers=token_service.auth_header)
    assert r.status_code == 200
    assert r.json()["wsUrl"].startswith("ws://127.0.0.1:")
