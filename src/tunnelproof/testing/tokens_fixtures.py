"""pytest fixtures (tokens); exported through tunnelproof.testing.pytest_plugin.

* :func:`running_token_service` — an async context manager that serves a token-service app
  with uvicorn on a real loopback port (in this process, in the test's event loop);
* ``token_service_factory`` — a fixture returning that context manager, closing whatever
  is still open at teardown;
* ``token_service`` — a service minting from a running emulator, with the dev bearer key
  :data:`DEV_BEARER_KEY` for user :data:`DEV_USER`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tunnelproof.testing.async_fixtures import async_fixture

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tunnelproof.tokens.router import TokenService
    from tunnelproof.tokens.settings import TokenServiceSettings

# The plugin loads in every pytest run of a project that installs tunnelproof: the token
# service (FastAPI, uvicorn via app_server, google-genai: over a second of CPU) is imported
# when a test first starts one, not at plugin load.

__all__ = [
    "DEV_BEARER_KEY",
    "DEV_USER",
    "RunningTokenService",
    "running_token_service",
    "token_service",
    "token_service_factory",
]

DEV_USER = "dev-user"
DEV_BEARER_KEY = "dev-bearer-key-for-tests-only"


@dataclass(frozen=True, slots=True)
class RunningTokenService:
    """A token service listening on loopback."""

    url: str
    """``http://127.0.0.1:PORT``"""
    app: FastAPI
    service: TokenService

    @property
    def token_url(self) -> str:
        """The full URL of the token route."""
        return self.url + self.service.settings.path

    @property
    def auth_header(self) -> dict[str, str]:
        """``Authorization`` for the dev bearer key (when the service uses it)."""
        return {"Authorization": f"Bearer {DEV_BEARER_KEY}"}


@contextlib.asynccontextmanager
async def running_token_service(
    settings: TokenServiceSettings | None = None,
    *,
    service: TokenService | None = None,
    app: FastAPI | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 20.0,
) -> AsyncIterator[RunningTokenService]:
    """Serve ``create_app(settings or service)`` with uvicorn on ``host`` and a free port.

    Pass ``app`` (with ``service``'s router mounted in it) to serve your own app instead.
    """
    from tunnelproof.testing.app_server import serving
    from tunnelproof.tokens.app import create_app
    from tunnelproof.tokens.router import TokenService

    service = service or TokenService(settings)
    app = app or create_app(service=service)
    async with serving(app, host=host, startup_timeout=startup_timeout) as url:
        yield RunningTokenService(url, app, service)


TokenServiceFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningTokenService]]


@async_fixture
async def token_service_factory() -> AsyncIterator[Callable[..., Any]]:
    """``await factory(settings or service=…)`` -> a :class:`RunningTokenService`.

    Every service started through it is stopped at teardown.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            settings: TokenServiceSettings | None = None, *, service: TokenService | None = None
        ) -> RunningTokenService:
            return await stack.enter_async_context(running_token_service(settings, service=service))

        yield start


@async_fixture
async def token_service(
    token_service_factory: Callable[..., Any],
) -> AsyncIterator[RunningTokenService]:
    """A token service minting from a fresh emulator; dev bearer key :data:`DEV_BEARER_KEY`."""
    # Looked up at run time so this module imports while the emulator is being built.
    emulator_server: Any = getattr(
        importlib.import_module("tunnelproof.emulator"), "EmulatorServer", None
    )
    if emulator_server is None:  # pragma: no cover
        pytest.skip("tunnelproof.emulator.EmulatorServer is not available")
    from pydantic import SecretStr

    from tunnelproof.tokens.settings import TokenServiceSettings

    async with emulator_server(host="127.0.0.1", port=0, tls=False, api_key="emulator-key") as emu:
        settings = TokenServiceSettings(
            api_key=SecretStr("emulator-key"),
            upstream_base_url=emu.http_base,
            ws_base_url=emu.ws_base,
            auth_mode="static",
            static_keys=[SecretStr(f"{DEV_USER}:{DEV_BEARER_KEY}")],
            rate_limit="1000/minute",
        )
        yield await token_service_factory(settings)
