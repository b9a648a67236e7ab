"""Upstream down, slow, erroring or saturated: the service answers fast and leaks nothing.

These use small aiohttp upstreams on loopback (helpers.misbehaving_upstream) because the
emulator serves tokens correctly; here we need one that hangs or fails on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import httpx
import pytest

from tunnelproof.testing.tokens_fixtures import running_token_service

from .helpers import ALICE, BOB, EMULATOR_KEY, closed_port_url, misbehaving_upstream, settings_for


async def test_upstream_down_is_503_with_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        running_token_service(settings_for(closed_port_url())) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        started = time.monotonic()
        r = await http.post(svc.token_url, headers=ALICE)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
    # Not 502: a herd retries a 502 after a short backoff; a 503 + Retry-After is a wait.
    assert r.status_code == 503
    assert r.json() == {
        "error": "Upstream unavailable, retry later",
        "code": "upstream_unavailable",
    }
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["cache-control"] == "no-store"
    # No hidden SDK retry with a 1-10 s sleep: a refused connection fails at once.
    assert elapsed < 5
    assert 'tunnelproof_token_upstream_errors_total{kind="connect"} 1.0' in metrics
    assert "upstream mint failed (connect)" in caplog.text
    assert EMULATOR_KEY not in caplog.text


async def test_while_the_upstream_is_down_retry_after_grows_with_the_backlog() -> None:
    # admit_rate 4/s: the n-th caller shed is told to come back about n / 4 s later, after
    # the next upstream probe (1 s), so a herd returns at the rate the service mints.
    settings = settings_for(closed_port_url(), admit_rate=4.0, upstream_probe_interval=1.0)
    async with (
        running_token_service(settings) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        answers = [await http.post(svc.token_url, headers=ALICE) for _ in range(20)]
        metrics = (await http.get(svc.url + "/metrics")).text
    assert [r.status_code for r in answers] == [503] * 20
    waits = [int(r.headers["retry-after"]) for r in answers]
    assert waits == sorted(waits)  # later callers, later slots
    assert waits[0] <= 2 and waits[-1] >= 4  # 20 callers at 4/s: about 5 s of backlog
    # The same slots to the millisecond (what tunnelproof's clients read): 250 ms apart,
    # less the time between two requests, each within its Retry-After second.
    ms = [int(r.headers["retry-after-ms"]) for r in answers]
    gaps = [b - a for a, b in itertools.pairwise(ms)]
    assert all(0 < g <= 251 for g in gaps), gaps
    assert all((w - 1) * 1000 < m <= w * 1000 for w, m in zip(waits, ms, strict=True))
    # No slot before the first probe, 1 s after the upstream went down.
    assert 1000 <= ms[0] <= 1250
    assert all(r.json()["code"] == "upstream_unavailable" for r in answers)
    # One upstream call (the first; the probe interval has not passed), the rest shed at
    # once without upstream work.
    assert 'tunnelproof_token_upstream_errors_total{kind="connect"} 1.0' in metrics
    assert 'tunnelproof_token_rate_limited_total{reason="upstream_down"} 19.0' in metrics


async def test_requests_waiting_in_line_when_the_upstream_goes_down_are_shed_without_it() -> None:
    # One mint slot, held by a request the upstream never answers (mint_timeout 1 s); four
    # more wait in line (up to 10 s). Once the first one times out the upstream is down:
    # the four are shed as they reach the slot, not sent to the hung upstream one by one
    # (which held the herd's answers for a mint_timeout each, and sent it all upstream).
    settings = dict(
        mint_timeout=1.0,
        max_concurrent_mints=1,
        mint_queue_timeout=10.0,
        upstream_probe_interval=30.0,  # no probe's turn during the test
    )
    async with (
        misbehaving_upstream("hang") as upstream,
        running_token_service(settings_for(upstream.base, **settings)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        started = time.monotonic()
        first = asyncio.create_task(http.post(svc.token_url, headers=ALICE))
        async with asyncio.timeout(10):
            while not upstream.requests:  # the slot is taken once the upstream is asked
                await asyncio.sleep(0.01)
        waiting = [http.post(svc.token_url, headers=h) for h in (ALICE, BOB, ALICE, BOB)]
        answers = await asyncio.gather(first, *waiting)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
    assert [r.status_code for r in answers] == [503] * 5
    assert all(r.json()["code"] == "upstream_unavailable" for r in answers)
    assert len(upstream.requests) == 1
    assert elapsed < 4  # about mint_timeout (1 s + its guard), not 5 of them
    assert 'tunnelproof_token_rate_limited_total{reason="upstream_down"} 4.0' in metrics


async def test_a_down_upstream_is_probed_once_per_interval() -> None:
    async with (
        misbehaving_upstream("error") as upstream,
        running_token_service(settings_for(upstream.base, upstream_probe_interval=0.3)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        first = await http.post(svc.token_url, headers=ALICE)
        shed = [await http.post(svc.token_url, headers=ALICE) for _ in range(3)]
        calls_while_down = len(upstream.requests)
        await asyncio.sleep(0.4)
        probe = await http.post(svc.token_url, headers=BOB)
    assert first.status_code == 503 and all(r.status_code == 503 for r in shed)
    assert calls_while_down == 1  # the shed requests never reached the upstream
    assert probe.status_code == 503
    assert len(upstream.requests) == 2  # the probe did


async def test_upstream_slow_times_out_as_503() -> None:
    async with (
        misbehaving_upstream("hang") as upstream,
        running_token_service(settings_for(upstream.base, mint_timeout=1.0)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        started = time.monotonic()
        r = await http.post(svc.token_url, headers=ALICE)
        elapsed = time.monotonic() - started
        metrics = (await http.get(svc.url + "/metrics")).text
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
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
    assert r.status_code == 503  # an upstream 5xx is transient
    assert "UPSTREAM-SECRET-DETAIL" not in r.text
    assert r.json() == {
        "error": "Upstream unavailable, retry later",
        "code": "upstream_unavailable",
    }
    assert "UPSTREAM-SECRET-DETAIL" in caplog.text  # the operator can see what happened
    assert EMULATOR_KEY not in caplog.text


async def test_an_upstream_that_refuses_the_key_is_502_not_a_wait() -> None:
    async with (
        misbehaving_upstream("refused") as upstream,
        running_token_service(settings_for(upstream.base)) as svc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        r = await http.post(svc.token_url, headers=ALICE)
        again = await http.post(svc.token_url, headers=ALICE)
    assert r.status_code == 502
    assert r.json() == {"error": "Failed to issue token"}
    assert "retry-after" not in r.headers
    assert again.status_code == 502
    assert len(upstream.requests) == 2  # not a down upstream: nothing is shed


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
            settings_for(
                upstream.base, mint_timeout=3.5, max_concurrent_mints=2, mint_queue_timeout=0
            )
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
    # Every slot busy: the service is behind by work it cannot size, so not before 1 s
    # (the queue's own slot comes after that: 1 s + 1 / admit_rate, rounded up).
    assert 1000 <= int(shed.headers["retry-after-ms"]) <= 1100
    assert shed.headers["retry-after"] == "2"
    assert shed.headers["cache-control"] == "no-store"
    assert elapsed < 2  # answered at once, not queued behind the stuck mints
    assert 'tunnelproof_token_rate_limited_total{reason="overload"} 1.0' in metrics
    assert shed.json()["code"] == "overloaded"
    assert [r.status_code for r in results] == [503, 503]  # the upstream timed out
    assert len(upstream.requests) == 2  # the shed request never reached upstream


async def test_a_request_waits_in_line_for_a_busy_mint_slot() -> None:
    from tunnelproof.protocol.config import LiveConfig
    from tunnelproof.tokens.minting import Minter, MintingOverloaded

    def minter(queue_timeout: float) -> Minter:
        return Minter(
            EMULATOR_KEY,
            LiveConfig(),
            base_url=closed_port_url(),
            max_concurrent=1,
            queue_timeout=queue_timeout,
        )

    async def hold(m: Minter, seconds: float, held: asyncio.Event) -> None:
        async with m.reserved():
            held.set()
            await asyncio.sleep(seconds)

    patient = minter(queue_timeout=5.0)
    held = asyncio.Event()
    holder = asyncio.create_task(hold(patient, 0.2, held))
    await held.wait()
    started = time.monotonic()
    async with patient.reserved():  # waits for the holder's slot instead of being shed
        waited = time.monotonic() - started
    await holder
    assert 0.1 <= waited < 4

    impatient = minter(queue_timeout=0.05)
    held = asyncio.Event()
    holder = asyncio.create_task(hold(impatient, 1.0, held))
    await held.wait()
    with pytest.raises(MintingOverloaded):
        async with impatient.reserved():
            pass
    await holder
    await patient.aclose()
    await impatient.aclose()
