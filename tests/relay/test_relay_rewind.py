"""A device's events through the relay are truthful: no ``Rewound`` for an answer the relay
then delivers whole, and a ``Rewound`` when output the device missed was really lost.

Real processes over loopback: the emulator (Google), the relay, the token service's ticket
route and a tunnel proxy between the device (tunnelproof's ``LiveSession``) and the relay.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tunnelproof.relay import RelaySettings
from tunnelproof.relay.buffer import BufferLimits
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev

from .relay_helpers import AUDIO_CONFIG, NUMBER, Stack, relay_stack
from .test_relay_clients import WATCHDOGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def _count_through_a_tunnel(
    stack: Stack, *, upto: int, cut_after: int, tunnel_s: float
) -> tuple[list[int], list[ev.AppEvent]]:
    """Ask for a count, blackhole the device's tunnel after ``cut_after`` numbers for
    ``tunnel_s`` seconds; the numbers heard and every event, until the turn ends."""
    async with LiveSession(
        AUDIO_CONFIG, stack.tickets(), watchdogs=WATCHDOGS, rng=random.Random(11)
    ) as session:
        await session.send_text(f"Please count to {upto}.")
        text: list[str] = []
        seen: list[ev.AppEvent] = []
        cut = False
        async with asyncio.timeout(40):
            async for event in session.events():
                seen.append(event)
                if isinstance(event, ev.OutputTranscript):
                    text.append(event.text)
                    if not cut and len(NUMBER.findall("".join(text))) >= cut_after:
                        cut = True
                        stack.tunnel.blackhole(drop=True)
                        asyncio.get_running_loop().call_later(tunnel_s, stack.tunnel.restore)
                elif isinstance(event, ev.TurnComplete):
                    break
        return [int(n) for n in NUMBER.findall("".join(text))], seen


async def test_a_resume_the_relay_replays_whole_reports_no_rewound() -> None:
    async with relay_stack() as stack:
        numbers, seen = await _count_through_a_tunnel(stack, upto=200, cut_after=40, tunnel_s=3)
        assert numbers == list(range(1, 201))
        kinds = [type(e) for e in seen]
        assert ev.Disconnected in kinds and ev.Resumed in kinds, "the device did reconnect"
        # The answer went on: nothing was rewound, so nothing says so (no reply_lost that
        # would make an app ask again and hear the answer twice).
        assert not [e for e in seen if isinstance(e, ev.Rewound)], seen
        stats = stack.relay.stats()
        assert stats["device_resumes"] >= 1
        assert stats["lost_to_bounds"] == 0 and stats["resumes_not_intact"] == 0


async def test_a_resume_that_lost_output_to_the_bounds_reports_the_rewound() -> None:
    # The buffer keeps output 0.5 s: a 3 s tunnel mid-count loses some of what it missed.
    settings = RelaySettings(grace_period=30.0, buffer=BufferLimits(max_age=0.5))
    async with relay_stack(settings=settings) as stack:
        numbers, seen = await _count_through_a_tunnel(stack, upto=300, cut_after=40, tunnel_s=3)
        assert numbers[:40] == list(range(1, 41)) and numbers != list(range(1, 301))
        rewound = [e for e in seen if isinstance(e, ev.Rewound)]
        assert len(rewound) == 1, seen
        assert rewound[0].partial_text and rewound[0].reply_lost
        # Reported when the resume said so, before the app hears it resumed.
        order = [e for e in seen if isinstance(e, ev.Rewound | ev.Resumed | ev.Disconnected)]
        assert [type(e) for e in order[:3]] == [ev.Disconnected, ev.Rewound, ev.Resumed]
        stats = stack.relay.stats()
        assert stats["lost_to_bounds"] > 0 and stats["resumes_not_intact"] == 1
