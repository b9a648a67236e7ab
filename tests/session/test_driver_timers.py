"""The driver's timers: a deadline moved later keeps one loop handle and still fires once.

``LiveSession`` keeps a timer's asyncio handle when a ``SetTimer`` only moves its deadline
later (the reply watchdog is re-armed on every audio frame) and re-arms for the remainder
when the old handle fires. The machine must see exactly what it asked for: one
``TimerFired`` with the last serial, not before the last deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session.actions import CancelTimer, SetTimer
from tunnelproof.session.events import TimerFired
from tunnelproof.session.live_session import LiveSession


async def _never() -> Any:  # a token source that is never called here
    raise AssertionError("no token wanted")


def _session(fired: list[tuple[TimerFired, float]]) -> LiveSession:
    session = LiveSession(LiveConfig(model="m"), _never)
    loop = asyncio.get_running_loop()
    session._feed = lambda event: fired.append((event, loop.time()))  # type: ignore[method-assign,assignment]
    return session


async def test_a_deadline_moved_later_fires_once_at_the_new_deadline() -> None:
    fired: list[tuple[TimerFired, float]] = []
    session = _session(fired)
    loop = asyncio.get_running_loop()
    start = loop.time()
    session._perform([SetTimer("reply", 1, start + 0.05)])
    session._perform([SetTimer("reply", 2, start + 0.15)])
    await asyncio.sleep(0.1)
    assert fired == []  # the first deadline passed: re-armed, not fired
    await asyncio.sleep(0.15)
    assert [event for event, _ in fired] == [TimerFired("reply", 2)]
    assert fired[0][1] >= start + 0.15


async def test_a_deadline_moved_earlier_fires_at_the_earlier_one() -> None:
    fired: list[tuple[TimerFired, float]] = []
    session = _session(fired)
    loop = asyncio.get_running_loop()
    start = loop.time()
    session._perform([SetTimer("setup", 1, start + 1.0)])
    session._perform([SetTimer("setup", 2, start + 0.05)])
    await asyncio.sleep(0.15)
    assert [event for event, _ in fired] == [TimerFired("setup", 2)]


async def test_a_cancelled_timer_never_fires_even_after_a_move() -> None:
    fired: list[tuple[TimerFired, float]] = []
    session = _session(fired)
    loop = asyncio.get_running_loop()
    start = loop.time()
    session._perform([SetTimer("reply", 1, start + 0.03)])
    session._perform([SetTimer("reply", 2, start + 0.06)])
    session._perform([CancelTimer("reply")])
    await asyncio.sleep(0.12)
    assert fired == []
