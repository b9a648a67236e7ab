"""A bounded async HTTP load generator (httpx), run as its own process.

``python -m tunnelproof.benchmarks.loadgen CONFIG_JSON`` where the config holds ``urls``
(requests go round-robin over them: two service instances share one load),
``bearers`` (``Authorization`` values, round-robin, one per simulated user), ``concurrency``
(closed loop: that many requests in flight), ``max_requests`` and ``duration`` (whichever
comes first ends the run) and ``warmup`` requests not counted. Prints one JSON line:
counts by status, elapsed seconds, successful requests/s and latency percentiles.

A separate process, so the generator's own CPU use does not slow the server's event loop
(on two cores they still compete; the benchmark reports ratios for that reason).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from typing import Any

import httpx

from tunnelproof.benchmarks.harness import summarize


async def _run(config: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = config["urls"]
    bearers: list[str | None] = config.get("bearers") or [None]
    concurrency = int(config.get("concurrency", 16))
    max_requests = int(config.get("max_requests", 1000))
    duration = float(config.get("duration", 10.0))
    warmup = int(config.get("warmup", 0))
    url_cycle = itertools.cycle(urls)
    bearer_cycle = itertools.cycle(bearers)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def one(record: bool) -> None:
            url = next(url_cycle)
            bearer = next(bearer_cycle)
            headers = {"Authorization": bearer} if bearer else {}
            started = time.perf_counter()
            try:
                response = await client.post(url, headers=headers)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            if record:
                statuses[status] += 1
                if status == "200":
                    latencies.append(elapsed)

        # Warm-up: connections opened, JWKS fetched, caches filled; not counted.
        for _ in range(max(0, warmup) // max(1, concurrency) + (1 if warmup else 0)):
            await asyncio.gather(*(one(False) for _ in range(min(concurrency, warmup))))
        issued = 0
        deadline = time.perf_counter() + duration
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                await one(True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ok = statuses.get("200", 0)
    return {
        "requests": sum(statuses.values()),
        "ok": ok,
        "statuses": dict(statuses),
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "latency_s": summarize(latencies),
        "concurrency": concurrency,
    }


def main() -> None:
    """Entry point: one JSON argument in, one JSON line out."""
    config = json.loads(sys.argv[1])
    result = asyncio.run(_run(config))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
