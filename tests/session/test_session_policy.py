"""The numbers of the retry policy and the watchdogs (issues 13 and 15), and the kernel's
view of a link that the driver reads when a reply is overdue."""

from __future__ import annotations

import random
import socket

import pytest

from tunnelproof.session.driver import KernelLink, kernel_verdict, read_kernel_link
from tunnelproof.session.policy import (
    SEED_POLICY,
    SHED_MIN_DELAY,
    SHED_MIN_JITTER,
    RetryPolicy,
    Watchdogs,
)


def test_an_abrupt_drop_of_a_healthy_connection_is_retried_at_once() -> None:
    policy = RetryPolicy()
    assert policy.drop_is_immediate(served=1.0, recent_quick=0)
    assert policy.drop_is_immediate(served=1.0, recent_quick=policy.immediate_budget + 9)


def test_quick_drops_go_at_once_only_within_a_budget() -> None:
    policy = RetryPolicy()
    assert policy.drop_is_immediate(served=0.01, recent_quick=0)
    assert not policy.drop_is_immediate(served=0.01, recent_quick=policy.immediate_budget)
    assert not RetryPolicy(immediate_budget=0).drop_is_immediate(served=0.01, recent_quick=0)
    assert not SEED_POLICY.drop_is_immediate(served=5.0, recent_quick=0)


def test_shed_delay_honours_retry_after_and_spreads_a_herd() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    delays = [policy.shed_delay(4.0, rng) for _ in range(1000)]
    assert min(delays) >= 4.0
    assert max(delays) <= 4.0 + policy.base_delay
    assert max(delays) - min(delays) > policy.base_delay / 2, "spread, not one tick"


def test_policy_rejects_nonsense_budgets() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(healthy_after=-1)
    with pytest.raises(ValueError):
        RetryPolicy(handover_budget=-1)


def test_offline_token_allowance_follows_the_backend_and_grows_after_timeouts() -> None:
    w = Watchdogs(token_timeout=10.0, probe_connect_timeout=3.0)
    assert w.offline_token_timeout(None, 0) == 3.0
    assert w.offline_token_timeout(0.05, 0) == 3.0
    assert w.offline_token_timeout(3.5, 0) == pytest.approx(7.5)
    assert w.offline_token_timeout(None, 1) == 6.0
    assert w.offline_token_timeout(None, 5) == 10.0


def test_kernel_verdict_needs_evidence_not_silence() -> None:
    w = Watchdogs(unacked_dead_after=4.0, keepalive_count=3)
    quiet = KernelLink(0, 0, 0, since_data_received=60.0, since_ack_received=60.0)
    assert kernel_verdict(quiet, w) is None, "a long silence with nothing outstanding"
    stuck = KernelLink(3, 4, 0, since_data_received=6.0, since_ack_received=5.0)
    assert "unacknowledged" in (kernel_verdict(stuck, w) or "")
    young = KernelLink(3, 1, 0, since_data_received=1.0, since_ack_received=1.0)
    assert kernel_verdict(young, w) is None
    probed = KernelLink(0, 0, 3, since_data_received=9.0, since_ack_received=9.0)
    assert "keepalive" in (kernel_verdict(probed, w) or "")
    assert kernel_verdict(None, w) is None


def test_read_kernel_link_on_a_live_loopback_connection() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.sendall(b"x" * 1000)
        assert peer.recv(1000)
        link = read_kernel_link(client)
        if not hasattr(socket, "TCP_INFO"):
            assert link is None
            return
        assert link is not None
        assert link.unacked == 0 and link.retransmits == 0
        assert kernel_verdict(link, Watchdogs()) is None
    finally:
        for s in (client, peer, server):
            s.close()
    assert read_kernel_link(None) is None


@pytest.mark.parametrize(
    "field",
    ["token_timeout", "connect_timeout", "setup_timeout", "reply_timeout", "close_timeout"],
)
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_watchdogs_refuse_a_timeout_that_fires_at_once_or_never(field: str, value: float) -> None:
    # Watchdogs(token_timeout=0) or (setup_timeout=nan) made a session that never
    # connected and said nothing (the app's own timeout was the only way out).
    with pytest.raises(ValueError, match=field):
        Watchdogs(**{field: value})  # type: ignore[arg-type]


def test_watchdog_margins_may_be_zero_but_not_negative() -> None:
    assert Watchdogs(go_away_margin=0.0, handover_handle_grace=0.0, stale_socket_wait=0.0)
    with pytest.raises(ValueError, match="go_away_margin"):
        Watchdogs(go_away_margin=-1.0)
    with pytest.raises(ValueError, match="keepalive_count"):
        Watchdogs(keepalive_count=0)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"base_delay": float("nan")}, "base_delay must be a finite number"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number"),
        ({"jitter": "none"}, "jitter must be 'full' or 'additive'"),
        ({"max_attempts_per_outage": 0}, "max_attempts_per_outage must be >= 1"),
        ({"max_attempts_per_session": -1}, "max_attempts_per_session must be >= 1"),
        ({"stable_after": -1.0}, "stable_after must be >= 0"),
        ({"max_offline_seconds": -5.0}, "max_offline_seconds must be positive"),
    ],
)
def test_retry_policy_refuses_values_it_cannot_run_with(
    changes: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        RetryPolicy(**changes)  # type: ignore[arg-type]


def test_a_precise_shed_wait_gets_a_tenth_of_it_as_jitter() -> None:
    # retry-after-ms is the client's own slot: come back just after it, not up to
    # base_delay later (which cost the restart benchmark a quarter of a second a round).
    policy = RetryPolicy()
    rng = random.Random(3)
    delays = [policy.shed_delay(2.5, rng) for _ in range(1000)]
    assert min(delays) >= 2.5
    assert max(delays) <= 2.5 + 0.25
    assert max(delays) - min(delays) > 0.2, "still spread, not one tick"
    # Short waits: at least SHED_MIN_JITTER of spread; long ones at most base_delay.
    short = [policy.shed_delay(0.15, rng) for _ in range(1000)]
    assert min(short) >= 0.15 and max(short) <= 0.15 + SHED_MIN_JITTER
    assert max(short) - min(short) > SHED_MIN_JITTER / 2
    long = [policy.shed_delay(42.5, rng) for _ in range(1000)]
    assert max(long) <= 42.5 + policy.base_delay
    assert max(long) - min(long) > policy.base_delay / 2


def test_a_whole_second_wait_is_coarse_and_keeps_the_full_jitter() -> None:
    # Retry-After: 1 may mean any slot in the second after it: spread over base_delay.
    policy = RetryPolicy()
    rng = random.Random(4)
    delays = [policy.shed_delay(1.0, rng) for _ in range(1000)]
    assert min(delays) >= 1.0 and max(delays) <= 1.0 + policy.base_delay
    assert max(delays) - min(delays) > policy.base_delay / 2


def test_no_shed_wait_is_shorter_than_the_floor() -> None:
    # A server answering "retry-after-ms: 1" forever gets ten attempts a second, not a
    # hot loop (a shed answer is a wait, not a failure: no cap stops it).
    policy = RetryPolicy()
    rng = random.Random(5)
    for asked in (0.001, 0.01, 0.05, 0.0999):
        delays = [policy.shed_delay(asked, rng) for _ in range(200)]
        assert min(delays) >= SHED_MIN_DELAY
        assert max(delays) <= SHED_MIN_DELAY + SHED_MIN_JITTER


def test_shed_delays_are_deterministic_for_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.shed_delay(w, random.Random(9)) for w in (0.3, 1.0, 7.25)]
    again = [policy.shed_delay(w, random.Random(9)) for w in (0.3, 1.0, 7.25)]
    assert first == again
