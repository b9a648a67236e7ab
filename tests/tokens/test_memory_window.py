"""The in-process moving window: exact counts, the wait it answers, expiry, idle-key sweep."""

from __future__ import annotations

import pytest

from tunnelproof.tokens import ratelimit
from tunnelproof.tokens.ratelimit import MemoryMovingWindow, UserRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit.time, "monotonic", fake)
    return fake


def test_a_moving_window_counts_the_last_expiry_seconds(clock: Clock) -> None:
    window = MemoryMovingWindow()
    assert [window.hit("ada", 3, 60) for _ in range(3)] == [None, None, None]
    clock.now += 10
    assert window.hit("ada", 3, 60) == pytest.approx(50.0)  # the oldest hit leaves at +60
    assert window.hit("grace", 3, 60) is None  # per key
    clock.now += 50
    assert window.hit("ada", 3, 60) is None  # all three from t=0 have left the window
    assert window.hit("ada", 3, 60) is None
    assert window.hit("ada", 3, 60) is None
    assert window.hit("ada", 3, 60) == pytest.approx(60.0)


def test_idle_keys_are_swept_once_per_window(clock: Clock) -> None:
    window = MemoryMovingWindow()
    for i in range(100):
        window.hit(f"user-{i}", 5, 60)
    assert len(window._hits) == 100
    clock.now += 61
    window.hit("someone", 5, 60)
    assert list(window._hits) == ["someone"]  # memory does not grow with past users


async def test_user_rate_limiter_rounds_the_wait_up(clock: Clock) -> None:
    limiter = UserRateLimiter("2/minute")
    assert await limiter.hit("ada") is None
    clock.now += 0.5
    assert await limiter.hit("ada") is None
    clock.now += 29.2
    assert await limiter.hit("ada") == 31.0  # ceil(60 - 29.7)
    assert await limiter.check_storage()
