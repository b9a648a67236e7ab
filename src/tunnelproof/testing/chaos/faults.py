"""How a chaos session injects its faults: the proxy, the kernel, the emulator, the gate.

:class:`FaultInjection` is a base of :class:`~tunnelproof.testing.chaos.driver.ChaosSession`
(the conversation lives there, the faults here). Every method counts what it did in the
session's record: injected, or skipped when the fault could not land (no connection open
at that moment, a refusal another resume consumed, no network namespace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tunnelproof.protocol.close_codes import REASON_INTERNAL_ERROR_OCCURRED, REASON_INVALID_ARGUMENT
from tunnelproof.testing.chaos.gate import GateFault
from tunnelproof.testing.chaos.record import SessionRecord
from tunnelproof.testing.chaos.schedule import Fault
from tunnelproof.testing.chaos.stack import FaultStack
from tunnelproof.testing.netns import NetnsTunnel
from tunnelproof.testing.tunnel import TunnelProxy

if TYPE_CHECKING:
    from tunnelproof.session.live_session import LiveSession


class FaultInjection:
    """The fault controls of one chaos session (see the module docstring)."""

    index: int
    record: SessionRecord
    stack: FaultStack
    proxy: TunnelProxy
    kernel: NetnsTunnel | None
    latency: tuple[float, float]
    session: LiveSession | None
    _started_at: float

    def _injected(self, fault: Fault) -> None:
        self.record.faults[fault.value] += 1

    def _skipped(self, fault: Fault) -> None:
        self.record.skipped[fault.value] += 1

    def _later(
        self, delay: float, action: Callable[[Fault], Awaitable[None]], fault: Fault
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action(fault)

        return run

    async def _restore_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.proxy.restore()
        self._apply_latency()  # restore clears every proxy fault, the link's latency too

    def _apply_latency(self) -> None:
        latency, jitter = self.latency
        if latency > 0:
            self.proxy.latency(latency, jitter)

    async def _kernel_blackhole(self, fault: Fault, seconds: float) -> None:
        """Drop every packet on the session's veth for ``seconds``, mid-speech."""
        ns = self.kernel
        assert ns is not None
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1)  # a few chunks in: the utterance is cut in the middle
        await loop.run_in_executor(None, ns.blackhole)  # nft runs a process: not on the loop
        self._injected(fault)
        self.record.recent.append(f"{loop.time() - self._started_at:.1f}:[kernel blackhole]")
        try:
            await asyncio.sleep(seconds)
        finally:
            if ns.blackholed:
                await asyncio.shield(loop.run_in_executor(None, ns.restore))
                self.record.recent.append(f"{loop.time() - self._started_at:.1f}:[restored]")

    async def _goaway_loop(self, fault: Fault, seconds: float) -> None:
        """For ``seconds``, every new connection of the session gets ``goAway`` at once.

        Records how many connections the session opened meanwhile: the handover budget
        must keep that small (a hot loop made thousands).
        """
        session = self.session
        assert session is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        before = session.metrics.connections
        seen: set[str] = set()
        while loop.time() < end:
            conn = await self.stack.connection_of(self.index)
            if conn is not None and conn not in seen:
                seen.add(conn)
                await self.stack.emulator_go_away(conn, 0.5)
            await asyncio.sleep(0.15)
        if seen:
            self._injected(fault)
            self.record.goaway_loops.append((seconds, session.metrics.connections - before))
        else:
            self._skipped(fault)

    async def _reset(self, fault: Fault) -> None:
        self.proxy.reset()
        self._injected(fault)

    async def _close_1011(self, fault: Fault) -> None:
        conn = await self.stack.connection_of(self.index)
        if conn is None or not await self.stack.emulator_close(
            conn, 1011, REASON_INTERNAL_ERROR_OCCURRED
        ):
            self._skipped(fault)
            return
        self._injected(fault)

    async def _go_away(self, fault: Fault, time_left: float) -> None:
        conn = await self.stack.connection_of(self.index)
        if conn is None or not await self.stack.emulator_go_away(conn, time_left):
            self._skipped(fault)
            return
        self._injected(fault)

    async def _refuse_next_resume(self, fault: Fault) -> None:
        code, reason = (
            (1007, REASON_INVALID_ARGUMENT)
            if fault is Fault.EXPIRED_HANDLE
            else (
                1011,
                REASON_INTERNAL_ERROR_OCCURRED,
            )
        )
        if self.session is None or self.session.resumption_handle is None:
            self._skipped(fault)
            return
        consumed = await self.stack.refuse_next_resume(code, reason, self.proxy.reset)
        if consumed:
            self._injected(fault)
        else:
            self._skipped(fault)


def gate_faults(fault: Fault, param: float) -> list[GateFault]:
    """What the token gate answers a session's next requests with, for a token fault."""
    if fault is Fault.TOKEN_5XX:
        return [GateFault(503, retry_after=0.5) for _ in range(max(1, int(param)))]
    if fault is Fault.TOKEN_429:
        return [GateFault(429, retry_after=1.0)]
    return [GateFault(stall=param)]
