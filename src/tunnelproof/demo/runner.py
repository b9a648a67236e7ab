"""Play the journey: one client session through the tunnel, faults on cue, everything recorded.

The runner is the only writer of :class:`~tunnelproof.demo.model.DemoState`. It never
sleeps on luck: after each fault it waits for the *event* that proves recovery (the answer
to what the user said, ``Resumed``/``Connected``), with generous timeouts that turn a hang
into a failed verdict instead of a stuck demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tunnelproof.demo.journey import Journey, Step
from tunnelproof.demo.model import DemoState, Disruption, Utterance
from tunnelproof.demo.preflight import failure_sentence
from tunnelproof.demo.stack import DemoStack
from tunnelproof.emulator.audio import encode_speech, silence
from tunnelproof.session import (
    AudioChunk,
    ConfigMismatch,
    Connected,
    ContextReset,
    Disconnected,
    Failed,
    GoAwayReceived,
    LiveSession,
    OutputTranscript,
    Reconnecting,
    Resumed,
    Rewound,
    SendDropped,
    TextDelta,
    TurnComplete,
    TurnsRestored,
)
from tunnelproof.session.app_events import AppEvent

# Seconds to wait for something that proves recovery. Recovery itself takes about a
# second; these only bound a broken run so that it ends with a verdict instead of hanging.
ANSWER_TIMEOUT = 30.0
CONNECT_TIMEOUT = 30.0
HANDLE_PAUSE = 0.3  # the longest pause after an answer, waiting for its handle (wall s)

AUDIO_CHUNK_S = 0.04  # 40 ms chunks: what the Live docs recommend for streaming input
AUDIO_PACING = 2.0  # the demo user speaks at twice real time, to keep the journey short
OUTPUT_RATE = 24_000


def normalise(text: str) -> str:
    """Lower-case words only, for comparing what was said with what was quoted back."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def describe_disconnect(
    code: int | None, reason: str, *, planned: bool, ending: bool = False
) -> str:
    """A lost or handed-over connection, as a sentence (not ``handed over: 1000``).

    ``planned`` is a close the client made itself: a handover after ``goAway`` while the
    journey runs, the end of the conversation once it is over (``ending``).
    """
    normally = "normally" if code in (1000, None) else f"with code {code}"
    if planned and ending:
        return f"the journey is over: the client closed the connection {normally}"
    if planned:
        return (
            f"handover: the client closed the old connection {normally} at the turn's end "
            "and resumes the conversation on a new one"
        )
    if code is None:
        return "link lost: the connection dropped without a close frame"
    why = f" ({reason.strip()})" if reason.strip() else ""
    return f"link lost: the server closed the connection with code {code}{why}"


@dataclass(slots=True)
class _Pending:
    """An utterance waiting for its answer."""

    utterance: Utterance
    done: asyncio.Event
    seqs: set[int]


class JourneyRunner:
    """Run ``journey`` on ``session``, faults through ``stack``, recording into ``state``."""

    def __init__(
        self,
        journey: Journey,
        stack: DemoStack,
        session: LiveSession,
        state: DemoState,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.journey = journey
        self.stack = stack
        self.session = session
        self.state = state
        self.audio = state.audio
        self._clock = clock or asyncio.get_running_loop().time
        self._t0 = self._clock()
        self._pending: deque[_Pending] = deque()
        self._answer = ""
        self._answer_words = 0
        self._progress = asyncio.Event()
        self._ready = asyncio.Event()
        self._failed = asyncio.Event()
        self._planned = False
        self._handles: set[str] = set()
        self._cut: Step | None = None  # a drop step waiting for its answer to be under way

    # -- time -------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the journey started (also updates ``state.elapsed``)."""
        self.state.elapsed = self._clock() - self._t0
        return self.state.elapsed

    async def _until(self, at: float) -> None:
        delay = at - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- events -------------------------------------------------------------------------------

    async def consume(self) -> None:
        """Read every session event until the session ends (run as a task)."""
        async for event in self.session.events():
            self.on_event(event)

    def on_event(self, event: AppEvent) -> None:
        """Record one session event."""
        st = self.state
        self.now()
        self._track_handle()
        match event:
            case Connected(first=first):
                st.connections += 1
                if not first:
                    st.reconnects += 1
                    self._recovered("fresh session", None, 0)
                st.note("connected" if first else "connected to a fresh session", "green")
                self._ready.set()
            case Resumed(gap=gap, replayed=replayed):
                st.connections += 1
                st.reconnects += 1
                how = "handover" if self._planned else "resumed"
                self._planned = False
                self._recovered(how, gap, replayed)
                extra = f", {replayed} replayed" if replayed else ""
                st.note(f"resumed after {gap:.2f} s{extra}", "green")
                self._ready.set()
            case Reconnecting(delay=delay, attempt=attempt, reason=reason, kind=kind):
                self._ready.clear()
                self._planned = self._planned or event.planned
                open_ = st.open_disruption()
                if open_ is not None:
                    open_.reconnects += 1
                what = "planned handover" if event.planned else f"{kind}, attempt {attempt}"
                reason = reason.replace("closed None", "dropped without a close frame")
                st.last_problem = reason
                st.note(f"reconnecting in {delay:.2f} s ({what}): {reason}", "yellow")
            case Disconnected(code=code, reason=reason, planned=planned):
                self._ready.clear()
                st.note(describe_disconnect(code, reason, planned=planned, ending=st.finished))
            case GoAwayReceived(time_left=left):
                shown = "?" if left is None else f"{left:.1f}"
                st.note(f"goAway: server leaves in {shown} s; handover at the turn's end")
            case Rewound(partial_text=partial, reply_lost=lost, reasked=reasked):
                said = " ".join((partial or self._answer).split())
                if self._pending and said:
                    head = self._pending[0].utterance
                    if len(said) > len(head.cut_partial):
                        head.cut_partial = said
                    head.status = "cut"
                    words = len(said.split())
                    open_ = st.open_disruption()
                    if open_ is not None:
                        open_.cut_words = max(open_.cut_words, words)
                    st.note(f"answer cut after {words} words; the question will be replayed")
                elif reasked:
                    st.note("the reply due was lost with the link; the message will be replayed")
                elif lost:
                    st.note("the reply due was lost with the link: ask again")
                self._answer = ""
                self._answer_words = 0
            case TurnsRestored(turns=turns, reasked=reasked):
                how = "asked again (no text known)" if reasked else "restored, not asked again"
                st.note(f"{turns} finished turn(s) lost with the link: {how}")
            case ConfigMismatch() as mismatch:
                st.config_mismatches.append(mismatch.advice)
                st.note(f"config mismatch: {mismatch.advice}", "red")
            case ContextReset(reason=reason, seeded_turns=turns):
                st.context_resets += 1
                st.note(f"context reset ({reason}); re-seeded {turns} turns", "red")
            case Failed(verdict=verdict):
                st.failed = failure_sentence(verdict)
                st.note(f"failed: {st.failed}", "bold red")
                self._failed.set()
                for pending in self._pending:
                    pending.done.set()
            case SendDropped(seqs=seqs, reason=reason, audio_ms=ms):
                st.audio_ms_dropped += ms
                for pending in list(self._pending):
                    if pending.seqs.intersection(seqs):
                        pending.utterance.status = "dropped"
                        pending.utterance.dropped_reason = reason
                        pending.done.set()
                        self._pending.remove(pending)
                st.note(f"send dropped ({reason})", "red")
            case TextDelta(text=text):
                self._add_answer(text)
            case OutputTranscript(text=text):
                self._add_answer(text)
            case AudioChunk(pcm=pcm):
                st.audio_received_s += len(pcm) / 2 / OUTPUT_RATE
            case TurnComplete():
                # A turn that ends with nothing said (an interrupted or abandoned one) is
                # not the answer to the oldest question; keep waiting for that.
                if self._pending and self._answer.strip():
                    done = self._pending.popleft()
                    done.utterance.answer = " ".join(self._answer.split())
                    done.utterance.answered_at = self.now()
                    if done.utterance.status != "dropped":
                        done.utterance.status = "answered"
                    done.done.set()
                self._answer = ""
                self._answer_words = 0
            case _:
                pass
        self._sync_metrics()

    def _add_answer(self, text: str) -> None:
        self._answer += text
        self._answer_words = len(self._answer.split())
        self._progress.set()
        if self._cut is not None and self._answer_words >= self._cut.cut_after_words:
            self._cut_now()

    def _cut_now(self) -> None:
        """Reset the link under the answer, right now.

        Called from the event handler itself, not from the step's task: a wake-up of
        another task could come late under load, after the answer had finished, and the
        "drop mid-answer" would silently become a drop after the answer.
        """
        step, self._cut = self._cut, None
        assert step is not None
        d = self._disrupt(step, "drop")
        self.stack.reset_link()
        d.ended = d.started
        # What had been said when the link died is the cut answer, whatever the resume
        # later reports (Rewound may say more, never less).
        d.cut_words = self._answer_words
        if self._pending and self._answer.strip():
            head = self._pending[0].utterance
            head.cut_partial = " ".join(self._answer.split())
            head.status = "cut"
        self.state.note(f"link reset mid-answer (after {self._answer_words} words)", "red")

    def _recovered(self, how: str, gap: float | None, replayed: int) -> None:
        open_ = self.state.open_disruption()
        # A tunnel cannot be recovered from while it is still closed.
        if open_ is None or (open_.kind == "tunnel" and open_.ended is None):
            return
        open_.recovered = self.now()
        open_.how = how
        open_.gap = gap
        open_.replayed += replayed

    def _track_handle(self) -> None:
        handle = self.session.resumption_handle
        if handle and handle not in self._handles:
            self._handles.add(handle)
            self.state.handles_seen = len(self._handles)
            # A fingerprint, not the handle: with a token it resumes the conversation.
            self.state.last_handle = hashlib.sha256(handle.encode()).hexdigest()[:8]

    def _sync_metrics(self) -> None:
        m = self.session.metrics
        st = self.state
        st.session_state = str(self.session.state)
        st.tokens_fetched = m.tokens_fetched
        st.messages_replayed = m.messages_replayed
        st.messages_dropped = m.messages_dropped
        st.audio_ms_replayed = m.audio_ms_replayed
        st.audio_ms_dropped = max(st.audio_ms_dropped, m.audio_ms_dropped)
        minted = self.stack.tokens_minted()
        if minted is not None:
            st.tokens_minted = minted

    # -- the user -------------------------------------------------------------------------------

    async def say(self, text: str) -> _Pending:
        """Say ``text`` (typed, or spoken with ``--audio``); returns its pending answer."""
        utterance = Utterance(text, self.now(), audio=self.audio)
        self.state.utterances.append(utterance)
        pending = _Pending(utterance, asyncio.Event(), set())
        self._pending.append(pending)
        if self.audio:
            await self._speak(text, pending)
        else:
            result = await self.session.send_text(text)
            self._record_send(pending, result.seq, result.status, result.reason)
        return pending

    async def _speak(self, text: str, pending: _Pending) -> None:
        pcm = encode_speech(text) + silence(0.7)
        step = int(16_000 * AUDIO_CHUNK_S) * 2
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            result = await self.session.send_audio(chunk)
            self._record_send(pending, result.seq, result.status, result.reason)
            self.state.audio_sent_s += len(chunk) / 2 / 16_000
            await asyncio.sleep(AUDIO_CHUNK_S / AUDIO_PACING / self.state.speed)

    def _record_send(self, pending: _Pending, seq: int, status: str, reason: str | None) -> None:
        pending.seqs.add(seq)
        u = pending.utterance
        if status == "dropped":
            u.status = "dropped"
            u.dropped_reason = reason or "refused"
            pending.done.set()
            with contextlib.suppress(ValueError):
                self._pending.remove(pending)
        elif status == "queued" and u.status == "sent":
            u.status = "queued"

    async def _answered(self, pending: _Pending) -> bool:
        try:
            await asyncio.wait_for(pending.done.wait(), ANSWER_TIMEOUT)
        except TimeoutError:
            pending.utterance.status = "unanswered"
            self.state.note(f"no answer within {ANSWER_TIMEOUT:g} s", "red")
            return False
        if pending.utterance.status != "answered":
            return False
        await self._pause_for_handle()
        return True

    async def _pause_for_handle(self) -> None:
        """After an answer, pause until the server issued the handle that covers it.

        Google sends that handle 20-70 ms after ``turnComplete``. A person pauses longer
        than that, but at ``--speed 16`` the journey's pauses would not: the next question
        would always beat the handle, and every drop would resume from an older state
        (correct, but with every answer since then replayed). Bounded: a server that sends
        no new handle only delays the journey by ``HANDLE_PAUSE``.
        """
        deadline = self._clock() + HANDLE_PAUSE
        while not self.session.last_turn_held and self._clock() < deadline:
            if self._failed.is_set():
                return
            await asyncio.sleep(0.01)  # polled: the session has no event for it

    async def _recovery(self, disruption: Disruption) -> None:
        """Wait until ``disruption`` is recovered from (or give up after the timeout)."""
        deadline = self._clock() + CONNECT_TIMEOUT
        while disruption.recovered is None and not self._failed.is_set():
            if self._clock() > deadline:
                self.state.note(f"no recovery from {disruption.label}", "red")
                return
            await asyncio.sleep(0.02)

    # -- the journey ----------------------------------------------------------------------------

    async def wait_connected(self) -> bool:
        """Wait for the first ``Connected``; False on failure or timeout."""
        ready = asyncio.create_task(self._ready.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait(
                {ready, failed}, timeout=CONNECT_TIMEOUT, return_when="FIRST_COMPLETED"
            )
        finally:
            ready.cancel()
            failed.cancel()
        return self._ready.is_set()

    def restart_clock(self) -> None:
        """The journey's time zero is now (after the first connection)."""
        self._t0 = self._clock()
        self.now()

    async def play(self) -> None:
        """Play every step in order."""
        for index, step in enumerate(self.journey.steps):
            if self._failed.is_set():
                return
            await self._until(step.at)
            self.state.step_index = index
            await self._play(step)
        self.now()

    async def _play(self, step: Step) -> None:
        match step.kind:
            case "say" | "ask_first":
                assert step.say is not None
                await self._answered(await self.say(step.say))
            case "tunnel":
                await self._tunnel(step)
            case "station":
                await self._station(step)
            case "crash":
                await self._crash(step)
            case "drop":
                await self._drop(step)

    def _disrupt(self, step: Step, kind: str) -> Disruption:
        now = self.now()
        d = Disruption(kind, step.label, now)  # type: ignore[arg-type]
        self.state.disruptions.append(d)
        return d

    async def _tunnel(self, step: Step) -> None:
        d = self._disrupt(step, "tunnel")
        start = d.started
        self.stack.enter_tunnel()
        self.state.tunnel_open = True
        self.state.note(f"entering a tunnel ({step.duration:.1f} s)", "magenta")
        pending: _Pending | None = None
        if step.say is not None:
            # Speak so that the words are all on the wire before the tunnel ends: they are
            # lost inside it, and must be replayed after the resume.
            at = step.duration * 0.3
            if self.audio:
                # Spoken words must all be on the wire before the tunnel ends, and no older
                # than the outbox's audio time-to-live when replayed: speak near its end.
                words = len(step.say.split())
                speech = (words * 0.3 + 0.7) / AUDIO_PACING / self.state.speed
                at = max(at, step.duration - speech - 0.3)
            await self._until(start + at)
            pending = await self.say(step.say)
        await self._until(start + step.duration)
        self.stack.leave_tunnel()
        self.state.tunnel_open = False
        d.ended = self.now()
        self.state.note("out of the tunnel", "magenta")
        if pending is not None:
            await self._answered(pending)
        if d.recovered is None and d.reconnects == 0 and self.session.state == "connected":
            # Nothing was lost inside, so TCP simply carried on: no reconnect needed.
            d.recovered, d.how, d.gap = d.ended, "link held", 0.0
        await self._recovery(d)

    async def _station(self, step: Step) -> None:
        d = self._disrupt(step, "station")
        ordered = await self.stack.station(step.duration)
        d.ended = d.started
        if not ordered:
            d.recovered, d.how, d.gap = d.started, "not available on Google", 0.0
            self.state.note("station: Google sends goAway on its own schedule; skipped")
            return
        self.state.note(f"station: the server will hand over (goAway, {step.duration:.1f} s)")
        await self._recovery(d)

    async def _crash(self, step: Step) -> None:
        d = self._disrupt(step, "crash")
        what = await self.stack.crash()
        d.ended = self.now()
        self.state.note(f"server crash: {what}", "red")
        await self._recovery(d)

    async def _drop(self, step: Step) -> None:
        assert step.say is not None
        # Armed before asking: the event handler cuts once enough words have arrived.
        self._cut = step
        pending = await self.say(step.say)
        deadline = self._clock() + ANSWER_TIMEOUT
        while self._cut is not None and not pending.done.is_set():
            if self._clock() > deadline or self._failed.is_set():
                break
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.5)
        if self._cut is not None:
            # The answer ended (or never came) before the cut: cut anyway, and say so.
            self._cut_now()
        d = self.state.disruptions[-1]
        await self._answered(pending)
        await self._recovery(d)
