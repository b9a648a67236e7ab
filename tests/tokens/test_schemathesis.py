"""Schemathesis against the live service's OpenAPI schema: no unexpected 5xx.

The service and the emulator run in a background thread's event loop on real loopback
ports; schemathesis (Python API + Hypothesis, bounded examples) calls it over HTTP with and
without a valid bearer key, in positive and negative generation modes. 502/503 are the
documented answers to upstream trouble and are not expected here (the emulator is up), so
every 5xx fails the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, EMULATOR_KEY, settings_for


class _Background:
    """Emulator + token service in their own loop, so sync schemathesis calls can reach them."""

    def __init__(self) -> None:
        self.url = ""
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test below
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        from tunnelproof.emulator import EmulatorServer

        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with (
            EmulatorServer(host="127.0.0.1", port=0, tls=False, api_key=EMULATOR_KEY) as emu,
            running_token_service(
                settings_for(emu.http_base, rate_limit="100000/minute", docs=True)
            ) as svc,
        ):
            self.url = svc.url
            self.ready.set()
            await self.stop.wait()


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    background = _Background()
    background.thread.start()
    assert background.ready.wait(30), "service did not start"
    if background.error is not None:
        raise background.error
    try:
        yield background.url
    finally:
        assert background.loop is not None
        assert background.stop is not None
        background.loop.call_soon_threadsafe(background.stop.set)
        background.thread.join(15)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("authenticated", [True, False])
def test_no_server_errors(live_url: str, mode: GenerationMode, authenticated: bool) -> None:
    schema = schemathesis.openapi.from_url(live_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/api/live/token"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    }
    headers = dict(ALICE) if authenticated else {}
    statuses: list[int] = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to make invalid: no parameters, no body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live_url, headers=headers, timeout=20)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text)
            case.validate_response(response, checks=[not_a_server_error], headers=headers)

        check()
    assert statuses, "no request was made"
    if authenticated and mode is GenerationMode.POSITIVE:
        assert 200 in statuses  # real tokens were minted, not just refusals
