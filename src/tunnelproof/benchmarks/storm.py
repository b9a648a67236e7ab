"""Benchmark 7: reconnect storm — every session dropped at once by a server restart.

Question: when the Live server restarts under N connected sessions, how long until 99% and
100% of them are back, and how hard do they hit the token service meanwhile?

Method, two parts:

* **Real sessions** (as many as this machine holds, target 500): the emulator runs as a
  subprocess (``EmulatorProcess``), a token service (one uvicorn worker, in another
  subprocess) mints from it, and N ``LiveSession`` s in one client process connect through
  it. Then ``EmulatorProcess.restart()`` stops the emulator (every socket closes with 1001)
  and starts it again on the same port. We record when each session's ``Resumed``/
  ``Connected`` arrives and count token requests per second at the service. Run once with
  ``DEFAULT_POLICY`` and once with ``SEED_POLICY``. A restart loses the emulator's
  sessions (as a crash would), so clients come back as fresh sessions: what is measured is
  the reconnect herd, not resumption.
* **Virtual clock, 100,000 clients**: the same ``SessionMachine`` s in the discrete-event
  simulator (:mod:`tunnelproof.benchmarks.simulator`). The server is down for 1.5 s
  (connects refused, nothing can be minted). The token service mints at most the
  requests/s benchmark 6 measured in this run for one worker (or 400/s if it did not run)
  and answers as tunnelproof's service does (``StormWorld(service="queue")``, with the
  service's own ``Admission``): a request waits in line up to 1 s; while the upstream is
  down (one probe per 0.25 s) or the line is longer, 503 with a wait sized by the backlog
  (after the next probe, and at least 1 s after the upstream went down), which the clients
  read from ``retry-after-ms``. Healthy latencies 50 ms each. Our policy also runs against
  the service as it was before issue 15 (502 while the upstream is down, 503 +
  ``Retry-After: 1`` from a token bucket), to show what the contract change is worth, at a
  tenth of the herd and of the capacity (the same N / capacity: at full size it makes
  some 10⁷ token requests).

Reported: time to 99% and 100% restored (against N / capacity, the best any client can
do), how many clients gave up, the peak token requests/s offered to the service and the
highest after the first 5 s. The seed policy honours ``Retry-After`` here because it runs
through our machine; the seed's own code does not, so the real seed is worse.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import BenchContext, BenchResult, Comparison, method_text
from tunnelproof.benchmarks.simulator import ServiceModel, StormOutcome, simulate_storm
from tunnelproof.ready_line import next_json_line
from tunnelproof.session.policy import DEFAULT_POLICY, SEED_POLICY, RetryPolicy

NAME = "storm"
TITLE = "Reconnect storm after a server restart"

POLICIES: dict[str, RetryPolicy] = {"tunnelproof": DEFAULT_POLICY, "seed": SEED_POLICY}
OLD_SERVICE = "tunnelproof, service before issue 15"
OLD_SCALE = 10
DEFAULT_CAPACITY_RPS = 400.0
RESTART_S = 1.5
REAL_SESSIONS = 500


def _simulate(
    policy: RetryPolicy,
    clients: int,
    capacity: float,
    restart_s: float,
    seed: int,
    service: ServiceModel = "queue",
) -> tuple[StormOutcome, float]:
    """One herd simulation (runs in a worker process)."""
    started = time.monotonic()
    outcome = simulate_storm(
        policy,
        clients,
        token_rate=capacity,
        restart_s=restart_s,
        seed=seed,
        horizon=1800.0,
        service=service,
    )
    return outcome, time.monotonic() - started


def _capacity(ctx: BenchContext) -> tuple[float, str]:
    prev = ctx.previous.get("token_service")
    if prev is not None and not prev.error and not prev.skipped:
        rps = prev.data.get("capacity_rps")
        if isinstance(rps, (int, float)) and rps > 0:
            return float(rps), "measured by benchmark token_service in this run"
    return DEFAULT_CAPACITY_RPS, "assumed (benchmark token_service did not run)"


def _outcome_json(o: StormOutcome) -> dict[str, Any]:
    return {
        "clients": o.clients,
        "restored": o.restored,
        "gave_up": o.gave_up,
        "t99_s": o.t99_s,
        "t100_s": o.t100_s,
        "peak_offered_rps": o.peak_offered_rps,
        "peak_offered_after_5s_rps": max(
            (r for t, r in o.offered_rps if t >= 5.0 and (o.t100_s is None or t <= o.t100_s)),
            default=0.0,
        ),
        "token_requests": o.token_requests,
        "events": o.events,
        "restored_curve": o.restored_curve,
        "offered_rps": o.offered_rps,
        "served_rps": o.served_rps,
    }


def _time_text(value: float | None, o: dict[str, Any]) -> str | None:
    if value is not None:
        return None
    return f"never ({o['gave_up']} of {o['clients']} gave up)"


async def run(ctx: BenchContext) -> BenchResult:
    """Run both parts (see the module docstring)."""
    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    capacity, source = _capacity(ctx)
    clients = 2_000 if ctx.quick else 100_000
    if ctx.quick:
        capacity = min(capacity, 100.0)  # keep the quick herd's ratio of load to capacity
    result.params = {
        "sim_clients": clients,
        "token_capacity_rps": capacity,
        "capacity_source": source,
        "restart_s": RESTART_S,
    }

    real = await _real(ctx, result)

    sim: dict[str, Any] = {}
    # The longest simulation first, so the two worker processes finish close together.
    # The old service makes the herd ask ~100 times each: at full size that is ~10⁷ requests
    # and a quarter of an hour, so it runs at a tenth of the herd and of the capacity (the
    # same N / capacity).
    old_clients = clients // OLD_SCALE
    runs: dict[str, tuple[RetryPolicy, ServiceModel, int, float]] = {
        OLD_SERVICE: (DEFAULT_POLICY, "fixed", old_clients, capacity / OLD_SCALE),
        **{pname: (policy, "queue", clients, capacity) for pname, policy in POLICIES.items()},
    }
    result.params["old_service_clients"] = old_clients
    ctx.log(f"  virtual clock: {clients:,} clients × {len(runs)} runs (2 processes)")
    loop = asyncio.get_running_loop()
    # Each simulation is single-threaded CPU work; two processes use both cores.
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            pname: loop.run_in_executor(
                pool, _simulate, policy, n, rate, RESTART_S, ctx.seed, service
            )
            for pname, (policy, service, n, rate) in runs.items()
        }
        for pname, future in futures.items():
            outcome, wall = await future
            sim[pname] = _outcome_json(outcome)
            sim[pname]["wall_s"] = wall
    result.data["simulated"] = sim
    ours, seed, old = sim["tunnelproof"], sim["seed"], sim[OLD_SERVICE]
    t100_old = "never" if old["t100_s"] is None else f"{old['t100_s']:.0f} s"
    if ours["gave_up"]:
        result.notes.append(
            f"{ours['gave_up']:,} of {clients:,} simulated tunnelproof clients gave up"
        )
    label = f"{clients:,} clients (virtual clock, {capacity:.0f} tokens/s)"
    result.comparisons += [
        _restored_vs_seed(
            label,
            "t99_s",
            ours,
            seed,
            ratio_text=(
                ("n/a: neither got there" if ours["t99_s"] is None else "∞ (seed never got there)")
                if seed["t99_s"] is None
                else None
            ),
        ),
        Comparison(
            metric=f"{label}: restored / gave up",
            unit="count",
            ours=float(ours["restored"]),
            ours_text=f"{ours['restored']:,} / {ours['gave_up']:,}",
            against="seed policy",
            theirs=float(seed["restored"]),
            theirs_text=f"{seed['restored']:,} / {seed['gave_up']:,}",
            better="higher",
        ),
        Comparison(
            metric=f"{label}: peak token requests/s offered",
            unit="req/s",
            ours=ours["peak_offered_rps"],
            against="seed policy",
            theirs=seed["peak_offered_rps"],
            note=(
                "the herd's first attempt, once each; after 5 s at most "
                f"{ours['peak_offered_after_5s_rps']:,.0f} req/s (capacity {capacity:.0f}), "
                f"seed {seed['peak_offered_after_5s_rps']:,.0f}"
            ),
        ),
        Comparison(
            metric=f"{label}: token requests per client",
            unit="count",
            ours=ours["token_requests"] / clients,
            against=(
                f"the same policy against the service before issue 15 (502 while Google is "
                f"down, Retry-After: 1), at {old['clients']:,} clients and a tenth of the "
                "capacity"
            ),
            theirs=old["token_requests"] / old["clients"],
            note=(
                f"peak offered after 5 s, per capacity: ours "
                f"{ours['peak_offered_after_5s_rps'] / capacity:.2f}×, old service "
                f"{old['peak_offered_after_5s_rps'] / (capacity / OLD_SCALE):.1f}×; "
                f"old service 100% at {t100_old}"
            ),
        ),
        # The best any policy can do is N / capacity: the service mints that fast at most.
        Comparison(
            metric=f"{label}: time to 100% restored vs N / capacity",
            unit="s",
            ours=ours["t100_s"],
            ours_text=_time_text(ours["t100_s"], ours),
            against="floor: N / capacity",
            theirs=clients / capacity,
            better="floor",
        ),
    ]
    if real is not None:
        result.data["real"] = real
        result.comparisons[0:0] = _real_comparisons(real)
    _charts(ctx, result, sim, real)
    return result


async def _real(ctx: BenchContext, result: BenchResult) -> dict[str, Any] | None:
    """N real sessions through an emulator restart, once per policy."""
    import json
    import os
    import sys

    from tunnelproof.benchmarks.procs import json_process, serve_argv, stop_process
    from tunnelproof.emulator import DEFAULT_API_KEY, EmulatorProcess

    n = 30 if ctx.quick else REAL_SESSIONS
    max_wait = 30.0 if ctx.quick else 100.0
    bearer_key = "storm-bench-key-0123456789"
    result.params.update({"real_sessions": n, "real_max_wait_s": max_wait})
    out: dict[str, Any] = {}
    async with EmulatorProcess(persist_sessions=True) as emu:
        auth = ["--auth-mode", "static", "--static-key", f"bench:{bearer_key}"]
        serve = serve_argv(emu, auth, rate_limit="1000000/minute")
        env = {"TUNNELPROOF_API_KEY": DEFAULT_API_KEY}
        async with json_process(serve, env=env) as svc:
            for pname in POLICIES:
                ctx.log(f"  real: {n} sessions, {pname}: connect, restart, wait")
                config = {
                    "sessions": n,
                    "policy": pname,
                    "token_url": svc.ready["tokenUrl"],
                    "bearer": f"Bearer {bearer_key}",
                    "start_rate": 100.0,
                    "stable_s": 2.0 if ctx.quick else 11.0,
                    "max_wait": max_wait,
                    "seed": ctx.seed,
                }
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tunnelproof.benchmarks.storm_worker",
                    json.dumps(config),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                    # The final line lists every token call: a herd that retries often
                    # writes more than asyncio's default 64 KiB line limit.
                    limit=64 * 1024 * 1024,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                assert proc.stdin is not None
                assert proc.stdout is not None
                try:
                    ready = await _json_line(proc.stdout, 150.0)
                    t0 = time.time()
                    proc.stdin.write(f"go {t0}\n".encode())
                    await proc.stdin.drain()
                    restart_started = time.monotonic()
                    await emu.restart()
                    restart_s = time.monotonic() - restart_started
                    final = await _json_line(proc.stdout, max_wait + 60.0)
                finally:
                    await stop_process(proc, 10.0)
                out[pname] = _real_outcome(final, ready, restart_s)
                if ready["connected"] < n:
                    result.notes.append(
                        f"{pname}: only {ready['connected']} of {n} sessions connected "
                        "before the restart"
                    )
    return out


async def _json_line(stream: Any, timeout: float) -> dict[str, Any]:
    """The next stdout line that is a JSON object (bounded by ``timeout``)."""
    async with asyncio.timeout(timeout):
        doc = await next_json_line(stream)
    if doc is None:
        raise RuntimeError("the storm worker exited early")
    return doc


def _real_outcome(final: dict[str, Any], ready: dict[str, Any], restart_s: float) -> dict[str, Any]:

    n = int(ready["connected"])
    restored = [float(x) for x in final["restored_s"]]
    need99 = math.ceil(0.99 * n)
    calls = [float(t) for t, _ in final["token_calls_s"]]
    end = max([*restored, *final["failed_s"], 1.0])
    bins = [0] * (int(end) + 2)
    for t in calls:
        if 0 <= t < len(bins):
            bins[int(t)] += 1
    curve: list[tuple[float, float]] = []
    ordered = sorted(restored)
    for i in range(201):
        t = end * i / 200
        curve.append((t, sum(1 for r in ordered if r <= t) / n if n else 0.0))
    outcomes: dict[str, int] = {}
    for _, what in final["token_calls_s"]:
        outcomes[what] = outcomes.get(what, 0) + 1
    return {
        "clients": n,
        "restored": len(restored),
        "gave_up": len(final["failed_s"]),
        "t99_s": ordered[need99 - 1] if len(ordered) >= need99 > 0 else None,
        "t100_s": ordered[-1] if len(ordered) == n and n else None,
        "peak_offered_rps": float(max(bins, default=0)),
        "token_requests": len(calls),
        "token_outcomes": outcomes,
        "restart_s": restart_s,
        "restored_curve": curve,
        "offered_rps": [(float(i), float(c)) for i, c in enumerate(bins)],
    }


_RESTORED = {"t99_s": "99%", "t100_s": "100%"}


def _restored_vs_seed(
    label: str, key: str, ours: dict[str, Any], seed: dict[str, Any], **extra: Any
) -> Comparison:
    """``label``: time to 99% (``key`` ``t99_s``) or 100% (``t100_s``) restored, ours
    against the seed policy; ``extra`` are more fields of the comparison."""
    return Comparison(
        metric=f"{label}: time to {_RESTORED[key]} restored",
        unit="s",
        ours=ours[key],
        ours_text=_time_text(ours[key], ours),
        against="seed policy",
        theirs=seed[key],
        theirs_text=_time_text(seed[key], seed),
        **extra,
    )


def _real_comparisons(real: dict[str, Any]) -> list[Comparison]:
    ours, seed = real.get("tunnelproof"), real.get("seed")
    if ours is None or seed is None:
        return []
    label = f"{ours['clients']} real sessions"
    return [
        _restored_vs_seed(label, "t99_s", ours, seed),
        _restored_vs_seed(label, "t100_s", ours, seed),
        Comparison(
            metric=f"{label}: peak token requests/s",
            unit="req/s",
            ours=ours["peak_offered_rps"],
            against="seed policy",
            theirs=seed["peak_offered_rps"],
        ),
    ]


def _charts(
    ctx: BenchContext, result: BenchResult, sim: dict[str, Any], real: dict[str, Any] | None
) -> None:
    # Ours first, so it gets the conventional green and the seed its red.
    order = sorted(sim, key=lambda p: {"tunnelproof": 0, "seed": 1}.get(p, 2))
    restored = {
        f"{p} restored (sim)": [(t, f * 100) for t, f in sim[p]["restored_curve"]] for p in order
    }
    offered = {f"{p} token req/s (sim)": sim[p]["offered_rps"] for p in order}
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.lines,
        ctx.chart_path(NAME),
        f"Reconnect storm, {sim['tunnelproof']['clients']:,} clients (virtual clock)",
        restored,
        xlabel="seconds after the server restart",
        ylabel="% of clients restored",
        secondary=offered,
        secondary_label="token requests/s offered",
    )
    if real:
        curves = {
            f"{p} restored": [(t, f * 100) for t, f in v["restored_curve"]]
            for p, v in real.items()
            if isinstance(v, dict) and "restored_curve" in v
        }
        rps = {
            f"{p} token req/s": v["offered_rps"]
            for p, v in real.items()
            if isinstance(v, dict) and "offered_rps" in v
        }
        charts.safe_chart(
            result.notes,
            result.charts,
            charts.lines,
            ctx.chart_path(NAME, "_real"),
            "Reconnect storm, real sessions",
            curves,
            xlabel="seconds after the restart",
            ylabel="% of sessions restored",
            secondary=rps,
            secondary_label="token requests/s",
        )
