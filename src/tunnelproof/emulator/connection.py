"""One Live WebSocket connection: the I/O shell around the rule modules.

Like websockets' ``asyncio/connection.py``, this module only moves bytes and time: it reads
client frames, asks the rules whether they are allowed (:mod:`admission` for order, tokens
and resumes; :mod:`messages` for setup), sets the session up or resumes it, runs the
lifetime timers (:mod:`lifetimes`), and closes or aborts. It decides nothing about the
protocol, and hands the rest to one part each:

* :mod:`outbound`: the send side (every frame out, and the closing latch);
* :mod:`pongs`: pong answers and faults, and liveness probes;
* :mod:`listening`: what each client message does to the conversation;
* :mod:`answering`: the model's answers, paced, cut off by barge-in, and their handles.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import WSMsgType, web

from tunnelproof.emulator import replies
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
from tunnelproof.emulator.answering import Answering
from tunnelproof.emulator.auth import Credential
from tunnelproof.emulator.conversation import Conversation
from tunnelproof.emulator.hub import Hub
from tunnelproof.emulator.lifetimes import go_away_time_left, next_limit
from tunnelproof.emulator.listening import Listening
from tunnelproof.emulator.messages import (
    SetupInfo,
    check_setup_fields,
    validate_setup,
)
from tunnelproof.emulator.outbound import Outbound
from tunnelproof.emulator.pongs import Pongs
from tunnelproof.emulator.sessions import Session, setup_handle
from tunnelproof.emulator.tokens import TokenRejected, apply_token_setup
from tunnelproof.protocol.client_frames import decode_client_frame
from tunnelproof.protocol.close_codes import truncate_reason
from tunnelproof.protocol.errors import CloseRefusal
from tunnelproof.protocol.types import JsonDict


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
        self.frames_in = 0
        self.finished = False
        self.out = Outbound(ws, hub)
        self.pongs = Pongs(self.id, ws, hub, spawn=self._spawn, is_open=lambda: self.is_open)
        # The conversation's two sides, from setup on.
        self.listening: Listening | None = None
        self.answering: Answering | None = None
        self._timers: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

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
            "frames_out": self.out.frames,
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
                self.pongs.heard()
                if msg.type is WSMsgType.PING:
                    self.pongs.answer_ping(msg.data)
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
        self.out.closing = True
        if self.answering is not None:
            self.answering.cancel()
        for task in (self._timers, *self._tasks):
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

    async def close(self, code: int, reason: str, *, by: ClosedBy = ClosedBy.SERVER) -> None:
        """Close with a close frame carrying ``code`` and ``reason``."""
        if self.out.closing:
            return
        self.out.closing = True
        reason = truncate_reason(reason)
        self.close_code, self.close_reason, self.closed_by = code, reason, by
        self._stop_generation()
        await self.out.close_frame(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        if not self.is_open:
            return
        self.out.closing = True
        self.state = ConnState.ABORTED
        self.closed_by = ClosedBy.ABORT
        self._stop_generation()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _stop_generation(self) -> None:
        if self.answering is not None:
            self.answering.stop()

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

    # -- pings -------------------------------------------------------------------------

    def set_pongs(self, *, delay: float | None, withhold: bool | None) -> None:
        """Per-connection pong fault (``None`` falls back to the policy)."""
        self.pongs.delay = delay
        self.pongs.withhold = withhold

    async def answers_probe(self, timeout: float) -> bool:
        """Ping the client; True if anything (its pong, any frame) arrives within ``timeout``.

        Asked before a resume takes this socket's session over: a silent but live client
        answers (WebSocket stacks pong by themselves), a half-open socket does not.
        """
        return await self.pongs.probe(timeout)

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
        listening = self.listening
        assert listening is not None  # check_frame_allowed: set up, open
        if kind == "clientContent":
            listening.client_content(body)
        elif kind == "realtimeInput":
            await listening.realtime_input(body)
        else:
            listening.tool_response(body)

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
        conv = Conversation(self.id, hub, session, info, self.out, spawn=self._spawn)
        answering = Answering(conv)
        self.answering = answering
        self.listening = Listening(conv, answering)
        await self.out.send({"setupComplete": {}})
        hub.events.emit(
            "setup_complete",
            connection=self.id,
            session=session.id,
            resumed=self.resumed,
            token=self.token_name,
        )
        await answering.send_resumption_update()
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
        session = self.session
        assert session is not None  # the timers start at setup
        while not self.out.closing:
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
        await self.out.send(replies.go_away(time_left))
        self.hub.events.emit("go_away", connection=self.id, time_left=time_left)
        self.hub.wake_timers()
