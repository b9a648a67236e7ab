"""The model's side of one emulator conversation: answers, paced, cut off, and handles.

An answer is asked of :mod:`brain`, laid out as frames and pauses by :mod:`replies`, and
sent here one step at a time, paced by the policy's ``generation_speed`` (so audio arrives
about as fast as it plays). Barge-in cuts it (``interrupted`` then ``turnComplete``; the
words already said stay in the history, marked as cut off). After a turn come background
reasoning (late-2026 models: ``IN_PROGRESS`` until ``IDLE``) and the turn's resumption
handle, which Google sends some 20-70 ms after ``turnComplete``.
"""

from __future__ import annotations

import asyncio
import secrets

from tunnelproof.emulator import brain, replies
from tunnelproof.emulator.conversation import Conversation
from tunnelproof.emulator.inputs import barge_in_allowed
from tunnelproof.emulator.sessions import Entry
from tunnelproof.protocol.types import JsonDict


class Answering:
    """Generates and sends the model's turns on one set-up connection."""

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self._generation: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # reasoning/handle after a turn
        self._pending_update: JsonDict | None = None  # the turn's handle, not yet delivered
        self._partial: list[str] = []

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        """Answer the conversation so far: one answer at a time, never two at once.

        A turn that ends while an answer is still being generated (an utterance ending
        after a text question started an answer) cuts that answer when barge-in is
        allowed, as speech does; under ``NO_INTERRUPTION`` it is answered after it.
        """
        self.end_reasoning()
        previous = self._generation
        if previous is None or previous.done():
            previous = None
        elif barge_in_allowed(self.conv.info.setup):
            self.interrupt()
            previous = None
        self.conv.session.generating = True
        self._generation = asyncio.ensure_future(self._generate(after=previous))

    def _generation_over(self) -> None:
        """The running task's answer is complete (a newer one may be queued behind it)."""
        if self._generation is asyncio.current_task():
            self._generation = None

    def stop(self) -> None:
        """Cancel the answer in progress, sending nothing (the connection is closing)."""
        if self._generation is not None and not self._generation.done():
            self._generation.cancel()

    def cancel(self) -> None:
        """The connection has ended: cancel the answer and what follows a turn."""
        for task in (self._generation, self._settling):
            if task is not None and not task.done():
                task.cancel()

    def interrupt(self) -> None:
        """Barge-in: stop the answer in progress (``interrupted`` then ``turnComplete``)."""
        session = self.conv.session
        if self._generation is not None and not self._generation.done():
            self._generation.cancel()
            self._generation = None
            session.generating = False
            if self._partial:
                # What was already said stays in the conversation, marked as cut off.
                session.history.append(
                    Entry("model", " ".join(self._partial), "model", {"interrupted": True})
                )
            self._partial = []
            self.conv.emit("interrupted", session=session.id)
            self.conv.spawn(self.conv.out.send(*replies.interrupted(self._status("IDLE"))))
        if session.pending_calls:
            ids = list(session.pending_calls)
            session.pending_calls.clear()
            self.conv.spawn(self.conv.out.send({"toolCallCancellation": {"ids": ids}}))

    def end_reasoning(self) -> None:
        """New input ends background reasoning (no IDLE, no handle for it).

        A turn's handle that is only waiting out ``handle_delay`` is not dropped: it was
        taken at the turn's end and is flushed before anything newer is sent.
        """
        session = self.conv.session
        if not session.background:
            return
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()
        self._settling = None
        session.background = False

    # -- handles -------------------------------------------------------------------------

    async def flush_then_update(self) -> None:
        """The last turn's handle if it is still waiting, then a fresh one."""
        await self._flush_handle()
        await self.send_resumption_update()

    async def send_resumption_update(self) -> None:
        """A ``sessionResumptionUpdate`` for the session as it is now (if the store has one)."""
        if self.conv.out.closing:
            return
        update = self.conv.hub.store.resumption_update(self.conv.session)
        if update is not None:
            await self._deliver_update(update)

    async def _flush_handle(self) -> None:
        """Deliver the turn's handle now if it is still waiting (before anything newer)."""
        update, self._pending_update = self._pending_update, None
        if update is not None:
            await self._deliver_update(update)

    async def _deliver_update(self, update: JsonDict) -> None:
        if self.conv.out.closing:
            return
        await self.conv.out.send({"sessionResumptionUpdate": update})
        self.conv.emit(
            "resumption_update",
            session=self.conv.session.id,
            resumable=update["resumable"],
            handle=update.get("newHandle"),
        )

    # -- one turn ------------------------------------------------------------------------

    def _status(self, status: str) -> str | None:
        return status if self.conv.hub.policy.interaction_status else None

    async def _generate(self, after: asyncio.Future[None] | None = None) -> None:
        if after is not None:
            try:
                await asyncio.wait({after})  # NO_INTERRUPTION: the answer before goes first
            except asyncio.CancelledError:
                after.cancel()  # interrupted while waiting: the whole queue is cut
                raise
            self.conv.session.generating = True
        session = self.conv.session
        info = self.conv.info
        hub = self.conv.hub
        send = self.conv.out.send
        partial: list[str] = []
        self._partial = partial
        await self._flush_handle()  # the last turn's handle first: it is older
        await self.send_resumption_update()
        # One session's slow turn (a control) wins over the policy's every-turn delay.
        think = hub.faults.thinking.pop(session.id, hub.policy.think_delay)
        if think > 0:
            # The model thinks: no output, but the socket stays served (pings, input).
            self.conv.emit("thinking", seconds=think)
            await asyncio.sleep(think)
        answer = brain.respond(session.history, brain.declared_functions(info.setup))
        self.conv.emit("generation_started", session=session.id)
        if answer.call is not None:
            await self._pace(hub.policy.tool_call_delay)
            call_id = "function-call-" + secrets.token_hex(6)
            args = dict(answer.call.args)
            session.pending_calls[call_id] = answer.call.name
            session.history.append(
                Entry(
                    "model", "", "toolCall", {"id": call_id, "name": answer.call.name, "args": args}
                )
            )
            session.generating = False
            self._generation_over()
            await send(replies.tool_call(call_id, answer.call.name, args))
            self.conv.emit("tool_call", id=call_id, name=answer.call.name)
            return
        text = answer.text or ""
        plan = replies.answer_plan(
            text, hub.policy, modality=info.modality, transcription=info.output_transcription
        )
        for step in plan.steps:
            await self._pace(step.pause_before)
            await send(*step.messages)
            partial.extend(step.words)
            self.conv.emit("generation_chunk", words=list(step.words))
        await self._pace(plan.tail)
        session.history.append(Entry("model", text, "model"))
        session.generating = False
        self._partial = []
        # The answer is complete: a later input starts a new turn instead of cutting this one.
        self._generation_over()
        reasoning = hub.policy.background_reasoning
        session.background = reasoning > 0
        status = "IN_PROGRESS" if session.background else "IDLE"
        await send(*replies.turn_end(self._status(status)))
        self.conv.emit("turn_complete", session=session.id, text=text, status=status)
        if hub.policy.usage_metadata:
            prompt = sum(len(e.text.split()) for e in session.history)
            await send(replies.usage(prompt, len(text.split())))
        if reasoning <= 0:
            # The handle is taken at the turn's end (it holds this turn) and delivered later.
            self._pending_update = hub.store.resumption_update(session)
        self._settling = asyncio.ensure_future(self._settle(reasoning))

    async def _settle(self, reasoning: float) -> None:
        """After a turn: background reasoning (if any) ends IDLE, then the handle comes."""
        session = self.conv.session
        hub = self.conv.hub
        if reasoning > 0:
            await asyncio.sleep(reasoning)
            session.background = False
            await self.conv.out.send(replies.interaction_idle())
            self.conv.emit("interaction_idle", session=session.id)
            self._pending_update = hub.store.resumption_update(session)
        delay = hub.policy.handle_delay
        if delay > 0:
            # Google's handle arrives some 20-70 ms after turnComplete (reference section 10).
            await asyncio.sleep(delay)
        await self._flush_handle()

    async def _pace(self, seconds: float) -> None:
        # Read the speed now, so a test can slow an answer down or speed it up mid-way.
        speed = self.conv.hub.policy.generation_speed
        if seconds > 0 and speed > 0:
            await asyncio.sleep(seconds / speed)
