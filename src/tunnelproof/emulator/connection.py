"""One Live WebSocket connection: the I/O shell around the rule modules.

Like websockets' ``asyncio/connection.py``, this module only moves bytes and time: it reads
client frames, asks the rules what they mean and whether they are allowed
(:mod:`admission` for order, tokens and resumes; :mod:`inputs` for each input; :mod:`messages`
for setup; :mod:`sessions`, :mod:`brain`, :mod:`replies`, :mod:`lifetimes` and :mod:`audio`
for the rest), and performs the answer: send frames, pace generation, run the lifetime
timers, answer pings (or not), close or abort. It decides nothing about the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tunnelproof.emulator import brain, replies
from tunnelproof.emulator.admission import (
    ClosedBy,
    ConnState,
    ResumeDenied,
    ResumeGranted,
    check_frame_allowed,
    check_token_alive,
    decide_resume,
    take_rejection,
)
from tunnelproof.emulator.audio import VoiceDetector, transcribe
from tunnelproof.emulator.auth import Credential
from tunnelproof.emulator.errors import CloseRefusal
from tunnelproof.emulator.hub import Hub
from tunnelproof.emulator.inputs import (
    ActivityEnd,
    ActivityStart,
    AudioIn,
    StreamEnd,
    TextIn,
    VideoIn,
    barge_in_allowed,
    client_turns,
    realtime_action,
    tool_results,
)
from tunnelproof.emulator.lifetimes import go_away_time_left, next_limit
from tunnelproof.emulator.messages import (
    SetupInfo,
    check_setup_fields,
    decode_client_frame,
    validate_setup,
)
from tunnelproof.emulator.sessions import Entry, Session, setup_handle
from tunnelproof.emulator.tokens import TokenRejected, apply_token_setup
from tunnelproof.protocol.close_codes import truncate_reason
from tunnelproof.protocol.types import JsonDict


@dataclass(slots=True)
class PongOverride:
    """Per-connection pong fault (``None`` fields fall back to the policy)."""

    delay: float | None = None
    withhold: bool | None = None


class LiveConnection:
    """The server side of one ``BidiGenerateContent[Constrained]`` WebSocket."""

    def __init__(
        self,
        hub: Hub,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        version: str,
        method: str,
        credential: Credential | None,
        pending_close: CloseRefusal | None,
    ) -> None:
        self.hub = hub
        self.request = request
        self.ws = ws
        self.version = version
        self.method = method
        self.credential = credential
        self.pending_close = pending_close
        self.id = "conn-" + secrets.token_hex(6)
        self.opened_at = hub.clock()
        self.loop_opened_at = asyncio.get_running_loop().time()
        self.last_heard = self.loop_opened_at  # loop time of the last frame from the client
        self.session: Session | None = None
        self.info: SetupInfo | None = None
        self.resumed = False
        self.state = ConnState.AWAITING_SETUP
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: ClosedBy | None = None
        self.go_away_sent_at: float | None = None
        self.go_away_deadline: float | None = None  # loop time
        self.pongs = PongOverride()
        self.frames_in = 0
        self.frames_out = 0
        self._send_lock = asyncio.Lock()
        self._generation: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # reasoning/handle after a turn
        self._pending_update: JsonDict | None = None  # the turn's handle, not yet delivered
        self._timers: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: set[asyncio.Event] = set()  # probes waiting to hear from the client
        self._vad: VoiceDetector | None = None
        self._manual_audio: bytearray | None = None
        self._partial: list[str] = []
        self._closing = False
        self.finished = False

    # -- views -------------------------------------------------------------------------

    @property
    def token_name(self) -> str | None:
        """The ephemeral token this connection presented, if any."""
        return self.credential.token_name if self.credential is not None else None

    @property
    def is_open(self) -> bool:
        """True until the socket is closed or aborted."""
        return self.state.is_open

    @property
    def socket_closed(self) -> bool:
        """True once the WebSocket itself is closed."""
        return self.ws.closed

    def to_dict(self) -> JsonDict:
        """JSON view for the controls."""
        session = self.session
        return {
            "id": self.id,
            "state": self.state.value,
            "opened_at": self.opened_at,
            "version": self.version,
            "method": self.method,
            "auth": self.credential.kind if self.credential else None,
            "auth_form": self.credential.form.value if self.credential else None,
            "token": self.token_name,
            "session": session.id if session else None,
            "resumed": self.resumed,
            "handle": session.handles[-1] if session and session.handles else None,
            "model": self.info.model if self.info else None,
            "modality": self.info.modality if self.info else None,
            "generating": bool(session and session.generating and session.connection_id == self.id),
            "go_away_sent_at": self.go_away_sent_at,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "closed_by": self.closed_by.value if self.closed_by else None,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "peer": self.request.remote,
        }

    # -- main loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        hub = self.hub
        hub.connections[self.id] = self
        hub.events.emit(
            "connection_opened", connection=self.id, token=self.token_name, method=self.method
        )
        if self.pending_close is not None:
            self._spawn(self._refuse_later(self.pending_close))
        try:
            while True:
                msg = await self.ws.receive()
                self.last_heard = asyncio.get_running_loop().time()
                for listener in self._listeners:
                    listener.set()
                if msg.type is WSMsgType.PING:
                    self._answer_ping(msg.data)
                    continue
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.frames_in += 1
                    try:
                        await self._handle_frame(msg.data)
                    except CloseRefusal as refusal:
                        await self.close(refusal.code, refusal.reason, by=ClosedBy.RULE)
                        break
                    continue
                if msg.type is WSMsgType.PONG:
                    continue
                # CLOSE, CLOSING, CLOSED, ERROR: the socket is done.
                if msg.type is WSMsgType.CLOSE and self.close_code is None:
                    self.close_code = self.ws.close_code
                    self.close_reason = msg.extra or ""
                    self.closed_by = ClosedBy.CLIENT
                break
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        self._closing = True
        for task in (self._generation, self._settling, self._timers, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
        # Detach before anything awaits, so "no connection open" and "the session has
        # no socket" become true together (a resume right after must not get 1011).
        session = self.session
        if session is not None:
            self.hub.store.detach(session, self.id)
        if self.state is not ConnState.ABORTED:
            self.state = ConnState.CLOSED
        if self.close_code is None:
            self.close_code = self.ws.close_code
        self.finished = True
        self.hub.events.poke()
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.hub.events.emit(
            "connection_closed",
            connection=self.id,
            session=session.id if session else None,
            code=self.close_code,
            reason=self.close_reason,
            by=self.closed_by.value if self.closed_by else None,
        )

    # -- sending and closing -------------------------------------------------------------

    async def send(self, *messages: Mapping[str, Any]) -> bool:
        """Send server messages back to back (one frame each); ``False`` if the socket is gone.

        Several messages are sent under one lock so no other task's frame can land
        between them (``interrupted`` must be followed by its ``turnComplete``).
        """
        async with self._send_lock:
            for message in messages:
                if self._closing or self.ws.closed:
                    return False
                data = orjson.dumps(message)
                try:
                    if self.hub.policy.text_frames:
                        await self.ws.send_str(data.decode("utf-8"))
                    else:
                        await self.ws.send_bytes(data)
                except (ConnectionError, RuntimeError):
                    return False
                self.frames_out += 1
        return True

    async def close(self, code: int, reason: str, *, by: ClosedBy = ClosedBy.SERVER) -> None:
        """Close with a close frame carrying ``code`` and ``reason``."""
        if self._closing:
            return
        self._closing = True
        reason = truncate_reason(reason)
        self.close_code, self.close_reason, self.closed_by = code, reason, by
        self._stop_generation()
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode("utf-8"))

    def abort(self) -> None:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        if not self.is_open:
            return
        self._closing = True
        self.state = ConnState.ABORTED
        self.closed_by = ClosedBy.ABORT
        self._stop_generation()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _stop_generation(self) -> None:
        if self._generation is not None and not self._generation.done():
            self._generation.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refuse_later(self, refusal: CloseRefusal) -> None:
        # A bad credential is refused after the first message; a client that sends
        # nothing still gets the close once the policy's grace period ends.
        await asyncio.sleep(self.hub.policy.auth_close_timeout)
        await self.close(refusal.code, refusal.reason, by=ClosedBy.RULE)

    # -- pings ---------------------------------------------------------------------------

    def _answer_ping(self, payload: bytes) -> None:
        policy = self.hub.policy
        withhold = self.pongs.withhold if self.pongs.withhold is not None else policy.withhold_pongs
        delay = self.pongs.delay if self.pongs.delay is not None else policy.pong_delay
        self.hub.events.emit("ping", connection=self.id, withheld=withhold, delay=delay)
        if withhold:
            return
        self._spawn(self._pong_later(payload, delay))

    def set_pongs(self, *, delay: float | None, withhold: bool | None) -> None:
        """Per-connection pong fault (``None`` falls back to the policy)."""
        self.pongs.delay = delay
        self.pongs.withhold = withhold

    async def answers_probe(self, timeout: float) -> bool:
        """Ping the client; True if anything (its pong, any frame) arrives within ``timeout``.

        Asked before a resume takes this socket's session over: a silent but live client
        answers (WebSocket stacks pong by themselves), a half-open socket does not.
        """
        if not self.is_open or self.ws.closed:
            return False
        heard = asyncio.Event()
        self._listeners.add(heard)
        try:
            with contextlib.suppress(Exception):
                await self.ws.ping(b"tunnelproof-emulator-probe")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), timeout)
        finally:
            self._listeners.discard(heard)
        answered = heard.is_set() and self.is_open
        self.hub.events.emit("probe", connection=self.id, answered=answered)
        return answered

    async def _pong_later(self, payload: bytes, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.pong(payload)

    # -- frames --------------------------------------------------------------------------

    async def _handle_frame(self, data: bytes | str) -> None:
        if self.pending_close is not None:
            # Credential problems surface as a close after the first message, the way
            # users report them ("Gemini setup failed (1007): API key ...").
            raise self.pending_close
        kind, body = decode_client_frame(data)
        check_frame_allowed(kind, self.state)
        if kind == "setup":
            await self._setup(body)
            return
        hub = self.hub
        check_token_alive(hub.clock(), self._token_expiry(), hub.policy)
        rejection = take_rejection(hub.faults, kind)
        if rejection is not None:
            hub.events.emit(
                "client_message_rejected", connection=self.id, message=kind, code=rejection.code
            )
            raise rejection
        if kind == "clientContent":
            self._client_content(body)
        elif kind == "realtimeInput":
            await self._realtime_input(body)
        else:
            self._tool_response(body)

    # -- setup ---------------------------------------------------------------------------

    async def _setup(self, raw: Mapping[str, Any]) -> None:
        hub = self.hub
        policy = hub.policy
        client_setup = check_setup_fields(raw)
        token = self.credential.token if self.credential else None
        setup = apply_token_setup(token, client_setup)
        info = validate_setup(setup, self.version, policy)
        handle = setup_handle(setup)
        granted = await self._resume(handle, info) if handle is not None else None
        if token is not None:
            try:
                hub.ledger.admit(token, self.id, resume=granted is not None)
            except TokenRejected as exc:
                hub.events.emit("token_refused", connection=self.id, message=exc.message)
                raise CloseRefusal(
                    policy.token_rejection_close_code, policy.token_rejection_close_reason
                ) from None
        if granted is None:
            session = hub.store.start(setup, info.model, self.token_name)
        else:
            session = granted.session
            if granted.takeover is not None:
                self._take_over(session, granted)
            hub.store.resume(session, granted.record, setup, forget=granted.forget)
            if granted.forget:
                hub.events.emit("resume_forgot", connection=self.id, session=session.id)
            self.resumed = True
        hub.store.attach(session, self.id)
        self.session = session
        self.info = info
        self.state = ConnState.OPEN
        if info.manual_activity:
            self._manual_audio = None
        else:
            silence = (info.silence_ms / 1000.0) if info.silence_ms else policy.vad_silence_duration
            self._vad = VoiceDetector(policy.vad_energy_threshold, silence)
        await self.send({"setupComplete": {}})
        hub.events.emit(
            "setup_complete",
            connection=self.id,
            session=session.id,
            resumed=self.resumed,
            token=self.token_name,
        )
        await self._send_resumption_update()
        if policy.go_away_on_connect is not None:
            await self.send_go_away(policy.go_away_on_connect)
        self._timers = asyncio.ensure_future(self._run_timers())

    async def _resume(self, handle: str, info: SetupInfo) -> ResumeGranted:
        hub = self.hub
        policy = hub.policy
        try:
            granted = decide_resume(
                hub.store, handle, info.model, policy, hub.faults, self._idle_of
            )
            if granted.takeover is not None and policy.resume_probe_timeout > 0:
                # Silent long enough to be suspect; ask it before declaring it dead.
                old = hub.connections.get(granted.takeover)
                if old is not None and await old.answers_probe(policy.resume_probe_timeout):
                    raise ResumeDenied(
                        "still_open",
                        CloseRefusal(
                            policy.resume_while_open_close_code,
                            policy.resume_while_open_close_reason,
                        ),
                    )
            return granted
        except ResumeDenied as denied:
            hub.events.emit(
                "resume_refused", connection=self.id, problem=denied.problem, handle=handle
            )
            raise denied.refusal from None

    def _idle_of(self, connection_id: str) -> float:
        """Seconds since ``connection_id`` was last heard (``inf`` if it is gone)."""
        old = self.hub.connections.get(connection_id)
        if old is None or not old.is_open:
            return float("inf")
        return asyncio.get_running_loop().time() - old.last_heard

    def _take_over(self, session: Session, granted: ResumeGranted) -> None:
        """The old socket counts as dead: abort it and free the session for this one."""
        hub = self.hub
        old_id = granted.takeover or ""
        hub.events.emit("resume_takeover", connection=self.id, old=old_id, idle=granted.idle)
        old = hub.connections.get(old_id)
        if old is not None:
            old.abort()
        hub.store.detach(session, old_id)

    # -- timers --------------------------------------------------------------------------

    def _token_expiry(self) -> float:
        token = self.credential.token if self.credential else None
        return token.expire_time if token is not None else float("inf")

    async def _run_timers(self) -> None:
        """goAway, connection lifetime, session length limit and token expiry.

        The rules live in :mod:`lifetimes`; this loop only sleeps until the next limit
        and re-checks whenever the policy changes (so a live change applies at once).
        """
        loop = asyncio.get_running_loop()
        hub = self.hub
        session = self._session()
        while not self._closing:
            policy = hub.policy
            now_loop = loop.time()
            session_end = hub.store.session_deadline(session)
            token_end = self._token_expiry()
            limit = next_limit(
                policy,
                age=now_loop - self.loop_opened_at,
                go_away_sent=self.go_away_sent_at is not None,
                forced_close_in=(
                    self.go_away_deadline - now_loop if self.go_away_deadline is not None else None
                ),
                session_left=session_end - hub.clock() if session_end is not None else None,
                token_left=token_end - hub.clock() if token_end != float("inf") else None,
            )
            if limit.delay > 0:
                changed = hub.policy_changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=limit.delay)
                continue
            if limit.what == "go_away":
                left = go_away_time_left(policy, age=now_loop - self.loop_opened_at)
                await self.send_go_away(left)
            elif limit.what == "lifetime":
                hub.events.emit("lifetime_expired", connection=self.id)
                if policy.refuse_resume_after_lifetime:
                    # Fault (reported on 3.8): the session dies with the connection, so its
                    # handles are refused (1007) afterwards.
                    hub.store.end(session)
                await self.close(policy.lifetime_close_code, policy.lifetime_close_reason)
                return
            elif limit.what == "session_limit":
                hub.store.end(session)
                hub.events.emit("session_limit", connection=self.id, session=session.id)
                await self.close(policy.session_limit_close_code, policy.session_limit_close_reason)
                return
            else:
                hub.events.emit("token_expired", connection=self.id, token=self.token_name)
                await self.close(policy.token_expired_close_code, policy.token_expired_close_reason)
                return

    async def send_go_away(self, time_left: float) -> None:
        """Send ``goAway`` now; the connection then ends ``time_left`` seconds later."""
        loop = asyncio.get_running_loop()
        self.go_away_sent_at = self.hub.clock()
        self.go_away_deadline = loop.time() + time_left
        await self.send(replies.go_away(time_left))
        self.hub.events.emit("go_away", connection=self.id, time_left=time_left)
        self.hub.wake_timers()

    # -- client content ------------------------------------------------------------------

    def _client_content(self, body: Mapping[str, Any]) -> None:
        session = self._session()
        turns = client_turns(body)
        # "A message here will interrupt any current model generation."
        self._interrupt()
        self._end_reasoning()
        session.history.extend(turns.entries)
        self.hub.events.emit(
            "client_content",
            connection=self.id,
            turns=len(turns.entries),
            turn_complete=turns.turn_complete,
        )
        if turns.turn_complete:
            self._start_generation()
        else:
            self._spawn(self._flush_then_update())

    async def _flush_then_update(self) -> None:
        await self._flush_handle()
        await self._send_resumption_update()

    async def _realtime_input(self, body: Mapping[str, Any]) -> None:
        session = self._session()
        info = self._info()
        action = realtime_action(body, info)
        if isinstance(action, TextIn):
            self._interrupt()
            session.history.append(Entry("user", action.text, "realtimeText"))
            self.hub.events.emit("user_text", connection=self.id, text=action.text)
            self._start_generation()
        elif isinstance(action, AudioIn):
            await self._audio(action.pcm, action.rate)
        elif isinstance(action, VideoIn):
            self._video()
        elif isinstance(action, StreamEnd):
            assert self._vad is not None
            for event, utterance in self._vad.flush():
                await self._vad_event(event, utterance)
        elif isinstance(action, ActivityStart):
            self._barge_in()
            self._manual_audio = bytearray()
        else:
            assert isinstance(action, ActivityEnd)
            pcm_bytes = bytes(self._manual_audio or b"")
            self._manual_audio = None
            await self._utterance(pcm_bytes)

    def _video(self) -> None:
        session = self._session()
        if not session.video_seen:
            session.video_seen = True
            self.hub.events.emit("video_seen", connection=self.id, session=session.id)
            self.hub.wake_timers()

    async def _audio(self, pcm: bytes, rate: int) -> None:
        info = self._info()
        if info.manual_activity:
            if self._manual_audio is not None:
                self._manual_audio.extend(pcm)
            return
        assert self._vad is not None
        for event, utterance in list(self._vad.feed(pcm, rate)):
            await self._vad_event(event, utterance)

    async def _vad_event(self, event: str, utterance: bytes) -> None:
        if event == "start":
            self.hub.events.emit("speech_started", connection=self.id)
            self._barge_in()
        else:
            await self._utterance(utterance)

    def _barge_in(self) -> None:
        if barge_in_allowed(self._info().setup):
            self._interrupt()

    async def _utterance(self, pcm: bytes) -> None:
        session = self._session()
        text = transcribe(pcm)
        self.hub.events.emit("utterance", connection=self.id, text=text, bytes=len(pcm))
        if self._info().input_transcription:
            await self.send(replies.input_transcription(text))
        session.history.append(Entry("user", text, "audio"))
        self._start_generation()

    def _tool_response(self, body: Mapping[str, Any]) -> None:
        session = self._session()
        for result in tool_results(body, session.pending_calls):
            session.pending_calls.pop(result.call_id)
            session.history.append(result.entry())
            self.hub.events.emit(
                "tool_response", connection=self.id, id=result.call_id, name=result.name
            )
        if not session.pending_calls:
            self._start_generation()

    # -- generation ----------------------------------------------------------------------

    def _session(self) -> Session:
        assert self.session is not None
        return self.session

    def _info(self) -> SetupInfo:
        assert self.info is not None
        return self.info

    def _status(self, status: str) -> str | None:
        return status if self.hub.policy.interaction_status else None

    def _interrupt(self) -> None:
        """Barge-in: stop the answer in progress (``interrupted`` then ``turnComplete``)."""
        session = self._session()
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
            self.hub.events.emit("interrupted", connection=self.id, session=session.id)
            self._spawn(self.send(*replies.interrupted(self._status("IDLE"))))
        if session.pending_calls:
            ids = list(session.pending_calls)
            session.pending_calls.clear()
            self._spawn(self.send({"toolCallCancellation": {"ids": ids}}))

    def _end_reasoning(self) -> None:
        """New input ends background reasoning (no IDLE, no handle for it).

        A turn's handle that is only waiting out ``handle_delay`` is not dropped: it was
        taken at the turn's end and is flushed before anything newer is sent.
        """
        session = self.session
        if session is None or not session.background:
            return
        if self._settling is not None and not self._settling.done():
            self._settling.cancel()
        self._settling = None
        session.background = False

    def _start_generation(self) -> None:
        """Answer the conversation so far: one answer at a time, never two at once.

        A turn that ends while an answer is still being generated (an utterance ending
        after a text question started an answer) cuts that answer when barge-in is
        allowed, as speech does; under ``NO_INTERRUPTION`` it is answered after it.
        """
        self._end_reasoning()
        session = self._session()
        previous = self._generation
        if previous is not None and not previous.done():
            if barge_in_allowed(self._info().setup):
                self._interrupt()
                previous = None
        else:
            previous = None
        session.generating = True
        self._generation = asyncio.ensure_future(self._generate(after=previous))

    def _generation_over(self) -> None:
        """The running task's answer is complete (a newer one may be queued behind it)."""
        if self._generation is asyncio.current_task():
            self._generation = None

    async def _generate(self, after: asyncio.Future[None] | None = None) -> None:
        if after is not None:
            try:
                await asyncio.wait({after})  # NO_INTERRUPTION: the answer before goes first
            except asyncio.CancelledError:
                after.cancel()  # interrupted while waiting: the whole queue is cut
                raise
            self._session().generating = True
        session = self._session()
        info = self._info()
        hub = self.hub
        partial: list[str] = []
        self._partial = partial
        await self._flush_handle()  # the last turn's handle first: it is older
        await self._send_resumption_update()
        think = hub.policy.think_delay
        if think > 0:
            # The model thinks: no output, but the socket stays served (pings, input).
            hub.events.emit("thinking", connection=self.id, seconds=think)
            await asyncio.sleep(think)
        answer = brain.respond(session.history, brain.declared_functions(info.setup))
        hub.events.emit("generation_started", connection=self.id, session=session.id)
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
            await self.send(replies.tool_call(call_id, answer.call.name, args))
            hub.events.emit("tool_call", connection=self.id, id=call_id, name=answer.call.name)
            return
        text = answer.text or ""
        plan = replies.answer_plan(
            text, hub.policy, modality=info.modality, transcription=info.output_transcription
        )
        for step in plan.steps:
            await self._pace(step.pause_before)
            await self.send(*step.messages)
            partial.extend(step.words)
            hub.events.emit("generation_chunk", connection=self.id, words=list(step.words))
        await self._pace(plan.tail)
        session.history.append(Entry("model", text, "model"))
        session.generating = False
        self._partial = []
        # The answer is complete: a later input starts a new turn instead of cutting this one.
        self._generation_over()
        reasoning = hub.policy.background_reasoning
        session.background = reasoning > 0
        status = "IN_PROGRESS" if session.background else "IDLE"
        await self.send(*replies.turn_end(self._status(status)))
        hub.events.emit(
            "turn_complete", connection=self.id, session=session.id, text=text, status=status
        )
        if hub.policy.usage_metadata:
            prompt = sum(len(e.text.split()) for e in session.history)
            await self.send(replies.usage(prompt, len(text.split())))
        if reasoning <= 0:
            # The handle is taken at the turn's end (it holds this turn) and delivered later.
            self._pending_update = hub.store.resumption_update(session)
        self._settling = asyncio.ensure_future(self._settle(reasoning))

    async def _settle(self, reasoning: float) -> None:
        """After a turn: background reasoning (if any) ends IDLE, then the handle comes."""
        session = self._session()
        hub = self.hub
        if reasoning > 0:
            await asyncio.sleep(reasoning)
            session.background = False
            await self.send(replies.interaction_idle())
            hub.events.emit("interaction_idle", connection=self.id, session=session.id)
            self._pending_update = hub.store.resumption_update(session)
        delay = hub.policy.handle_delay
        if delay > 0:
            # Google's handle arrives some 20-70 ms after turnComplete (reference section 10).
            await asyncio.sleep(delay)
        await self._flush_handle()

    async def _flush_handle(self) -> None:
        """Deliver the turn's handle now if it is still waiting (before anything newer)."""
        update, self._pending_update = self._pending_update, None
        if update is not None:
            await self._deliver_update(update)

    async def _pace(self, seconds: float) -> None:
        # Read the speed now, so a test can slow an answer down or speed it up mid-way.
        speed = self.hub.policy.generation_speed
        if seconds > 0 and speed > 0:
            await asyncio.sleep(seconds / speed)

    async def _send_resumption_update(self) -> None:
        session = self.session
        if session is None or self._closing:
            return
        update = self.hub.store.resumption_update(session)
        if update is not None:
            await self._deliver_update(update)

    async def _deliver_update(self, update: JsonDict) -> None:
        session = self.session
        if session is None or self._closing:
            return
        await self.send({"sessionResumptionUpdate": update})
        self.hub.events.emit(
            "resumption_update",
            connection=self.id,
            session=session.id,
            resumable=update["resumable"],
            handle=update.get("newHandle"),
        )
