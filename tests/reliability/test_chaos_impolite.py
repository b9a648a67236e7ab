"""The impolite soak, tiny enough for ``make test``: eight sessions, every impolite step.

Follow-ups sent over an arriving answer, a model thinking longer than the reply watchdog,
token services that stall, answer 429 and refuse connections, a goAway loop, a tool with a
side effect dropped mid-call, speech into a kernel blackhole (needs root; reported as not
run otherwise), each session on its own 100-500 ms link. The audit must find nothing
unaccounted. The full run (120 sessions, every fault) is ``make chaos``.
"""

from __future__ import annotations

import pytest

from tunnelproof.testing.chaos import ChaosConfig, run_chaos
from tunnelproof.testing.chaos.schedule import IMPOLITE_FAULTS, KERNEL_ONLY
from tunnelproof.testing.netns import netns_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Session 0 (the only one whose link crosses a network namespace) speaks into its kernel
# blackhole, sessions 1-7 each walk one other impolite kind; then one quiet step each.
TINY = ChaosConfig(
    sessions=8,
    steps=2,
    seed=3,
    time_scale=0.05,
    restarts=0,
    start_spread=0.5,
    deadline=60.0,
    faults=IMPOLITE_FAULTS,
    reply_timeout=1.0,
    kernel_every=8,
    fault_rate=0.0,  # each session walks its kinds, then a last step without a fault
)


async def test_the_tiny_impolite_soak_leaves_nothing_unaccounted() -> None:
    report = await run_chaos(TINY)
    injected = {k for k, n in report["faults_injected"].items() if n > 0}
    expected = {f.value for f in IMPOLITE_FAULTS}
    kernel_ok, why = netns_available()
    if not kernel_ok:
        expected -= {f.value for f in KERNEL_ONLY}
        assert report["impolite"]["kernel_blackholes_not_run"] == why
    assert expected <= injected, report["faults_injected"]
    impolite = report["impolite"]
    # Every impolite step did what it is for.
    assert impolite["link_latency_ms"]["min"] >= 100 and impolite["link_latency_ms"]["max"] <= 500
    assert impolite["slow_model"]["turns"] >= 1
    assert impolite["goaway_loops"]["loops"] >= 1
    assert impolite["tool_side_effects"]["calls"] >= 1
    assert report["impolite"]["sends"]["audio"]["ms_sent"] > 0
    # The audit: nothing unaccounted, and every other invariant.
    assert report["unaccounted"] == {"texts": 0, "tool_responses": 0, "audio_ms": 0}, impolite
    failed = [name for name, holds in report["invariants"].items() if not holds]
    assert not failed, (failed, impolite, report["conversations"], report["harness_errors"])
    assert report["ok"]
