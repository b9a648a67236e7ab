"""Admission: Retry-After sized by the backlog, and the upstream's circuit breaker."""

from __future__ import annotations

import pytest

from tunnelproof.tokens.admission import (
    OVERLOAD_MIN_WAIT,
    Admission,
    overload_wait,
    retry_after_header,
    retry_after_headers,
    retry_after_ms_header,
)


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
    admission = Admission(100.0, probe_interval=2.0, first_wait=0.0, clock=clock)
    assert admission.may_call_upstream()
    admission.upstream_failed()
    assert admission.upstream_down
    assert not admission.may_call_upstream()  # not the probe's turn yet
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


def test_while_down_no_slot_comes_before_the_next_probe() -> None:
    # A caller back before the probe could only be shed again: the queue starts after it.
    clock = Clock()
    admission = Admission(100.0, probe_interval=2.0, first_wait=0.0, clock=clock)
    admission.upstream_failed()  # next probe at +2 s
    waits = [admission.shed() for _ in range(3)]
    assert waits == pytest.approx([2.01, 2.02, 2.03])
    clock.now += 1.0
    assert admission.shed() == pytest.approx(1.04)  # behind the others, at the rate
    admission.upstream_ok()
    clock.now += 10.0  # up, and the queue drained: no probe to wait for
    assert admission.shed() == pytest.approx(0.01)


def test_no_slot_sooner_than_first_wait_after_the_upstream_went_down() -> None:
    clock = Clock()
    admission = Admission(100.0, probe_interval=0.25, first_wait=1.0, clock=clock)
    admission.upstream_failed()
    clock.now += 0.4  # the herd's first attempts keep arriving
    assert admission.shed() == pytest.approx(0.61)  # 1 s after it went down, + 1 / rate
    assert admission.shed() == pytest.approx(0.62)
    clock.now += 2.0  # a long outage: first_wait no longer binds, the probe and queue do
    admission.upstream_failed()  # the probe failed: next one at +0.25 s
    assert admission.shed() == pytest.approx(0.26)


def test_the_probe_interval_defaults_to_a_quarter_second() -> None:
    clock = Clock()
    admission = Admission(100.0, clock=clock)
    admission.upstream_failed()
    clock.now += 0.24
    assert not admission.may_call_upstream()
    clock.now += 0.01
    assert admission.may_call_upstream()


def test_retry_after_is_whole_seconds_rounded_up_at_least_one() -> None:
    # Rounded up: a client that reads only Retry-After never comes back before its slot.
    assert [retry_after_header(w) for w in (0.0, 0.01, 0.99, 1.0, 1.0000000001, 1.7, 12.3)] == [
        "1",
        "1",
        "1",
        "1",
        "1",  # float noise is not a second
        "2",
        "13",
    ]


def test_retry_after_ms_is_whole_milliseconds_rounded_up_at_least_one() -> None:
    assert [retry_after_ms_header(w) for w in (0.0, 0.0001, 0.0025, 0.0100000001, 1.2345)] == [
        "1",
        "1",
        "3",
        "10",
        "1235",
    ]


def test_both_headers_carry_the_same_wait() -> None:
    assert retry_after_headers(2.0025) == {"Retry-After": "3", "retry-after-ms": "2003"}
    assert retry_after_headers(0.3) == {"Retry-After": "1", "retry-after-ms": "300"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"rate": 1.0, "probe_interval": 0.0},
        {"rate": 1.0, "first_wait": -1.0},
        {"rate": 1.0, "first_wait": 700.0},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Admission(**kwargs)


def test_a_caller_shed_by_a_full_line_waits_for_the_line() -> None:
    # The virtual queue knows only the callers it shed; a full line of mint slots is work
    # it cannot size, so such a caller comes back no sooner than 1 s, or the line's length
    # at the rate (a caller told "3 ms" would only join the same line again).
    assert overload_wait(0, 400.0) == OVERLOAD_MIN_WAIT == 1.0
    assert overload_wait(1200, 400.0) == pytest.approx(3.0)
    clock = Clock()
    admission = Admission(400.0, clock=clock)
    assert admission.shed(overload_wait(0, 400.0)) == pytest.approx(1.0025)
    assert admission.shed() == pytest.approx(1.005)  # the others queue behind it
    clock.now += 10.0
    assert admission.shed(overload_wait(2000, 400.0)) == pytest.approx(5.0025)
