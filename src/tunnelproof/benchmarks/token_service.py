"""Benchmark 6: token service throughput and latency vs a bare route that only calls upstream.

Question: what do authentication, rate limiting and the rest of the token route cost, and
how does the service scale out with Redis-shared limits?

Method: the emulator runs as a subprocess (``EmulatorProcess``) and mints the tokens. Each
service under test is its own subprocess with one uvicorn worker, and the load comes from
a third process (:mod:`tunnelproof.benchmarks.loadgen`: httpx, closed loop, a fixed number
of requests in flight, bounded by a request count and a duration, after a warm-up). The
services:

* **tunnelproof**: ``tunnelproof serve`` with JWT authentication against a JWKS (RS256
  keys served by this process, fetched once and cached by the service, as with a real
  OIDC provider), a per-user rate limit in memory (generous, so it is evaluated on every
  request but never refuses: 200 simulated users), minting through its ``Minter``
  (google-genai). ``max_concurrent_mints`` is raised to the load's concurrency so the
  service does not shed load the bare routes would accept.
* **bare (httpx)**: a FastAPI route that only POSTs the same JSON upstream
  (:mod:`tunnelproof.benchmarks.bare_app`), no auth, no limits.
* **bare (google-genai)**: the same route minting through google-genai, as our minter
  does: tunnelproof vs this one isolates the cost of auth + limits + checks.
* **two tunnelproof instances with Redis**: the same service twice, sharing the rate
  limit through a ``redis-server`` on loopback; the load alternates between them. A second
  pair with a 5/minute limit checks that the budget really is shared (12 requests from one
  user alternating between instances → 5 allowed).

**CPU per request, Redis vs memory** (the scale-out cost): one service with in-memory
limits and one with Redis-shared limits run side by side; the load alternates between them
in blocks (A B, B A, …, after a warm-up block each), and each block's cost is the service
process's own user + system CPU time (``/proc/PID/stat``) per successful request. The
median over blocks is compared (goal: Redis at most 1.2× memory); the spread is kept.

Reported: successful requests/s and p50/p99 latency per service; the overhead ratio. All
processes share two cores, so the bare route also competes with the emulator and the load
generator: compare ratios, not absolute numbers. The tunnelproof requests/s is also the
token-service capacity the storm simulation (benchmark 7) uses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import BenchContext, BenchResult, Comparison, method_text
from tunnelproof.benchmarks.procs import json_process, run_json_worker, serve_argv

NAME = "token_service"
TITLE = "Token service: requests/s and latency"

USERS = 200
ISSUER = "https://login.bench.invalid/"
AUDIENCE = "tunnelproof-bench"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Jwks:
    """An RSA key pair, its JWKS document and signed JWTs for simulated users."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        self.kid = "bench-key-1"
        self.document = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }

    def token(self, user: str, ttl: float = 3600.0) -> str:
        """A signed RS256 JWT for ``user``."""
        import jwt

        now = int(time.time())
        return jwt.encode(
            {"sub": user, "iat": now, "exp": now + int(ttl), "iss": ISSUER, "aud": AUDIENCE},
            self.key,
            algorithm="RS256",
            headers={"kid": self.kid},
        )


@contextlib.asynccontextmanager
async def serve_jwks(jwks: Jwks) -> AsyncIterator[str]:
    """Serve ``jwks.document`` on loopback; yields its URL."""
    from aiohttp import web

    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(jwks.document)

    app = web.Application()
    app.router.add_get("/jwks.json", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        await runner.cleanup()


def _serve_argv(emu: Any, jwks_url: str, rate_limit: str, redis_url: str | None) -> list[str]:
    auth = ["--auth-mode", "jwks", "--jwks-url", jwks_url, "--issuer", ISSUER]
    argv = serve_argv(emu, [*auth, "--audience", AUDIENCE], rate_limit=rate_limit)
    if redis_url:
        argv += ["--redis-url", redis_url]
    return argv


async def _load(
    urls: list[str],
    bearers: list[str],
    *,
    concurrency: int,
    requests: int,
    duration: float,
    warmup: int | None = None,
) -> dict[str, Any]:
    config = {
        "urls": urls,
        "bearers": bearers,
        "concurrency": concurrency,
        "max_requests": requests,
        "duration": duration,
        "warmup": min(100, requests // 5) if warmup is None else warmup,
    }
    return await run_json_worker("tunnelproof.benchmarks.loadgen", config, timeout=duration + 120.0)


async def run(ctx: BenchContext) -> BenchResult:
    """Measure the four services (see the module docstring)."""
    from tunnelproof.emulator import DEFAULT_API_KEY, EmulatorProcess

    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    concurrency = 16
    requests, duration = (300, 3.0) if ctx.quick else (6000, 15.0)
    result.params = {
        "concurrency": concurrency,
        "max_requests": requests,
        "max_duration_s": duration,
        "users": USERS,
        "auth": "RS256 JWT via JWKS",
        "rate_limit": "100000/minute per user (evaluated, never refusing)",
    }
    jwks = Jwks()
    bearers = [f"Bearer {jwks.token(f'user-{i}')}" for i in range(USERS)]
    env = {
        "TUNNELPROOF_API_KEY": DEFAULT_API_KEY,
        "TUNNELPROOF_MAX_CONCURRENT_MINTS": str(concurrency),
    }
    runs: dict[str, Any] = {}
    async with EmulatorProcess() as emu, serve_jwks(jwks) as jwks_url:
        ours_argv = _serve_argv(emu, jwks_url, "100000/minute", None)
        async with json_process(ours_argv, env=env) as ours:
            ctx.log("  tunnelproof serve (1 worker)")
            runs["tunnelproof"] = await _load(
                [ours.ready["tokenUrl"]],
                bearers,
                concurrency=concurrency,
                requests=requests,
                duration=duration,
            )
        for client in ("httpx", "genai"):
            argv = [
                sys.executable,
                "-m",
                "tunnelproof.benchmarks.bare_app",
                "--upstream",
                emu.http_base,
                "--api-key",
                DEFAULT_API_KEY,
                "--client",
                client,
            ]
            async with json_process(argv) as bare:
                ctx.log(f"  bare FastAPI route ({client})")
                runs[f"bare_{client}"] = await _load(
                    [bare.ready["tokenUrl"]],
                    bearers,
                    concurrency=concurrency,
                    requests=requests,
                    duration=duration,
                )
        await _redis_runs(
            ctx,
            result,
            runs,
            emu,
            jwks,
            jwks_url,
            bearers,
            env,
            concurrency=concurrency,
            requests=requests,
            duration=duration,
        )
    result.data["runs"] = runs
    ours_run = runs["tunnelproof"]
    result.data["capacity_rps"] = ours_run["rps"]
    for name, run_ in runs.items():
        bad = {k: v for k, v in run_["statuses"].items() if k != "200"}
        if bad:
            result.notes.append(f"{name}: non-200 answers {bad}")
    _comparisons(result, runs)
    _charts(ctx, result, runs)
    return result


async def _redis_runs(
    ctx: BenchContext,
    result: BenchResult,
    runs: dict[str, Any],
    emu: Any,
    jwks: Jwks,
    jwks_url: str,
    bearers: list[str],
    env: dict[str, str],
    *,
    concurrency: int,
    requests: int,
    duration: float,
) -> None:
    from tunnelproof.testing.redis_server import RedisServer, RedisServerUnavailable

    try:
        redis = RedisServer(install=False).start()
    except RedisServerUnavailable as exc:
        result.notes.append(f"Redis part skipped: {exc}")
        return
    try:
        argv = _serve_argv(emu, jwks_url, "100000/minute", redis.url)
        async with json_process(argv, env=env) as a, json_process(argv, env=env) as b:
            ctx.log("  two tunnelproof instances, Redis-shared limits")
            runs["tunnelproof_x2_redis"] = await _load(
                [a.ready["tokenUrl"], b.ready["tokenUrl"]],
                bearers,
                concurrency=concurrency * 2,
                requests=requests,
                duration=duration,
            )
        strict = _serve_argv(emu, jwks_url, "5/minute", redis.url)
        async with json_process(strict, env=env) as a, json_process(strict, env=env) as b:
            one_user = [f"Bearer {jwks.token('limit-check-user')}"]
            check = await run_json_worker(
                "tunnelproof.benchmarks.loadgen",
                {
                    "urls": [a.ready["tokenUrl"], b.ready["tokenUrl"]],
                    "bearers": one_user,
                    "concurrency": 1,
                    "max_requests": 12,
                    "duration": 30.0,
                },
                timeout=60.0,
            )
            result.data["shared_limit_check"] = {
                "limit": "5/minute",
                "requests": 12,
                "statuses": check["statuses"],
                "allowed": check["statuses"].get("200", 0),
            }
        ctx.log("  CPU per request: in-memory vs Redis-shared limits, interleaved")
        rounds, block = (3, 100) if ctx.quick else (8, 400)
        result.data["cpu_per_request"] = await cpu_per_request(
            ctx,
            emu,
            jwks,
            jwks_url,
            bearers,
            env,
            redis.url,
            concurrency=concurrency,
            rounds=rounds,
            block=block,
        )
    finally:
        redis.stop()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``)."""
    import os

    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


async def cpu_per_request(
    ctx: BenchContext,
    emu: Any,
    jwks: Jwks,
    jwks_url: str,
    bearers: list[str],
    env: dict[str, str],
    redis_url: str,
    *,
    concurrency: int,
    rounds: int,
    block: int,
) -> dict[str, Any]:
    """CPU seconds the service process spends per successful request: in-memory limits vs
    Redis-shared limits, side by side and interleaved.

    Both services run at once (an idle one costs nothing); the load alternates between them
    in blocks of ``block`` requests (A B, B A, A B, …), so a busy spell of the machine
    falls on both. Each block's cost is the service process's own user + system CPU time
    (``/proc/PID/stat``) divided by the block's successful requests; a warm-up block per
    service (JWKS fetch, connection pools, imports) is not counted.
    """
    argv_mem = _serve_argv(emu, jwks_url, "100000/minute", None)
    argv_redis = _serve_argv(emu, jwks_url, "100000/minute", redis_url)
    per_request: dict[str, list[float]] = {"memory": [], "redis": []}
    statuses: dict[str, dict[str, int]] = {"memory": {}, "redis": {}}
    async with json_process(argv_mem, env=env) as mem, json_process(argv_redis, env=env) as red:
        services = {"memory": mem, "redis": red}

        async def one_block(name: str, count: int) -> tuple[float, int]:
            svc = services[name]
            before = process_cpu_seconds(svc.pid)
            load = await _load(
                [svc.ready["tokenUrl"]],
                bearers,
                concurrency=concurrency,
                requests=count,
                duration=120.0,
                warmup=0,
            )
            spent = process_cpu_seconds(svc.pid) - before
            for status, n in load["statuses"].items():
                statuses[name][status] = statuses[name].get(status, 0) + n
            return spent, int(load["statuses"].get("200", 0))

        for name in services:
            await one_block(name, max(50, block // 2))  # warm-up, not counted
        for index in range(rounds):
            order = ("memory", "redis") if index % 2 == 0 else ("redis", "memory")
            for name in order:
                spent, ok = await one_block(name, block)
                if ok:
                    per_request[name].append(spent / ok)
            ctx.log(
                f"  CPU/request round {index + 1}/{rounds}: memory "
                f"{per_request['memory'][-1] * 1e3:.2f} ms, redis "
                f"{per_request['redis'][-1] * 1e3:.2f} ms"
            )
    med = {k: statistics.median(v) for k, v in per_request.items()}
    return {
        "rounds": rounds,
        "block_requests": block,
        "concurrency": concurrency,
        "cpu_per_request_s": per_request,
        "median_s": med,
        "spread_s": {k: [min(v), max(v)] for k, v in per_request.items()},
        "ratio_redis_to_memory": med["redis"] / med["memory"],
        "ratio_per_round": [
            r / m for m, r in zip(per_request["memory"], per_request["redis"], strict=False)
        ],
        "statuses": statuses,
    }


def _comparisons(result: BenchResult, runs: dict[str, Any]) -> None:
    ours = runs["tunnelproof"]
    bare = runs["bare_httpx"]
    genai = runs["bare_genai"]
    result.comparisons += [
        Comparison(
            "requests/s, one worker (JWT + rate limit + minting)",
            "req/s",
            ours["rps"],
            "bare FastAPI route (httpx → upstream)",
            bare["rps"],
            better="higher",
            note="below 1×: the overhead of auth, limits, checks and the SDK",
        ),
        Comparison(
            "latency p50",
            "s",
            ours["latency_s"]["p50"],
            "bare route (httpx)",
            bare["latency_s"]["p50"],
        ),
        Comparison(
            "latency p99",
            "s",
            ours["latency_s"]["p99"],
            "bare route (httpx)",
            bare["latency_s"]["p99"],
        ),
        Comparison(
            "requests/s, one worker",
            "req/s",
            ours["rps"],
            "bare route minting via google-genai (as ours does)",
            genai["rps"],
            better="higher",
            note="isolates auth + rate limiting + route checks from the SDK's cost",
        ),
    ]
    cpu = result.data.get("cpu_per_request")
    if cpu is not None:
        spread = cpu["spread_s"]
        per_round = cpu["ratio_per_round"]
        result.comparisons.append(
            Comparison(
                "service CPU per request, Redis-shared limits",
                "s",
                cpu["median_s"]["redis"],
                "the same service, in-memory limits",
                cpu["median_s"]["memory"],
                better="floor",  # ratio = Redis / memory, the scale-out overhead
                note=(
                    f"goal: at most 1.2x; median of {cpu['rounds']} interleaved blocks of "
                    f"{cpu['block_requests']} requests; Redis "
                    f"{spread['redis'][0] * 1e3:.2f}-{spread['redis'][1] * 1e3:.2f} ms, memory "
                    f"{spread['memory'][0] * 1e3:.2f}-{spread['memory'][1] * 1e3:.2f} ms; "
                    f"per-round Redis/memory {min(per_round):.2f}-{max(per_round):.2f}x"
                ),
            )
        )
    pair = runs.get("tunnelproof_x2_redis")
    if pair is not None:
        check = result.data.get("shared_limit_check", {})
        result.comparisons.append(
            Comparison(
                "requests/s, two instances, Redis-shared limits",
                "req/s",
                pair["rps"],
                "one instance, in-memory limits",
                ours["rps"],
                better="higher",
                note=(
                    f"p99 {pair['latency_s']['p99']:.3g} s; shared 5/minute budget allowed "
                    f"{check.get('allowed', '?')} of {check.get('requests', '?')} requests "
                    "spread over both instances"
                ),
            )
        )


def _charts(ctx: BenchContext, result: BenchResult, runs: dict[str, Any]) -> None:
    labels = {
        "tunnelproof": "tunnelproof",
        "bare_httpx": "bare (httpx)",
        "bare_genai": "bare (google-genai)",
        "tunnelproof_x2_redis": "tunnelproof ×2 + Redis",
    }
    present = [k for k in labels if k in runs]
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        "Token service: successful requests/s (one uvicorn worker each)",
        [labels[k] for k in present],
        {"requests/s": [runs[k]["rps"] for k in present]},
        ylabel="requests/s",
    )
    cpu = result.data.get("cpu_per_request")
    if cpu is not None:
        per = cpu["cpu_per_request_s"]
        charts.safe_chart(
            result.notes,
            result.charts,
            charts.grouped_bars,
            ctx.chart_path(NAME, "_cpu"),
            "Service CPU per request (ms), interleaved blocks: in-memory vs Redis-shared limits",
            [f"block {i + 1}" for i in range(min(len(per["memory"]), len(per["redis"])))],
            {
                "in-memory limits": [v * 1000 for v in per["memory"]],
                "Redis-shared limits": [v * 1000 for v in per["redis"]],
            },
            ylabel="ms CPU / request",
        )
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME, "_latency"),
        "Token service latency (ms)",
        [labels[k] for k in present],
        {
            "p50": [runs[k]["latency_s"]["p50"] * 1000 for k in present],
            "p99": [runs[k]["latency_s"]["p99"] * 1000 for k in present],
        },
        ylabel="ms",
    )


if __name__ == "__main__":  # pragma: no cover - manual runs
    from pathlib import Path

    out = Path("bench/results")
    print(json.dumps(asyncio.run(run(BenchContext(out=out, quick=True))).to_json()["data"]))
