"""Benchmark 2: tunnel exit → conversation restored, tunnelproof vs the seed's policy.

Question: a train leaves a tunnel; how long until the conversation is back (``setupComplete``
on a *resumed* session), and how many attempts did the client make meanwhile (the cost to
the servers)?

Method, two parts:

* **Real time, real sockets** (2, 10 and 30 s tunnels): a ``LiveSession`` talks to the
  emulator (``EmulatorServer``, in process) through a ``TunnelProxy``. With the session
  connected and holding a resumption handle, the proxy blackholes the link and resets the
  connections it held (the OS of a phone entering a tunnel drops its sockets; the
  half-open case is benchmark 3) and refuses new ones for the tunnel's length, then
  restores it. We record the time from ``restore`` to the ``Resumed`` event and the token
  fetches and connects made. The same client runs with ``DEFAULT_POLICY`` and with
  ``SEED_POLICY``. One run per length and policy in the full run (30 s tunnels are
  expensive), fewer lengths with ``--quick``.
* **Virtual clock** (the same lengths plus 90 s, 5 min and 30 min): the
  ``SessionMachine`` itself runs in the discrete-event simulator of
  :mod:`tunnelproof.benchmarks.simulator`, many seeded trials per point. The network model:
  a healthy link answers a token fetch in 150 ms, a connect in 250 ms, ``setup`` in 200 ms;
  inside the tunnel the link is either *unreachable* (fetches and connects fail in 20 ms, the
  phone knows it has no network) or a *blackhole* (nothing answers; a connect started inside
  completes at its next SYN retransmission after the tunnel, 1/3/7/15/31/63 s after it
  began). The socket that was up is reported closed when the tunnel starts, for both
  policies alike.

Reported: p50/p95 of "tunnel exit → restored", the fraction of trials where the client gave
up (the seed's six tries end about a minute into an outage), the attempts made and how many
of them reached a server. The seed's *code* is worse than its policy (a failed token fetch
ends its retry chain, see reference/measurements.md §3); that bug is not reproduced here.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from tunnelproof.benchmarks import charts
from tunnelproof.benchmarks.harness import (
    BenchContext,
    BenchResult,
    Comparison,
    method_text,
    summarize,
)
from tunnelproof.benchmarks.simulator import TunnelOutcome, simulate_tunnel
from tunnelproof.session.policy import DEFAULT_POLICY, SEED_POLICY, RetryPolicy

NAME = "tunnel"
TITLE = "Tunnel exit → conversation restored"

POLICIES: dict[str, RetryPolicy] = {"tunnelproof": DEFAULT_POLICY, "seed": SEED_POLICY}
SIM_LENGTHS = (2.0, 10.0, 30.0, 90.0, 300.0, 1800.0)
REAL_RUNS_FULL = (
    ("unreachable", 2.0),
    ("unreachable", 10.0),
    ("unreachable", 30.0),
    ("blackhole", 2.0),
    ("blackhole", 10.0),
)
REAL_RUNS_QUICK = (("unreachable", 0.5),)  # a smoke run: the path, not the numbers


def _label(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def simulate(trials: int, seed: int, lengths: tuple[float, ...] = SIM_LENGTHS) -> dict[str, Any]:
    """Run the virtual-clock part; returns ``{mode: {policy: {length: summary}}}``."""
    out: dict[str, Any] = {}
    for mode in ("unreachable", "blackhole"):
        per_policy: dict[str, Any] = {}
        for pname, policy in POLICIES.items():
            per_length: dict[str, Any] = {}
            for length in lengths:
                outcomes: list[TunnelOutcome] = [
                    simulate_tunnel(policy, length, seed=seed * 10_007 + i, offline_mode=mode)
                    for i in range(trials)
                ]
                restored = [o.restored_after_s for o in outcomes if o.restored_after_s is not None]
                gave_up = [o for o in outcomes if o.gave_up]
                per_length[str(length)] = {
                    "trials": trials,
                    "restored_after_s": summarize(restored),
                    "gave_up_fraction": len(gave_up) / trials,
                    "gave_up_at_s": summarize(
                        o.gave_up_at_s for o in gave_up if o.gave_up_at_s is not None
                    ),
                    "attempts": summarize(o.attempts for o in outcomes),
                    "server_requests": summarize(o.server_requests for o in outcomes),
                    "resumed_fraction": sum(o.resumed for o in outcomes) / trials,
                }
            per_policy[pname] = per_length
        out[mode] = per_policy
    return out


def _sim_comparisons(sim: dict[str, Any], lengths: tuple[float, ...]) -> list[Comparison]:
    rows: list[Comparison] = []
    mode = "unreachable"
    for length in lengths:
        ours = sim[mode]["tunnelproof"][str(length)]
        seed = sim[mode]["seed"][str(length)]
        seed_p50 = seed["restored_after_s"]["p50"] if seed["gave_up_fraction"] < 0.5 else None
        seed_text = None
        if seed["gave_up_fraction"] >= 0.5:
            seed_text = f"gave up ({seed['gave_up_fraction']:.0%} of trials)"
        rows.append(
            Comparison(
                metric=f"{_label(length)} tunnel (virtual clock): exit → restored p50",
                unit="s",
                ours=ours["restored_after_s"]["p50"],
                against="seed policy",
                theirs=seed_p50,
                theirs_text=seed_text,
                ratio_text="∞ (seed gave up)" if seed_text else None,
                note=(
                    f"attempts p50: ours {ours['attempts']['p50']:.0f} "
                    f"(reaching a server {ours['server_requests']['p50']:.0f}), "
                    f"seed {seed['attempts']['p50']:.0f}"
                ),
            )
        )
    return rows


async def run(ctx: BenchContext) -> BenchResult:
    """Run both parts (see the module docstring)."""
    result = BenchResult(name=NAME, title=TITLE, method=method_text(__doc__), quick=ctx.quick)
    trials = 12 if ctx.quick else 100
    result.params = {"sim_trials": trials, "sim_lengths_s": list(SIM_LENGTHS)}
    started = time.monotonic()
    sim = simulate(trials, ctx.seed)
    result.data["simulated"] = sim
    result.data["simulation_wall_s"] = time.monotonic() - started

    real = await _real_time(ctx, result)
    if real is not None:
        result.data["real_time"] = real
        for key, per in real.items():
            ours, seed = per.get("tunnelproof"), per.get("seed")
            if ours is None or seed is None:
                continue
            mode, length = key.split(" ")
            seed_text = "gave up" if seed["restored_after_s"] is None else None
            result.comparisons.append(
                Comparison(
                    metric=f"{_label(float(length))} tunnel (real time, {mode}): exit → restored",
                    unit="s",
                    ours=ours["restored_after_s"],
                    against="seed policy",
                    theirs=seed["restored_after_s"],
                    theirs_text=seed_text,
                    note=(
                        f"attempts: ours {ours['attempts']}, seed {seed['attempts']}; 1 run each"
                        + (
                            "; the proxy releases a connect held through the tunnel at once, "
                            "so whichever client had one pending at the exit wins"
                            if mode == "blackhole"
                            else ""
                        )
                    ),
                )
            )
    result.comparisons.extend(_sim_comparisons(sim, (90.0, 300.0, 1800.0)))
    long_ours = sim["unreachable"]["tunnelproof"][str(1800.0)]
    long_seed = sim["unreachable"]["seed"][str(1800.0)]
    result.comparisons.append(
        Comparison(
            metric="30 min tunnel: attempts made (of which reached a server), p50",
            unit="count",
            ours=long_ours["attempts"]["p50"],
            ours_text=(
                f"{long_ours['attempts']['p50']:,.0f} ({long_ours['server_requests']['p50']:,.0f})"
            ),
            against="seed policy",
            theirs=long_seed["attempts"]["p50"],
            theirs_text=(
                f"{long_seed['attempts']['p50']:,.0f} "
                f"({long_seed['server_requests']['p50']:,.0f}), then gave up"
            ),
            ratio_text="n/a",
            note="probes inside a tunnel fail locally (no network) and cost no server anything",
        )
    )
    if real is None:
        result.comparisons[0:0] = _sim_comparisons(sim, (2.0, 10.0, 30.0))
    _charts(ctx, result, sim)
    return result


async def _real_time(ctx: BenchContext, result: BenchResult) -> dict[str, Any] | None:
    """The real-socket part; ``None`` (with a note) when ``LiveSession`` is not available."""
    try:
        live: Any = importlib.import_module("tunnelproof.benchmarks.live")
    except ImportError as exc:
        result.notes.append(f"real-time part not run: {exc}")
        return None
    runs = REAL_RUNS_QUICK if ctx.quick else REAL_RUNS_FULL
    result.params["real_runs"] = [f"{mode} {length:g} s" for mode, length in runs]
    out: dict[str, Any] = {}
    for mode, length in runs:
        per: dict[str, Any] = {}
        for pname, policy in POLICIES.items():
            ctx.log(f"  real-time tunnel {length:g} s ({mode}), {pname}")
            per[pname] = await live.tunnel_trial(policy, length, mode=mode, timeout=length + 90.0)
        out[f"{mode} {length:g}"] = per
    return out


def _charts(ctx: BenchContext, result: BenchResult, sim: dict[str, Any]) -> None:
    groups = [_label(x) for x in SIM_LENGTHS]
    series: dict[str, list[float | None]] = {}
    notes: dict[str, list[str | None]] = {}
    for mode in ("unreachable", "blackhole"):
        for pname in POLICIES:
            label = f"{pname} ({mode})"
            values: list[float | None] = []
            texts: list[str | None] = []
            for length in SIM_LENGTHS:
                point = sim[mode][pname][str(length)]
                if point["gave_up_fraction"] >= 0.5:
                    values.append(None)
                    texts.append("gave up")
                else:
                    values.append(point["restored_after_s"]["p50"])
                    texts.append(None)
            series[label] = values
            notes[label] = texts
    charts.safe_chart(
        result.notes,
        result.charts,
        charts.grouped_bars,
        ctx.chart_path(NAME),
        "Tunnel exit → conversation restored (p50, virtual clock)",
        groups,
        series,
        ylabel="seconds after the tunnel's end (log)",
        log=True,
        annotations=notes,
    )
