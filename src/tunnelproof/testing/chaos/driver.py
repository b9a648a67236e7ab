"""One chaos session: a ``LiveSession`` holding a conversation through its fault plan.

The conversation is what an app would do: say something first (a code word it will be
asked about at the end), then for each :class:`~tunnelproof.testing.chaos.schedule.Step`
type a text, ask for a tool (and answer the call), speak (PCM the emulator "transcribes")
or ask for a long answer, while the step's fault is injected around the turn. Tool calls
are answered as they come, whenever they come, as an app must. At the end it asks the
assistant what was said first: the answer proves whether the context survived.

Every text carries a unique marker (``[c7-3]``) so the emulator's history can be searched
for it afterwards; everything the session was told (send results, ``SendDropped``,
``Rewound``, ...) is kept in its
:class:`~tunnelproof.testing.chaos.record.SessionRecord` for that check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tunnelproof.emulator.audio import encode_speech, silence
from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.machine import SessionState
from tunnelproof.session.outbox import SendResult
from tunnelproof.session.policy import Watchdogs
from tunnelproof.testing.chaos.accounting import marker
from tunnelproof.testing.chaos.config import (
    CHAOS_CONFIG,
    CHAOS_LIMITS,
    CHAOS_POLICY,
    CHAOS_WATCHDOGS,
    TOOL_NAME,
)
from tunnelproof.testing.chaos.faults import FaultInjection, gate_faults
from tunnelproof.testing.chaos.ledger import SentItem
from tunnelproof.testing.chaos.record import SessionRecord
from tunnelproof.testing.chaos.schedule import Fault, Step
from tunnelproof.testing.chaos.stack import FaultStack
from tunnelproof.testing.netns import NetnsTunnel
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.client import TokenServiceSource

log = logging.getLogger("tunnelproof.chaos")

BURST_AFTER = 4  # burst texts sent after the question, beyond the bound: refused

AUDIO_CHUNK_MS = 40
ANSWER_TIMEOUT = 30.0  # a turn through a blackhole, a restart and a backoff still fits


class ChaosSession(FaultInjection):
    """Drive one ``LiveSession`` through ``plan`` (see the module docstring)."""

    def __init__(
        self,
        index: int,
        plan: list[Step],
        stack: FaultStack,
        proxy: TunnelProxy,
        seed: int,
        *,
        watchdogs: Watchdogs = CHAOS_WATCHDOGS,
        latency: tuple[float, float] = (0.0, 0.0),
        kernel: NetnsTunnel | None = None,
    ) -> None:
        self.index = index
        self.watchdogs = watchdogs
        self.latency = latency
        self.kernel = kernel
        self.plan = plan
        self.stack = stack
        self.proxy = proxy
        self.caller = stack.caller(index)
        first = f"{marker(index, 0)} My code word is {_code_word(index)}."
        final_tag = marker(index, "final")
        self.record = SessionRecord(
            index, first, final_tag, expected_answer=f'You first said: "{first}".'
        )
        self.session: LiveSession | None = None
        self._rng = random.Random(f"driver:{seed}:{index}")
        self._seed = seed
        self._tokens = TokenServiceSource(stack.gate_url, lambda: self.caller, timeout=10.0)
        # The same client pointed at a port that refuses connections: a token service down.
        self._refused = TokenServiceSource(stack.refused_url, lambda: self.caller, timeout=10.0)
        self._refuse_until = 0.0
        self._started_at = 0.0
        self._disconnects = 0
        self._turns: list[str] = []
        self._partial: list[str] = []
        self._turn_done = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._marker = ""
        self._fault = "no fault"
        self._turn_kind = "text"
        self._resets_at_send = 0
        self._audio_drops_at_send = 0
        self._on_first_delta: Callable[[], Awaitable[None]] | None = None
        self._on_tool_call: Callable[[], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the token source the session uses ------------------------------------------------

    async def _token_source(self) -> Credential:
        if asyncio.get_running_loop().time() < self._refuse_until:
            await self._refused()  # raises: the connection is refused (the real client's error)
        credential = await self._tokens()
        # The token service names the emulator's address; this session's link to it is
        # its own tunnel proxy (what a device's network path is to Google).
        return dataclasses.replace(credential, ws_base=self.proxy.url("ws"))

    # -- run ------------------------------------------------------------------------------

    async def run(self) -> SessionRecord:
        """Hold the conversation through the plan; never raises (errors are recorded)."""
        rec = self.record
        began = time.monotonic()
        rec.latency_ms = self.latency[0]
        rec.kernel_path = self.kernel is not None
        self._started_at = asyncio.get_running_loop().time()
        self._apply_latency()
        try:
            session = LiveSession(
                CHAOS_CONFIG,
                self._token_source,
                conversation_id=f"chaos-{self.index}",
                policy=CHAOS_POLICY,
                watchdogs=self.watchdogs,
                limits=CHAOS_LIMITS,
                rng=random.Random(f"session:{self._seed}:{self.index}"),
                connect_kwargs={"proxy": None},
            )
            self.session = session
            async with session:
                consumer = asyncio.create_task(self._consume(session))
                try:
                    await self._conversation(session)
                    await self._settle(10.0)
                finally:
                    rec.metrics = session.metrics
                await session.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(consumer, 10.0)
                if not consumer.done():
                    consumer.cancel()
            rec.finished = True
        except Exception as exc:  # a harness bug must show in the report, not stop the soak
            log.exception("chaos session %d failed", self.index)
            rec.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            for task in list(self._tasks):
                task.cancel()
            rec.duration_s = round(time.monotonic() - began, 1)
        return rec

    async def _conversation(self, session: LiveSession) -> None:
        rec = self.record
        await self._wait_connected(60.0)
        self._turn_kind = "first"
        await self._say(rec.first_text, marker(self.index, 0))
        loop = asyncio.get_running_loop()
        for n, step in enumerate(self.plan, start=1):
            began = loop.time()
            await self._wait_connected(30.0)
            await self._step(n, step)
            rec.step_seconds.append((self._fault, round(loop.time() - began, 1)))
            await asyncio.sleep(step.pause)
        # Ask until answered (a fault's after-effects may still cut the first try).
        self._turn_kind, self._fault = "final", "no fault"
        for _ in range(3):
            await self._wait_connected(60.0)
            answer = await self._ask(
                f"{rec.final_tag} What did I say first?",
                rec.final_tag,
                lambda text: text.startswith("You first said:"),
                timeout=60.0,
            )
            if answer is not None:
                rec.final_answer = answer
                break

    # -- one step -------------------------------------------------------------------------

    async def _step(self, n: int, step: Step) -> None:
        tag = marker(self.index, n)
        fault = step.fault
        self._fault = fault.value if fault is not None else "no fault"
        self._turn_kind = step.turn
        restore: asyncio.Task[None] | None = None
        after_send: Callable[[], Awaitable[None]] | None = None
        timeout = ANSWER_TIMEOUT
        slow_since: float | None = None
        if fault is Fault.SLOW_MODEL:
            if await self.stack.think_next_turn(self.index, step.param):
                self._injected(fault)
                slow_since = time.time()
            else:
                self._skipped(fault)
            timeout += step.param
        elif fault is Fault.TOKEN_REFUSED:
            # The token service is down for a while, then the link drops: the session must
            # keep trying through refused connections and come back when it is up again.
            self._refuse_until = asyncio.get_running_loop().time() + step.param
            await self._reset(fault)
            timeout += step.param
        elif fault is Fault.GOAWAY_LOOP:
            restore = asyncio.create_task(self._goaway_loop(fault, step.param))
            timeout += step.param
        elif fault is Fault.KERNEL_BLACKHOLE:
            if self.kernel is None:
                self._skipped(fault)
            else:
                after_send = lambda: self._kernel_blackhole(fault, step.param)  # noqa: E731
                timeout += step.param
        elif fault is Fault.BLACKHOLE:
            self.proxy.blackhole()
            self._injected(fault)
            restore = asyncio.create_task(self._restore_after(step.param))
            timeout += step.param
        elif fault is Fault.RESET:
            after_send = self._later(step.delay, self._reset, fault)
        elif fault is Fault.CLOSE_1011:
            after_send = self._later(step.delay, self._close_1011, fault)
        elif fault is Fault.GOAWAY_AT_BOUNDARY:
            await self._go_away(fault, step.param)
        elif fault is Fault.GOAWAY_MID_TURN:
            self._on_first_delta = lambda: self._go_away(fault, step.param)
        elif fault is Fault.DROP_MID_GENERATION:
            self._on_first_delta = lambda: self._reset(fault)
        elif fault is Fault.DROP_MID_TOOL_CALL:
            self._on_tool_call = lambda: self._reset(fault)
        elif fault in (Fault.REFUSED_RESUME, Fault.EXPIRED_HANDLE):
            await self._refuse_next_resume(fault)
        elif fault in (Fault.TOKEN_5XX, Fault.TOKEN_429, Fault.TOKEN_SLOW):
            self.stack.gate.arm(self.caller, gate_faults(fault, step.param))
            await self._reset(fault)
            if fault is Fault.TOKEN_SLOW and step.turn == "text":
                # While the token stalls, the app keeps typing: fill the outbox to one
                # below its bound, ask (the last queued, so it is answered), then send a
                # few more that the bound must refuse (each reported dropped).
                await self._burst(n, range(CHAOS_LIMITS.max_messages - 1))
                start = CHAOS_LIMITS.max_messages
                after_send = lambda: self._burst(n, range(start, start + BURST_AFTER))  # noqa: E731
        disconnects = self._disconnects
        try:
            if fault is Fault.OVERLAPPING_TURNS:
                await self._overlap(n, step, tag, timeout)
            else:
                await self._turn(n, step, tag, after_send, timeout)
        finally:
            self._on_first_delta = None
            self._on_tool_call = None
            if restore is not None:
                await restore
            if slow_since is not None:
                self.record.slow_model_turns.append(
                    (slow_since, time.time(), self._disconnects - disconnects)
                )

    async def _turn(
        self,
        n: int,
        step: Step,
        tag: str,
        after_send: Callable[[], Awaitable[None]] | None,
        timeout: float,
    ) -> None:
        if step.turn == "text":
            burst = tag[:-1] + "-b"  # a burst text sent later would cut this answer short
            await self._ask(
                f"{tag} Note number {n}.",
                tag,
                lambda text: tag in text or burst in text,
                after_send,
                timeout,
            )
        elif step.turn == "tool":
            await self._ask(f"{tag} Please check the weather.", tag, None, after_send, timeout)
        elif step.turn == "long":
            count = 30 + n
            await self._ask(
                f"{tag} Please count to {count}.",
                tag,
                lambda text: text.startswith("1, 2") and text.endswith(f" {count}."),
                after_send,
                timeout,
            )
        else:
            await self._speak(tag, after_send, timeout)

    # -- turns ------------------------------------------------------------------------------

    async def _overlap(self, n: int, step: Step, tag: str, timeout: float) -> None:
        """Ask for a long answer and talk over it: follow-ups back to back, maybe a drop."""
        started = asyncio.Event()

        async def answer_started() -> None:
            started.set()

        self._marker = tag
        mark = len(self._turns)
        self._resets_at_send = self.record.events["ContextReset"]
        self._on_first_delta = answer_started
        if await self._send(f"{tag} Please count to {30 + n}.", tag) is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), timeout)
        self._injected(Fault.OVERLAPPING_TURNS)
        last: str | None = None
        for k in range(1, int(step.param) + 1):
            follow = marker(self.index, f"{n}-f{k}")
            if await self._send(f"{follow} Follow-up {k}.", follow) is not None:
                last = follow
        if step.delay >= 0:
            self._spawn(self._later(step.delay, lambda _f: self._reset_quietly(), Fault.RESET)())
        if last is None:
            return
        self._marker = last
        # Each follow-up cuts the answer before it (a barge-in); the last one is answered.
        await self._answer(mark, lambda text: last in text, timeout)

    async def _reset_quietly(self) -> None:
        self.proxy.reset()

    async def _settle(self, timeout: float) -> None:
        """Before closing, give the last sends time to be confirmed (as an app would)."""
        rec = self.record
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            open_seqs = set(rec.sends) - rec.delivered_seqs - rec.dropped_seqs
            if not open_seqs:
                return
            await asyncio.sleep(0.2)

    async def _burst(self, n: int, numbers: range) -> None:
        for k in numbers:
            tag = marker(self.index, f"{n}-b{k}")
            await self._send(f"{tag} Burst note {k}.", tag)

    async def _send(self, text: str, tag: str) -> SendResult | None:
        session = self.session
        assert session is not None
        result = await session.send_text(text)
        self.record.note_send(result, SentItem("text", tag))
        return None if result.dropped else result

    async def _say(self, text: str, tag: str) -> None:
        await self._ask(text, tag, None)

    async def _ask(
        self,
        text: str,
        tag: str,
        check: Callable[[str], bool] | None,
        after_send: Callable[[], Awaitable[None]] | None = None,
        timeout: float = ANSWER_TIMEOUT,
    ) -> str | None:
        """Send ``text`` and wait for the turn that answers it (``None`` on timeout)."""
        self._marker = tag
        mark = len(self._turns)
        self._resets_at_send = self.record.events["ContextReset"]
        if await self._send(text, tag) is None:
            return None
        if after_send is not None:
            self._spawn(after_send())
        return await self._answer(mark, check or (lambda t: tag in t), timeout)

    async def _speak(
        self, tag: str, after_send: Callable[[], Awaitable[None]] | None, timeout: float
    ) -> None:
        session = self.session
        assert session is not None
        self._marker = tag
        mark = len(self._turns)
        self._resets_at_send = self.record.events["ContextReset"]
        self._audio_drops_at_send = self.record.audio_drop_reports
        pcm = encode_speech(f"{tag} Spoken note.") + silence(0.8)
        step = 16_000 * 2 * AUDIO_CHUNK_MS // 1000
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            result = await session.send_audio(chunk)
            self.record.audio_ms_sent += len(chunk) / 32.0
            self.record.note_send(result, SentItem("audio", tag, len(chunk) / 32.0))
            if offset == 0 and after_send is not None:
                self._spawn(after_send())
            await asyncio.sleep(0.004)  # interleave with the other sessions
        await self._answer(mark, lambda t: tag in t, timeout)

    async def _answer(self, mark: int, check: Callable[[str], bool], timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reset_seen = cut_seen = False
        while True:
            for text in self._turns[mark:]:
                if check(text):
                    return text
            mark = len(self._turns)
            if (
                not cut_seen
                and self._turn_kind == "audio"
                and self.record.audio_drop_reports > self._audio_drops_at_send
            ):
                # Part of the utterance was reported dropped: the server may never hear a
                # whole sentence. Wait a little for an answer, then go on, as an app would.
                cut_seen = True
                deadline = min(deadline, loop.time() + max(4.0, 2 * self.watchdogs.reply_timeout))
            if not reset_seen and self.record.events["ContextReset"] > self._resets_at_send:
                # A fresh session asks an unanswered question again after the seeded
                # history; one whose answer a handle's state held stays history only
                # (Rewound.reply_lost told the app). Wait a little, then go on, as an app.
                reset_seen = True
                deadline = min(deadline, loop.time() + 8.0)
            left = deadline - loop.time()
            if left <= 0:
                rec = self.record
                if reset_seen:
                    rec.replies_lost_to_reset += 1
                    return None
                if (
                    self._turn_kind == "audio"
                    and rec.audio_drop_reports > self._audio_drops_at_send
                ):
                    # Part of the utterance was dropped (too old to send after a long gap)
                    # and reported: the server never heard a whole sentence to answer.
                    rec.spoken_turns_cut_by_audio_drops += 1
                    if len(rec.cut_notes) < 5:
                        rec.cut_notes.append(
                            f"{self._marker} ({self._fault}): {' '.join(rec.recent)}"
                        )
                    return None
                rec.turn_timeouts += 1
                rec.timeouts_by_turn[self._turn_kind] += 1
                if len(rec.timeout_notes) < 5:
                    state = self.session.state.value if self.session is not None else "-"
                    rec.timeout_notes.append(
                        f"{self._marker} {self._turn_kind} ({self._fault}) state={state}; "
                        f"last events: {' '.join(rec.recent)}"
                    )
                return None
            self._turn_done.clear()
            self._state_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._turn_done.wait(), min(left, 1.0))

    async def _wait_connected(self, timeout: float) -> bool:
        session = self.session
        assert session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while session.state is not SessionState.CONNECTED:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._state_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), min(left, 0.5))
        return True

    # -- events -----------------------------------------------------------------------------

    async def _consume(self, session: LiveSession) -> None:
        rec = self.record
        async for event in session.events():  # outlives Failed: this app resumes
            rec.events[type(event).__name__] += 1
            if not isinstance(event, ev.OutputTranscript | ev.TextDelta | ev.AudioChunk):
                # Seconds since the session started: a note then shows where time went.
                at = asyncio.get_running_loop().time() - self._started_at
                rec.recent.append(f"{at:.1f}:{_describe(event)}")
            self._state_changed.set()
            match event:
                # The answer's text is its transcript (TextDelta only on a text model).
                case ev.OutputTranscript(text=text) | ev.TextDelta(text=text):
                    first = not self._partial
                    self._partial.append(text)
                    if first and self._on_first_delta is not None:
                        action, self._on_first_delta = self._on_first_delta, None
                        self._spawn(action())
                case ev.TurnComplete():
                    self._turns.append("".join(self._partial).strip())
                    self._partial.clear()
                    self._turn_done.set()
                case ev.Rewound() | ev.Interrupted():
                    self._partial.clear()
                case ev.ToolCallRequested(calls=calls, reissued=reissued):
                    if self._on_tool_call is not None:
                        action, self._on_tool_call = self._on_tool_call, None
                        await action()  # the drop lands before the answer is sent
                    await self._answer_tools(session, [c.id for c in calls if c.id], reissued)
                case ev.Delivered(seqs=seqs):
                    rec.delivered_twice += len(rec.delivered_seqs.intersection(seqs))
                    rec.delivered_seqs.update(seqs)
                case ev.Disconnected():
                    self._disconnects += 1
                case ev.SendDropped(seqs=seqs, kind=kind):
                    rec.dropped_seqs.update(seqs)
                    if kind == "audio":
                        rec.audio_drop_reports += 1
                case ev.Failed():
                    # What an app does after "gave up": wait a moment and try again.
                    self._spawn(self._resume_later(session))
                case _:
                    pass

    async def _answer_tools(
        self, session: LiveSession, ids: list[str], reissued: tuple[str, ...]
    ) -> None:
        for call_id in ids:
            # The tool has a side effect: it runs once per request; a re-issued call is
            # answered from the run it replaces (ToolCallRequested.reissued).
            effects = self.record.tool_effects
            doubles = len(effects.double_executions)
            answer = effects.call(call_id, self._marker, reissued)
            if len(effects.double_executions) > doubles:  # what led to it, for the report
                effects.double_executions[-1] += f"; last events: {' '.join(self.record.recent)}"
            result = await session.send_tool_response(
                [FunctionResponse(call_id, TOOL_NAME, {"result": answer})]
            )
            self.record.note_send(result, SentItem("tool", call_id))

    async def _resume_later(self, session: LiveSession) -> None:
        await asyncio.sleep(0.5)
        await session.resume()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _describe(event: ev.AppEvent) -> str:
    match event:
        case ev.Reconnecting(delay=delay, reason=reason):
            return f"Reconnecting({delay:.2f}s: {reason[:60]})"
        case ev.Disconnected(code=code, reason=reason):
            return f"Disconnected({code} {reason[:40]})"
        case ev.SendDropped(kind=kind, reason=reason):
            return f"SendDropped({kind}: {reason[:40]})"
        case ev.Failed(verdict=verdict):
            return f"Failed({verdict.reason[:60]})"
        case ev.Rewound(reply_lost=lost, cancelled_tool_call_ids=ids):
            return f"Rewound(lost={lost}, tools={len(ids)})"
    return type(event).__name__


_WORDS = ("teal", "harbour", "lantern", "quartz", "meadow", "falcon", "cobalt", "juniper")


def _code_word(index: int) -> str:
    return f"{_WORDS[index % len(_WORDS)]}-{index}"
