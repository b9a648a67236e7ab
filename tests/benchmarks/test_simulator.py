"""The virtual-clock simulator: deterministic, and faithful to the two policies."""

from __future__ import annotations

from tunnelproof.benchmarks.simulator import Scheduler, simulate_storm, simulate_tunnel
from tunnelproof.session.policy import DEFAULT_POLICY, SEED_POLICY


def test_scheduler_runs_in_time_order_and_is_bounded() -> None:
    sched = Scheduler()
    seen: list[str] = []
    sched.at(2.0, seen.append, "b")
    sched.at(1.0, seen.append, "a")
    sched.at(2.0, seen.append, "c")  # same time: insertion order
    assert sched.run(10.0)
    assert seen == ["a", "b", "c"]
    assert sched.now == 10.0

    def forever() -> None:
        sched.at(sched.now + 1.0, forever)

    sched.at(11.0, forever)
    assert sched.run(1e9, max_events=100) is False  # bounded, never hangs


def test_same_seed_same_outcome() -> None:
    a = simulate_tunnel(DEFAULT_POLICY, 90.0, seed=42)
    b = simulate_tunnel(DEFAULT_POLICY, 90.0, seed=42)
    assert a == b


def test_seed_policy_gives_up_on_a_90_s_tunnel() -> None:
    for seed in range(5):
        outcome = simulate_tunnel(SEED_POLICY, 90.0, seed=seed)
        assert outcome.gave_up
        assert outcome.restored_after_s is None
        assert outcome.attempts == 6  # 1 s · 2ⁿ, six tries
        assert outcome.gave_up_at_s is not None and 60.0 < outcome.gave_up_at_s < 70.0


def test_ours_recovers_within_about_one_probe_interval() -> None:
    # Restored = wait for the next probe (≤ interval + jitter) + token + connect + setup.
    healthy_round_trip = 0.15 + 0.25 + 0.20
    bound = DEFAULT_POLICY.offline_interval + DEFAULT_POLICY.offline_jitter + healthy_round_trip
    for seed in range(5):
        outcome = simulate_tunnel(DEFAULT_POLICY, 90.0, seed=seed)
        assert not outcome.gave_up
        assert outcome.resumed  # the same server session, not a fresh one
        assert outcome.restored_after_s is not None
        assert 0.0 < outcome.restored_after_s <= bound + 1e-6
        # Probes inside the tunnel never reached a server: only the successful one did.
        assert outcome.server_requests == 1


def test_ours_recovers_after_thirty_minutes_too() -> None:
    outcome = simulate_tunnel(DEFAULT_POLICY, 1800.0, seed=3)
    assert not outcome.gave_up
    assert outcome.restored_after_s is not None and outcome.restored_after_s < 1.5


def test_blackhole_mode_completes_connects_at_syn_retransmits() -> None:
    outcome = simulate_tunnel(DEFAULT_POLICY, 2.0, seed=1, offline_mode="blackhole")
    assert not outcome.gave_up
    # The fetch started at the tunnel's start; its SYN retransmit at +3 s gets through.
    assert outcome.restored_after_s is not None and 0.9 < outcome.restored_after_s < 2.0


def test_small_storm_is_deterministic_and_restores_everyone_with_ours() -> None:
    a = simulate_storm(DEFAULT_POLICY, 200, token_rate=50.0, seed=5)
    b = simulate_storm(DEFAULT_POLICY, 200, token_rate=50.0, seed=5)
    assert a.restored == b.restored == 200
    assert a.t100_s == b.t100_s
    assert a.t99_s is not None and a.t100_s is not None and a.t99_s <= a.t100_s
    assert a.peak_offered_rps > 0
    seed = simulate_storm(SEED_POLICY, 200, token_rate=50.0, seed=5)
    assert seed.restored + seed.gave_up == 200


def test_a_backlog_sized_retry_after_keeps_the_herd_near_capacity() -> None:
    # 2,000 clients, a service minting 20/s: N / capacity = 100 s. With tunnelproof's
    # service (503 + a Retry-After sized by the backlog) the herd comes once, then at about
    # the capacity; with the service before issue 15 (502 while the upstream is down,
    # Retry-After: 1) it keeps coming back many times over.
    n, rate = 2_000, 20.0
    queue = simulate_storm(DEFAULT_POLICY, n, token_rate=rate, restart_s=1.5, seed=3)
    fixed = simulate_storm(
        DEFAULT_POLICY, n, token_rate=rate, restart_s=1.5, seed=3, service="fixed"
    )
    assert queue.restored == n and queue.gave_up == 0
    assert queue.t100_s is not None and queue.t100_s <= 1.1 * n / rate
    assert queue.peak_offered_rps <= n  # nobody asks twice in the first second
    after_first_seconds = [r for t, r in queue.offered_rps if t >= 3]
    assert max(after_first_seconds) <= 1.5 * rate
    assert queue.token_requests <= 2.2 * n  # about one shed answer and one token each
    assert fixed.token_requests > 5 * queue.token_requests
