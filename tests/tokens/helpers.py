"""Helpers for the token-service tests: emulator, JWKS server, subprocess services, and
loopback upstreams that misbehave in ways the emulator cannot."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

EMULATOR_KEY = "emulator-key-6f1c2d9e"  # the "real" API key as far as these tests go
ISSUER = "https://idp.test.example"
AUDIENCE = "tunnelproof-tests"


# -- emulator --------------------------------------------------------------------------


def _emulator_server() -> Any:
    module = importlib.import_module("tunnelproof.emulator")
    server = getattr(module, "EmulatorServer", None)
    if server is None:
        pytest.skip("tunnelproof.emulator.EmulatorServer is not built yet")
    return server


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[Any]:
    """A running emulator (plain HTTP/ws on loopback) whose API key is EMULATOR_KEY."""
    server_cls = _emulator_server()
    async with server_cls(host="127.0.0.1", port=0, tls=False, api_key=EMULATOR_KEY) as server:
        yield server


# -- JWT / JWKS ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """(the IdP's signing key, an attacker's key)."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@dataclass
class Jwks:
    url: str
    key: rsa.RSAPrivateKey
    kid: str
    hits: list[float] = field(default_factory=list)
    down: bool = False  # answer 503 to simulate an IdP outage

    def token(
        self, *, key: Any = None, kid: str | None = None, alg: str = "RS256", **claims: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body,
            key if key is not None else self.key,
            algorithm=alg,
            headers={"kid": kid or self.kid},
        )


@pytest_asyncio.fixture
async def jwks(rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> AsyncIterator[Jwks]:
    """A JWKS document served over loopback HTTP by aiohttp (counts fetches)."""
    key = rsa_keys[0]
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    holder: dict[str, Jwks] = {}

    async def handler(_request: web.Request) -> web.Response:
        holder["jwks"].hits.append(time.monotonic())
        if holder["jwks"].down:
            return web.Response(status=503)
        return web.json_response({"keys": [public]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", handler)
    async with serve_aiohttp(app) as base:
        holder["jwks"] = Jwks(f"{base}/.well-known/jwks.json", key, "k1")
        yield holder["jwks"]


# -- loopback servers ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port>; yields ``http://127.0.0.1:PORT``."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class FakeUpstream:
    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def misbehaving_upstream(mode: str) -> AsyncIterator[FakeUpstream]:
    """A fake upstream, used only where the emulator cannot misbehave this way.

    ``hang``: accepts ``POST /v1alpha/auth_tokens`` and never answers (until closed);
    ``error``: answers 500 with a body that must not leak; ``refused``: 403, as Google
    answers a key it refuses; ``garbage``: 200 with no token.
    """
    release = asyncio.Event()

    upstream = FakeUpstream("")

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        upstream.requests.append(
            {
                "path": request.path,
                "query": request.query_string,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body.decode(),
            }
        )
        if mode == "hang":
            await release.wait()
            return web.Response(status=504)
        if mode == "error":
            # Echo the key back, as a careless upstream might: the service must redact it.
            key = request.headers.get("x-goog-api-key", "")
            message = f"UPSTREAM-SECRET-DETAIL internal (key {key})"
            return web.json_response(
                {"error": {"code": 500, "message": message, "status": "INTERNAL"}}, status=500
            )
        if mode == "refused":
            return web.json_response(
                {"error": {"code": 403, "message": "key refused", "status": "PERMISSION_DENIED"}},
                status=403,
            )
        return web.json_response({"unexpected": True})

    app = web.Application()
    app.router.add_post("/{version}/auth_tokens", handler)
    app.router.add_post("/api/live/token", handler)  # lets the client tests aim at it too
    async with serve_aiohttp(app) as base:
        upstream.base = base
        try:
            yield upstream
        finally:
            release.set()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (bind, read the port, close)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the service as a real subprocess (`tunnelproof serve`) -----------------------------


@dataclass
class ServiceProcess:
    url: str
    token_url: str
    process: asyncio.subprocess.Process
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def serve_subprocess(
    tmp_path: Path, env: dict[str, str], *args: str, name: str = "svc"
) -> AsyncIterator[ServiceProcess]:
    """Run ``tunnelproof serve --port 0`` with ``env``; wait for its JSON ready line."""
    stderr_path = tmp_path / f"{name}.stderr"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELPROOF_")}
    clean_env.pop("GEMINI_API_KEY", None)
    clean_env.update(env)
    with stderr_path.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tunnelproof.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=clean_env,
        )
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        except TimeoutError:
            raise AssertionError(f"no ready line; stderr:\n{stderr_path.read_text()}") from None
        if not line:
            raise AssertionError(f"serve exited early; stderr:\n{stderr_path.read_text()}")
        ready = json.loads(line)
        assert ready["event"] == "ready"
        yield ServiceProcess(ready["url"], ready["tokenUrl"], process, stderr_path)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def serve_subprocesses(
    tmp_path: Path, *specs: tuple[dict[str, str], str]
) -> AsyncIterator[list[ServiceProcess]]:
    """Several :func:`serve_subprocess` ``(env, name)`` started at once.

    Each start is mostly Python importing FastAPI and google-genai; on two cores two of them
    overlap instead of queueing. Every process that started is stopped at the end.
    """
    managers = [serve_subprocess(tmp_path, env, name=name) for env, name in specs]
    started = await asyncio.gather(*(m.__aenter__() for m in managers), return_exceptions=True)
    try:
        ready: list[ServiceProcess] = []
        for result in started:
            if isinstance(result, BaseException):
                raise result
            ready.append(result)
        yield ready
    finally:
        for manager, result in reversed(list(zip(managers, started, strict=True))):
            if not isinstance(result, BaseException):
                await manager.__aexit__(None, None, None)


def static_env(upstream: str, *, key: str | None = EMULATOR_KEY, **extra: str) -> dict[str, str]:
    """Environment for a subprocess service using static dev keys alice/bob."""
    env = {
        "TUNNELPROOF_UPSTREAM_BASE_URL": upstream,
        "TUNNELPROOF_AUTH_MODE": "static",
        "TUNNELPROOF_STATIC_KEYS": "alice:alice-key-0001,bob:bob-key-0002",
        "TUNNELPROOF_LOG_LEVEL": "debug",
    }
    if key is not None:
        env["GEMINI_API_KEY"] = key
    env.update(extra)
    return env


ALICE = {"Authorization": "Bearer alice-key-0001"}
BOB = {"Authorization": "Bearer bob-key-0002"}

Factory = Callable[..., Any]


def settings_for(upstream_http: str, ws_base: str | None = None, **overrides: Any) -> Any:
    """Settings for an in-process service: static keys alice/bob, key EMULATOR_KEY."""
    from pydantic import SecretStr

    from tunnelproof.tokens import TokenServiceSettings

    values: dict[str, Any] = {
        "api_key": SecretStr(EMULATOR_KEY),
        "upstream_base_url": upstream_http,
        "ws_base_url": ws_base,
        "auth_mode": "static",
        "static_keys": [SecretStr("alice:alice-key-0001"), SecretStr("bob:bob-key-0002")],
        "rate_limit": "100/minute",
        "mint_timeout": 5.0,
    }
    values.update(overrides)
    return TokenServiceSettings(**values)
