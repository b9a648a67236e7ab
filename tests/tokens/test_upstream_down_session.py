"""A session through a token service whose upstream (Google) is down: it waits, then resumes.

The service answers 503 + a backlog-sized wait (``retry-after-ms``, ``Retry-After``) while
its upstream is down; the session takes each as a wait, not a failure against its caps. Before issue 15 the service
answered 502, which the session counted: with a cap of 2 failures it gave up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.policy import SHED_MIN_DELAY, RetryPolicy
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens import TokenServiceSource

from .helpers import settings_for


async def _until(events: list[Any], predicate: Any, timeout: float) -> bool:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
    return True


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_a_session_waits_out_a_down_upstream_instead_of_giving_up(emu: Any) -> None:
    async with (
        TunnelProxy("127.0.0.1", emu.port) as upstream_link,  # service → Google (minting)
        TunnelProxy("127.0.0.1", emu.port) as live_link,  # device → Google (the socket)
    ):
        settings = settings_for(
            upstream_link.url("http"), live_link.url("ws"), upstream_probe_interval=0.5
        )
        async with running_token_service(settings) as svc:
            source = TokenServiceSource(svc.token_url, lambda: "Bearer alice-key-0001")
            policy = RetryPolicy(max_attempts_per_outage=2)
            session = LiveSession(LiveConfig(), source, policy=policy)
            seen: list[Any] = []

            async def consume() -> None:
                async for event in session.events():
                    seen.append(event)

            reader = asyncio.create_task(consume())
            try:
                await session.start()
                await _until(seen, lambda: session.resumption_handle is not None, 15)
                upstream_link.offline()  # Google is down for the token service
                live_link.reset()  # and the session's socket drops
                await _until(
                    seen, lambda: sum(isinstance(e, ev.Reconnecting) for e in seen) >= 4, 20
                )
                upstream_link.restore()
                await _until(
                    seen, lambda: any(isinstance(e, (ev.Resumed, ev.Failed)) for e in seen), 20
                )
            finally:
                await session.close()
                reader.cancel()
    assert not [e for e in seen if isinstance(e, ev.Failed)], "the session gave up"
    assert any(isinstance(e, ev.Resumed) for e in seen)
    waits = [e for e in seen if isinstance(e, ev.Reconnecting) and "503" in e.reason]
    assert len(waits) >= 3  # more than the cap of 2: waits are not failures
    # The service's own slots, read from retry-after-ms: the first at least first_wait (1 s)
    # after the upstream went down, later ones just after each probe (0.5 s apart here),
    # so sub-second; none shorter than the policy's floor (no hot loop).
    assert waits[0].delay >= 0.9
    assert all(e.delay >= SHED_MIN_DELAY for e in waits)
    assert any(e.delay < 1.0 for e in waits[1:])  # whole-second Retry-After would be >= 1
    assert session.metrics.shed_waits >= 3
