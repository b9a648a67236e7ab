"""The chaos soak, reduced to fit ``make test`` (the full run is ``make chaos``).

A dozen sessions, four faulted steps each, one emulator restart: every link and server
fault kind lands somewhere, and the invariants of the full run must hold here too. The
impolite kinds (overlapping turns, a thinking model, ...) have their own tiny soak,
``test_chaos_impolite.py``.
"""

from __future__ import annotations

import pytest

from tunnelproof.testing.chaos import ChaosConfig, Fault, run_chaos
from tunnelproof.testing.chaos.schedule import POLITE_FAULTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REDUCED = ChaosConfig(
    sessions=12,
    steps=4,
    seed=7,
    time_scale=0.05,
    restarts=1,
    expected_duration=14.0,
    start_spread=2.0,
    deadline=150.0,
    faults=POLITE_FAULTS,
    kernel_every=0,
    latency=False,  # the tiny impolite soak runs its sessions on 100-500 ms links
)


async def test_reduced_chaos_soak_keeps_every_invariant() -> None:
    report = await run_chaos(REDUCED)
    details = {
        k: report[k]
        for k in ("texts", "tool_responses", "conversations", "unhandled_samples", "harness_errors")
    }
    # Every kind of fault really happened (the plan deals each kind to three sessions).
    injected = report["faults_injected"]
    kinds = {f.value for f in POLITE_FAULTS} | {Fault.EMULATOR_RESTART.value}
    assert kinds <= {k for k, n in injected.items() if n > 0}, injected
    # The invariants, one by one so a failure names itself.
    inv = report["invariants"]
    texts, tools = report["texts"], report["tool_responses"]
    assert texts["duplicated"] == 0 and tools["duplicated"] == 0, details
    assert texts["dropped_but_delivered"] == 0 and tools["dropped_but_delivered"] == 0, details
    assert inv["max_one_socket_per_session"], report["sockets"]
    assert inv["no_unhandled_exceptions"], report["unhandled_samples"]
    assert report["proxy_callback_errors_py311"] == 0  # the proxy's own noise is fixed too
    assert inv["no_harness_errors"], report["harness_errors"]
    assert inv["outbox_within_bounds"], report["outbox"]
    assert inv["no_token_used_after_its_handshake"], report["tokens"]
    assert inv["context_survived_everywhere"], details
    assert inv["texts_exactly_once_or_reported_dropped"], details
    assert inv["tool_responses_exactly_once_or_reported_dropped"], details
    assert report["unaccounted"] == {"texts": 0, "tool_responses": 0, "audio_ms": 0}
    assert report["ok"], {k: v for k, v in inv.items() if not v}
    # The soak measured something: texts went out, sockets were seen, the herd came back.
    assert report["texts"]["sent"] >= REDUCED.sessions * 3  # first, final, and typed turns
    assert report["sockets"]["connections_set_up"] > REDUCED.sessions
    assert report["run"]["emulator_restarts"] == 1
