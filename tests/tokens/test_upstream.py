"""Upstream down, slow, erroring or saturated: the service answers fast and leaks nothing.

These use small aiohttp upstreams on loopback (helpers.misbehaving_upstream) because the
emulator serves tokens correctly; here we need one that hangs or fails on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, BOB, EMULATOR_KEY, closed_port_url, misbehaving_upstream, settings_for


async def test_upstream_down_is_502(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        running_token_service(settings_for(closed_port_url())) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        started = time.monotonic()
        r = await http.post(svc.token_url, headers=ALICE)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
    assert r.status_code == 502
    assert r.json() == {"error": "Failed to issue token"}
    assert r.headers["cache-control"] == "no-store"
    # No hidden SDK retry with a 1-10 s sleep: a refused connection fails at once.
    assert elapsed < 5
    assert 'tunnelproof_token_upstream_errors_total{kind="connect"} 1.0' in metrics
    assert "upstream mint failed (connect)" in caplog.text
    assert EMULATOR_KEY not in caplog.text


async def test_upstream_slow_times_out_as_502() -> None:
    async with (
        misbehaving_upstream("hang") as upstream,
        running_token_service(settings_for(upstream.base, mint_timeout=1.0)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        started = time.monotonic()
        r = await http.post(svc.token_url, headers=ALICE)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
    assert r.status_code == 502
    assert 0.9 <= elapsed < 8  # bounded by mint_timeout (+1 s guard), not by the upstream
    assert 'tunnelproof_token_upstream_errors_total{kind="timeout"} 1.0' in metrics


async def test_upstream_error_text_stays_in_the_server_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        misbehaving_upstream("error") as upstream,
        running_token_service(settings_for(upstream.base)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        r = await http.post(svc.token_url, headers=ALICE)
    assert r.status_code == 502
    assert "UPSTREAM-SECRET-DETAIL" not in r.text
    assert r.json() == {"error": "Failed to issue token"}
    assert "UPSTREAM-SECRET-DETAIL" in caplog.text  # the operator can see what happened
    assert EMULATOR_KEY not in caplog.text


async def test_upstream_answer_without_token_is_502() -> None:
    async with (
        misbehaving_upstream("garbage") as upstream,
        running_token_service(settings_for(upstream.base)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        r = await http.post(svc.token_url, headers=ALICE)
    assert r.status_code == 502


async def test_saturated_mint_slots_shed_load_fast_with_retry_after() -> None:
    # The stuck mints hold both slots for mint_timeout: longer than the 2 s the shed
    # answer is allowed below, and the test waits for them to time out at the end.
    async with (
        misbehaving_upstream("hang") as upstream,
        running_token_service(
            settings_for(upstream.base, mint_timeout=3.5, max_concurrent_mints=2)
        ) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        stuck = [asyncio.create_task(http.post(svc.token_url, headers=h)) for h in (ALICE, BOB)]
        # Wait (bounded) until both mints are in flight at the (hanging) upstream.
        for _ in range(1000):
            if len(upstream.requests) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(upstream.requests) == 2
        started = time.monotonic()
        shed = await http.post(svc.token_url, headers=ALICE)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
        results = await asyncio.gather(*stuck)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert shed.headers["cache-control"] == "no-store"
    assert elapsed < 2  # answered at once, not queued behind the stuck mints
    assert 'tunnelproof_token_rate_limited_total{reason="overload"} 1.0' in metrics
    assert [r.status_code for r in results] == [502, 502]
    assert len(upstream.requests) == 2  # the shed request never reached upstream
