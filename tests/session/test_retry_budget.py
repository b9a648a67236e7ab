"""Direct tests of ``RetryBudget``: retry or give up, per outage and per session."""

from __future__ import annotations

import random

from tunnelproof.session.policy import SEED_POLICY, RetryPolicy
from tunnelproof.session.retry_budget import GiveUp, Retry, RetryBudget


def test_server_failures_back_off_with_full_jitter_under_a_growing_ceiling() -> None:
    budget = RetryBudget(RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=30.0))
    rng = random.Random(1)
    for n in range(6):
        decision = budget.after_server_failure("boom", rng)
        assert isinstance(decision, Retry) and not decision.offline
        assert 0.0 <= decision.delay <= min(30.0, 0.5 * 2**n)
    assert budget.outage_failures == 6


def test_retry_after_is_a_floor() -> None:
    budget = RetryBudget(RetryPolicy())
    decision = budget.after_server_failure("429", random.Random(0), retry_after=7.0)
    assert isinstance(decision, Retry) and decision.delay >= 7.0


def test_gives_up_at_the_outage_cap_and_says_why() -> None:
    budget = RetryBudget(RetryPolicy(max_attempts_per_outage=2))
    rng = random.Random(0)
    assert isinstance(budget.after_server_failure("x", rng), Retry)
    assert isinstance(budget.after_server_failure("x", rng), Retry)
    decision = budget.after_server_failure("closed 1011", rng)
    assert decision == GiveUp("gave up after 3 failed attempts in a row (closed 1011)")


def test_gives_up_at_the_session_cap_even_with_stable_connections_between() -> None:
    budget = RetryBudget(RetryPolicy(max_attempts_per_session=3))
    rng = random.Random(0)
    for _ in range(3):
        assert isinstance(budget.after_server_failure("x", rng), Retry)
        budget.stable()
    assert isinstance(budget.after_server_failure("x", rng), GiveUp)
    budget.app_resumed()
    assert isinstance(budget.after_server_failure("x", rng), Retry), "resume: a new budget"


def test_offline_probes_steadily_and_never_count_as_server_failures() -> None:
    policy = RetryPolicy(offline_interval=0.75, offline_jitter=0.15)
    budget = RetryBudget(policy)
    rng = random.Random(3)
    for k in range(50):
        decision = budget.after_offline_failure("unreachable", float(k), rng)
        assert isinstance(decision, Retry) and decision.offline
        assert 0.6 <= decision.delay <= 0.9
    assert budget.outage_failures == 0 and budget.offline and budget.last_failure_offline
    budget.connected()
    assert not budget.offline and not budget.last_failure_offline


def test_offline_gives_up_after_max_offline_seconds() -> None:
    budget = RetryBudget(RetryPolicy(max_offline_seconds=10.0))
    rng = random.Random(0)
    assert isinstance(budget.after_offline_failure("gone", 100.0, rng), Retry)
    assert isinstance(budget.after_offline_failure("gone", 109.0, rng), Retry)
    decision = budget.after_offline_failure("gone", 110.0, rng)
    assert isinstance(decision, GiveUp) and "over 10 s" in decision.reason


def test_the_seed_policy_shares_one_backoff_and_resets_on_open() -> None:
    budget = RetryBudget(SEED_POLICY)
    rng = random.Random(0)
    decision = budget.after_offline_failure("gone", 0.0, rng)
    assert isinstance(decision, Retry) and not decision.offline
    assert budget.outage_failures == 1
    budget.socket_opened()
    assert budget.outage_failures == 0


def test_counters_reset_only_when_stable_unless_stable_after_is_zero() -> None:
    budget = RetryBudget(RetryPolicy(stable_after=10.0))
    rng = random.Random(0)
    budget.after_server_failure("x", rng)
    budget.socket_opened()
    budget.connected()
    assert budget.outage_failures == 1, "an open or setupComplete is not stability"
    budget.stable()
    assert budget.outage_failures == 0
    eager = RetryBudget(RetryPolicy(stable_after=0.0))
    eager.after_server_failure("x", rng)
    eager.connected()
    assert eager.outage_failures == 0


def test_attempts_are_numbered_per_outage() -> None:
    budget = RetryBudget(RetryPolicy())
    assert budget.next_attempt == 1
    budget.attempt_started()
    budget.attempt_started()
    assert budget.next_attempt == 3
    budget.connected()
    assert budget.next_attempt == 1


class _Highest(random.Random):
    """Full jitter at its worst: every draw is the top of its range (deterministic)."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_a_flapping_link_never_escalates_past_drop_max_delay_nor_gives_up() -> None:
    """Issue 13 symptom 8 / issue 15: a link reset as soon as each connection is set up.
    Beyond the immediate budget the quick drops back off, but under ``drop_max_delay``
    (2 s), and never against the per-outage cap, so the session is back within 2 s of the
    link settling. Before: the ceiling escalated to 30 s and the 13th drop gave up."""
    policy = RetryPolicy()
    budget = RetryBudget(policy)
    rng = _Highest()
    delays = []
    now = 0.0
    for _ in range(20):
        decision = budget.after_drop("reset", served=0.01, now=now, rng=rng)
        assert isinstance(decision, Retry), decision
        delays.append(decision.delay)
        budget.attempt_started()
        budget.connected()
        now += decision.delay + 0.05
    assert delays[: policy.immediate_budget] == [0.0] * policy.immediate_budget
    assert delays[policy.immediate_budget : policy.immediate_budget + 3] == [0.5, 1.0, 2.0]
    assert max(delays) == 2.0  # the worst draw: the ceiling stops at drop_max_delay


def test_quick_drops_forever_still_end_at_the_session_cap() -> None:
    """A server that accepts setup and drops every connection: no hot loop (each attempt
    beyond the budget waits under 2 s) and a bounded number of tokens (the session cap)."""
    budget = RetryBudget(RetryPolicy(max_attempts_per_session=10))
    rng = random.Random(3)
    outcomes: list[Retry | GiveUp] = []
    for n in range(40):
        outcomes.append(budget.after_drop("reset", served=0.0, now=float(n), rng=rng))
        if isinstance(outcomes[-1], GiveUp):
            break
    assert isinstance(outcomes[-1], GiveUp) and "this session" in outcomes[-1].reason
    assert len(outcomes) == RetryPolicy().immediate_budget + 11


def test_the_seed_policy_backs_quick_drops_off_like_server_errors() -> None:
    budget = RetryBudget(SEED_POLICY)
    rng = random.Random(0)
    delays = []
    for n in range(4):
        decision = budget.after_drop("reset", served=0.0, now=float(n), rng=rng)
        assert isinstance(decision, Retry)
        delays.append(decision.delay)
    assert [int(d) for d in delays] == [1, 2, 4, 8]  # 1 s · 2ⁿ + uniform(0, 0.5 s)
