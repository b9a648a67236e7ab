"""Admission: Retry-After sized by the backlog, and the upstream's circuit breaker."""

from __future__ import annotations

import pytest

from tunnelproof.tokens.admission import Admission, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_shed_caller_gets_its_own_slot_at_the_rate() -> None:
    clock = Clock()
    admission = Admission(10.0, clock=clock)
    waits = [admission.shed() for _ in range(50)]
    assert waits == pytest.approx([(n + 1) / 10.0 for n in range(50)])
    assert admission.backlog == 50
    clock.now += 2.0  # 20 slots have come and gone
    assert admission.backlog == 30
    assert admission.shed() == pytest.approx(5.1 - 2.0)  # behind the 50th slot


def test_a_drained_queue_starts_again_from_now() -> None:
    clock = Clock()
    admission = Admission(4.0, clock=clock)
    admission.shed()
    clock.now += 60.0
    assert admission.shed() == pytest.approx(0.25)
    assert admission.backlog == 1


def test_while_down_one_request_per_interval_is_the_probe() -> None:
    clock = Clock()
    admission = Admission(100.0, probe_interval=2.0, clock=clock)
    assert admission.may_call_upstream()
    admission.upstream_failed()
    assert admission.upstream_down
    assert not admission.may_call_upstream()  # not the probe's turn yet
    assert admission.shed() == pytest.approx(0.01)  # the queue, not the probe, sets the wait
    clock.now += 2.0
    assert admission.may_call_upstream()  # the probe
    assert not admission.may_call_upstream()  # only one per interval
    admission.upstream_ok()
    assert not admission.upstream_down
    assert admission.may_call_upstream()


def test_the_wait_is_bounded() -> None:
    clock = Clock()
    admission = Admission(1.0, max_wait=30.0, clock=clock)
    waits = [admission.shed() for _ in range(100)]
    assert max(waits) == pytest.approx(30.0)


def test_the_header_is_whole_seconds_rounded_down_at_least_one() -> None:
    assert [retry_after_header(w) for w in (0.01, 0.99, 1.0, 1.7, 12.3)] == [
        "1",
        "1",
        "1",
        "1",
        "12",
    ]


@pytest.mark.parametrize("kwargs", [{"rate": 0.0}, {"rate": 1.0, "probe_interval": 0.0}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Admission(**kwargs)
