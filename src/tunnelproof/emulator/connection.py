"""One Live WebSocket connection: the asyncio driver around the rule modules.

It reads client frames, asks the rules (``messages``, ``tokens``, ``sessions``, ``brain``,
``audio``) what to do, and performs it: send frames, pace generation, run the lifetime
timers, answer pings (or not), close or abort. It decides nothing about the protocol
itself beyond sequencing.
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
from tunnelproof.emulator.audio import VoiceDetector, transcribe
from tunnelproof.emulator.auth import Credential
from tunnelproof.emulator.errors import CloseRefusal
from tunnelproof.emulator.hub import Hub
from tunnelproof.emulator.lifetimes import go_away_time_left, next_limit
from tunnelproof.emulator.messages import (
    SetupInfo,
    check_setup_fields,
    content_text,
    decode_blob,
    decode_client_frame,
    invalid,
    pcm_rate,
    realtime_field,
    validate_setup,
)
from tunnelproof.emulator.sessions import (
    Entry,
    HandleProblem,
    HandleRecord,
    HandleRefused,
    Session,
    setup_handle,
)
from tunnelproof.emulator.tokens import TokenRejected, apply_token_setup
from tunnelproof.protocol.casing import get_field
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
        self.state = "awaiting_setup"
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str | None = None
        self.go_away_sent_at: float | None = None
        self.go_away_deadline: float | None = None  # loop time
        self.pongs = PongOverride()
        self.frames_in = 0
        self.frames_out = 0
        self._send_lock = asyncio.Lock()
        self._generation: asyncio.Task[None] | None = None
        self._timers: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
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
        return self.state in ("awaiting_setup", "open")

    def to_dict(self) -> JsonDict:
        """JSON view for the controls."""
        session = self.session
        return {
            "id": self.id,
            "state": self.state,
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
            "closed_by": self.closed_by,
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
                if msg.type is WSMsgType.PING:
                    self._answer_ping(msg.data)
                    continue
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.frames_in += 1
                    try:
                        await self._handle_frame(msg.data)
                    except CloseRefusal as refusal:
                        await self.close(refusal.code, refusal.reason, by="rule")
                        break
                    continue
                if msg.type is WSMsgType.PONG:
                    continue
                # CLOSE, CLOSING, CLOSED, ERROR: the socket is done.
                if msg.type is WSMsgType.CLOSE and self.close_code is None:
                    self.close_code = self.ws.close_code
                    self.close_reason = msg.extra or ""
                    self.closed_by = "client"
                break
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        self._closing = True
        for task in (self._generation, self._timers, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
        # Detach before anything awaits, so "no connection open" and "the session has
        # no socket" become true together (a resume right after must not get 1011).
        session = self.session
        if session is not None:
            self.hub.store.detach(session, self.id)
        if self.state != "aborted":
            self.state = "closed"
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
            by=self.closed_by,
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

    async def close(self, code: int, reason: str, *, by: str = "server") -> None:
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
        self.state = "aborted"
        self.closed_by = "abort"
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
        await self.close(refusal.code, refusal.reason, by="rule")

    # -- pings ---------------------------------------------------------------------------

    def _answer_ping(self, payload: bytes) -> None:
        policy = self.hub.policy
        withhold = self.pongs.withhold if self.pongs.withhold is not None else policy.withhold_pongs
        delay = self.pongs.delay if self.pongs.delay is not None else policy.pong_delay
        self.hub.events.emit("ping", connection=self.id, withheld=withhold, delay=delay)
        if withhold:
            return
        self._spawn(self._pong_later(payload, delay))

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
        if self.session is None:
            if kind != "setup":
                raise invalid()
            await self._setup(body)
            return
        if kind == "setup":
            raise invalid()  # a second setup: 1007 "Request contains an invalid argument."
        if self.hub.clock() >= self._token_expiry():
            raise CloseRefusal(
                self.hub.policy.token_expired_close_code,
                self.hub.policy.token_expired_close_reason,
            )
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
        resumed = self._resume(handle, info) if handle is not None else None
        session = resumed[0] if resumed is not None else None
        if token is not None:
            try:
                hub.ledger.admit(token, self.id, resume=session is not None)
            except TokenRejected as exc:
                hub.events.emit("token_refused", connection=self.id, message=exc.message)
                raise CloseRefusal(
                    policy.token_rejection_close_code, policy.token_rejection_close_reason
                ) from None
        if session is None:
            session = hub.store.start(setup, info.model, self.token_name)
        else:
            assert resumed is not None
            hub.store.resume(session, resumed[1], setup)
            self.resumed = True
        hub.store.attach(session, self.id)
        self.session = session
        self.info = info
        self.state = "open"
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
        self._timers = asyncio.ensure_future(self._run_timers())

    def _resume(self, handle: str, info: SetupInfo) -> tuple[Session, HandleRecord]:
        hub = self.hub
        policy = hub.policy
        try:
            session, record = self._resolve(handle)
        except HandleRefused as exc:
            hub.events.emit(
                "resume_refused", connection=self.id, problem=exc.problem.value, handle=handle
            )
            if exc.problem is HandleProblem.STILL_OPEN:
                raise CloseRefusal(
                    policy.resume_while_open_close_code, policy.resume_while_open_close_reason
                ) from None
            raise CloseRefusal(
                policy.invalid_handle_close_code, policy.invalid_handle_close_reason
            ) from None
        if hub.refusals.remaining > 0:
            hub.refusals.remaining -= 1
            hub.events.emit("resume_refused", connection=self.id, problem="fault", handle=handle)
            raise CloseRefusal(
                hub.refusals.code or policy.refused_resume_close_code,
                hub.refusals.reason or policy.refused_resume_close_reason,
            )
        if session.model != info.model:
            # The docs allow config changes on resume "except the model".
            raise invalid()
        return session, record

    def _resolve(self, handle: str) -> tuple[Session, HandleRecord]:
        """Resolve a handle; optionally let it take over a session whose socket went quiet.

        Google refuses a resume while the session's old socket is open (1011). A socket
        left half-open by a dead link stays "open" until the server notices; with
        ``resume_takeover_idle`` set, a socket silent that long counts as dead.
        """
        hub = self.hub
        try:
            return hub.store.resolve(handle)
        except HandleRefused as exc:
            takeover = hub.policy.resume_takeover_idle
            if exc.problem is not HandleProblem.STILL_OPEN or takeover is None:
                raise
            session = hub.store.sessions[exc.session_id or ""]
            old = hub.connections.get(session.connection_id or "")
            idle = asyncio.get_running_loop().time() - old.last_heard if old else float("inf")
            if idle < takeover:
                raise
            hub.events.emit(
                "resume_takeover", connection=self.id, old=session.connection_id, idle=idle
            )
            if old is not None:
                old.abort()
            hub.store.detach(session, session.connection_id or "")
            return hub.store.resolve(handle)

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
        turns = get_field(body, "turns") or []
        if not isinstance(turns, list):
            raise invalid()
        entries: list[Entry] = []
        for turn in turns:
            if not isinstance(turn, Mapping):
                raise invalid()
            role = get_field(turn, "role") or "user"
            if role not in ("user", "model"):
                raise invalid()
            text = content_text(turn)
            entries.append(
                Entry(
                    "user" if role == "user" else "model",
                    text,
                    "clientContent" if role == "user" else "model",
                )
            )
        turn_complete = bool(get_field(body, "turnComplete", False))
        # "A message here will interrupt any current model generation."
        self._interrupt()
        session.history.extend(entries)
        self.hub.events.emit(
            "client_content", connection=self.id, turns=len(entries), turn_complete=turn_complete
        )
        if turn_complete:
            self._start_generation()
        else:
            self._spawn(self._send_resumption_update())

    async def _realtime_input(self, body: Mapping[str, Any]) -> None:
        session = self._session()
        info = self._info()
        name, value = realtime_field(body)
        if name == "text":
            if not isinstance(value, str):
                raise invalid()
            self._interrupt()
            session.history.append(Entry("user", value, "realtimeText"))
            self.hub.events.emit("user_text", connection=self.id, text=value)
            self._start_generation()
        elif name == "audio":
            mime, pcm = decode_blob(value)
            await self._audio(pcm, pcm_rate(mime))
        elif name == "mediaChunks":
            # Deprecated; newer models close with 1007 for it (sip-to-ai#5).
            if info.model.startswith("gemini-3") or not isinstance(value, list) or not value:
                raise invalid()
            mime, pcm = decode_blob(value[0])
            if mime.startswith("audio/"):
                await self._audio(pcm, pcm_rate(mime))
            else:
                self._video()
        elif name == "video":
            decode_blob(value)
            self._video()
        elif name == "audioStreamEnd":
            if info.manual_activity:
                raise invalid()
            assert self._vad is not None
            for event, utterance in self._vad.flush():
                await self._vad_event(event, utterance)
        elif name == "activityStart":
            if not info.manual_activity:
                raise invalid()  # only valid with automatic detection disabled
            self._barge_in()
            self._manual_audio = bytearray()
        else:  # activityEnd
            if not info.manual_activity:
                raise invalid()
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
        setup = self._info().setup
        realtime = setup.get("realtimeInputConfig") or {}
        if isinstance(realtime, Mapping) and realtime.get("activityHandling") == "NO_INTERRUPTION":
            return
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
        responses = get_field(body, "functionResponses") or []
        if not isinstance(responses, list) or not responses:
            raise invalid()
        for item in responses:
            if not isinstance(item, Mapping):
                raise invalid()
            call_id = get_field(item, "id")
            if not isinstance(call_id, str) or call_id not in session.pending_calls:
                # The session never issued this call (e.g. resumed from a handle taken
                # before it): Google has no call to attach it to.
                raise invalid()
            name = session.pending_calls.pop(call_id)
            response = get_field(item, "response") or {}
            session.history.append(
                Entry(
                    "user", "", "toolResponse", {"id": call_id, "name": name, "response": response}
                )
            )
            self.hub.events.emit("tool_response", connection=self.id, id=call_id, name=name)
        if not session.pending_calls:
            self._start_generation()

    # -- generation ----------------------------------------------------------------------

    def _session(self) -> Session:
        assert self.session is not None
        return self.session

    def _info(self) -> SetupInfo:
        assert self.info is not None
        return self.info

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
            self._spawn(self.send(*replies.interrupted()))
        if session.pending_calls:
            ids = list(session.pending_calls)
            session.pending_calls.clear()
            self._spawn(self.send({"toolCallCancellation": {"ids": ids}}))

    def _start_generation(self) -> None:
        session = self._session()
        session.generating = True
        self._generation = asyncio.ensure_future(self._generate())

    async def _generate(self) -> None:
        session = self._session()
        info = self._info()
        hub = self.hub
        partial: list[str] = []
        self._partial = partial
        await self._send_resumption_update()
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
            self._generation = None
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
        self._generation = None
        await self.send(*replies.turn_end())
        hub.events.emit("turn_complete", connection=self.id, session=session.id, text=text)
        if hub.policy.usage_metadata:
            prompt = sum(len(e.text.split()) for e in session.history)
            await self.send(replies.usage(prompt, len(text.split())))
        await self._send_resumption_update()

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
        if update is None:
            return
        await self.send({"sessionResumptionUpdate": update})
        self.hub.events.emit(
            "resumption_update",
            connection=self.id,
            session=session.id,
            resumable=update["resumable"],
            handle=update.get("newHandle"),
        )
