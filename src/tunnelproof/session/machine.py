"""``SessionMachine``: the reconnecting Live client as a pure state machine.

No asyncio, no sockets, no clock, no global random: the machine takes an event (see
:mod:`~tunnelproof.session.events`) with the current monotonic time ``now`` (and the wall
clock ``wall``, for token and handle expiry) and returns the actions to perform (see
:mod:`~tunnelproof.session.actions`). Random jitter comes from an injected
``random.Random``. Every phase change of the client is made in this module; the helpers
around it own data and answer derived questions, and the base class
:class:`~tunnelproof.session.bookkeeping.SessionBookkeeping` holds them and does the work
that follows a decision without changing the phase (as h11 splits ``_state.py`` from
``_connection.py``):

============================  ==================================================================
helper                        owns
============================  ==================================================================
:class:`CredentialSlot`       the unspent credential, how many attempts used it, the token request
:class:`RetryBudget`          failures per outage and per session; retry-or-give-up
:class:`TurnTracker`          the model turn, the reply owed, sends awaiting their answer
:class:`ToolCalls`            open, since-the-handle and cancelled tool calls
:class:`ResumptionState`      the newest handle, whether it is current, the re-seed (:class:`Seed`)
:class:`Timers`               which :class:`Timer` runs, with serials to ignore stale fires
:class:`Outbox`/`Transcript`  what the app sent and the server may lack; the conversation record
============================  ==================================================================

Phases and the events that move them (events for an old socket attempt, stale timers and
answers to abandoned token requests are ignored in every phase)::

    phase         event                                   next phase (main actions)
    ------------  --------------------------------------  -------------------------------------
    IDLE          Started                                 FETCHING (FetchToken) | OPENING (reuse)
    IDLE          CloseRequested                          CLOSED
    FETCHING      TokenFetched                            OPENING (OpenSocket)
    FETCHING      TokenFailed auth / config               FAILED
    FETCHING      TokenFailed other, timer TOKEN          WAITING (SetTimer RETRY) | FAILED (cap)
    OPENING       SocketOpened                            SETUP (SendFrame setup, SetTimer SETUP)
    OPENING       SocketOpenFailed, closed, timer CONNECT WAITING | FAILED | FETCHING (fresh try)
    SETUP         setupComplete                           CONNECTED (re-seed, flush the outbox)
    SETUP         SocketClosed, timer SETUP               WAITING | FAILED | fresh session at once
    CONNECTED     goAway                                  CONNECTED (SetTimer GOAWAY, prefetch)
    CONNECTED     turn boundary after goAway, timer GOAWAY  HANDING_OVER (CloseSocket 1000)
    CONNECTED     timer GOAWAY, a turn's handle due        CONNECTED (SetTimer HANDLE_GRACE)
    CONNECTED     resumable handle or timer HANDLE_GRACE   HANDING_OVER (CloseSocket 1000)
    CONNECTED     SocketClosed, LinkChecked dead, timer LINK  WAITING | FAILED | at once (a drop)
    CONNECTED     timer REPLY                             CONNECTED (CheckLink, SetTimer LINK)
    CONNECTED     sessionResumptionUpdate                 CONNECTED (SaveHandle, Delivered)
    HANDING_OVER  SocketClosed, timer CLOSE               FETCHING | OPENING at once (no backoff)
    WAITING       timer RETRY, ResumeRequested            FETCHING | OPENING
    FAILED        ResumeRequested                         FETCHING | OPENING (a new retry budget)
    SETUP, CONNECTED  ReseedRequested                     HANDING_OVER, then a fresh session
    any but IDLE  CloseRequested                          CLOSING (CloseSocket) | CLOSED
    CLOSING       SocketClosed, timer CLOSE               CLOSED

"At once" goes through WAITING with no delay (``Reconnecting(0.0, planned=True)``). Also:
one socket per session, always (a new one opens only once the previous is known gone; a
goAway handover closes the old socket first: Google refuses a resume while it is open). A
credential whose handshake completed is never reused; one whose handshake never completed
is, while its new-session window lasts. Only ``resumable: true`` handles are kept, the
newest used on every reconnect. Delivery is decided in one place,
:meth:`SessionMachine._confirm_delivery`; retry-or-give-up in :class:`RetryBudget`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelproof.protocol.close_codes import (
    CloseClass,
    CloseVerdict,
    classify_close,
    classify_handshake_status,
)
from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.server_messages import (
    GoAway,
    InlineData,
    ServerMessage,
    SetupComplete,
    read_server_frame,
)
from tunnelproof.session import app_events as ev
from tunnelproof.session import failures
from tunnelproof.session.actions import Action, CloseSocket, DeleteHandle, OpenSocket
from tunnelproof.session.credentials import Credential
from tunnelproof.session.events import (
    CloseRequested,
    Event,
    FrameReceived,
    LinkChecked,
    OpenFailure,
    ReseedRequested,
    ResumeRequested,
    SocketClosed,
    SocketOpened,
    SocketOpenFailed,
    Started,
    TimerFired,
    TokenFailed,
    TokenFailure,
    TokenFetched,
)
from tunnelproof.session.failures import FailureRouting
from tunnelproof.session.outbox import SendResult
from tunnelproof.session.outgoing import ClientMessage, Outgoing
from tunnelproof.session.phases import Phase as Phase
from tunnelproof.session.phases import SessionState as SessionState
from tunnelproof.session.phases import public_state
from tunnelproof.session.retry_budget import GiveUp, Retry
from tunnelproof.session.timers import Timer


class SessionMachine(FailureRouting):
    """The sans-I/O core of :class:`~tunnelproof.session.live_session.LiveSession`.

    Use :meth:`handle` for events and :meth:`send` for app messages. Both return the
    actions to perform, in order.
    """

    # -- public surface ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The public state."""
        return public_state(self.phase, ever_connected=self._ever_connected)

    def handle(self, event: Event, *, now: float, wall: float) -> list[Action]:
        """Process ``event`` at monotonic ``now`` / wall-clock ``wall``; return the actions."""
        self._now, self._wall = now, wall
        self._out = []
        match event:
            case FrameReceived():  # first: 50+ a second while audio streams
                self._on_frame(event)
            case Started():
                self._on_started(event)
            case TokenFetched():
                self._on_token_fetched(event)
            case TokenFailed():
                self._on_token_failed(event)
            case SocketOpened():
                self._on_socket_opened(event)
            case SocketOpenFailed():
                self._on_open_failed(event)
            case SocketClosed():
                self._on_socket_closed(event)
            case LinkChecked():
                self._on_link_checked(event)
            case TimerFired():
                self._on_timer(event)
            case CloseRequested():
                self._on_close_requested()
            case ResumeRequested():
                self._on_resume_requested()
            case ReseedRequested():
                self._on_reseed_requested()
        self._end_of_call()
        out, self._out = self._out, []
        return out

    def send(
        self, message: ClientMessage | Mapping[str, Any], *, now: float, wall: float
    ) -> tuple[SendResult, list[Action]]:
        """The app sends ``message``. Returns its result and the actions.

        ``message`` is a typed :class:`~tunnelproof.session.outgoing.ClientMessage` (what
        every ``LiveSession.send_*`` builds) or a client message dict, read with
        :meth:`ClientMessage.from_dict`. Raises ``ValueError`` for a dict that is not a
        single client message or is a ``setup`` (programming errors, not network
        conditions).
        """
        self._now, self._wall = now, wall
        self._out = []
        self._seq += 1
        typed = message if isinstance(message, ClientMessage) else ClientMessage.from_dict(message)
        result = self._accept(Outgoing.of(self._seq, typed, now))
        self._end_of_call()
        out, self._out = self._out, []
        return result, out

    # -- helpers: actions ----------------------------------------------------------------

    # -- start, credentials ----------------------------------------------------------------

    def _on_started(self, event: Started) -> None:
        if self.phase is not Phase.IDLE:
            return
        stored = event.stored
        if stored is not None:
            self.transcript.load(stored.transcript)
            valid = stored.valid_at(self._wall, self.watchdogs.handle_validity)
            self.resumption.restored(stored, valid=valid)
            if not valid:
                self._out.append(DeleteHandle())
        self._lost_at = self._now
        self._start_attempt()

    def _start_attempt(self) -> None:
        """Get a credential (reuse an unspent one, wait for a prefetch, or fetch)."""
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return
        self._cancel_timer(Timer.RETRY)
        if self.resumption.expired(self._wall, self.watchdogs.handle_validity):
            self._drop_handle("the resumption handle expired (2 h after the disconnect)")
        if self.resumption.fresh_session_due:
            self._prepare_fresh_session()
        self.retry.attempt_started()
        cred = self.credentials.usable(self._wall)
        if cred is not None:
            # Either a prefetched token (goAway) or one whose handshake never completed.
            if self.credentials.tried:
                self.metrics.tokens_reused += 1
            self._open(cred)
            return
        self.credentials.discard()
        self.phase = Phase.FETCHING
        if self.credentials.request is None:
            self._fetch_token(prefetch=False)
        timeout = self.watchdogs.token_timeout
        if self.retry.offline:
            # Short while probing a gone network, but never shorter than a slow backend
            # needs: every fetch cancelled just before its answer would never end.
            slot = self.credentials
            timeout = self.watchdogs.offline_token_timeout(
                slot.last_fetch_seconds, slot.timeouts_in_row
            )
        self._set_timer(Timer.TOKEN, timeout)

    def _on_token_fetched(self, event: TokenFetched) -> None:
        if not self.credentials.answered(event.request):
            return  # superseded or timed out
        self._cancel_timer(Timer.TOKEN)
        self.metrics.tokens_fetched += 1
        self.credentials.arrived(self._now)
        self.credentials.fetched(event.credential)
        if self.phase is Phase.FETCHING:
            self._open(event.credential)
        elif self._go_away:
            self._maybe_handover()  # the handover waited for this token

    def _on_token_failed(self, event: TokenFailed) -> None:
        if not self.credentials.answered(event.request):
            return
        self._cancel_timer(Timer.TOKEN)
        if self.phase is not Phase.FETCHING:
            if self._go_away and self.phase is Phase.CONNECTED:
                self._prefetch_again(event.retry_after)  # the handover waits for a token
            return
        message = event.message or event.kind.value
        verdict = failures.token_failure_verdict(event.kind, message)
        if verdict is not None:
            self._fail(verdict)
        elif event.kind is TokenFailure.OFFLINE:
            self._offline_failure(f"token source unreachable: {message}")
        else:
            self._server_failure(f"token source: {message}", retry_after=event.retry_after)

    # -- socket lifecycle -----------------------------------------------------------------

    def _open(self, cred: Credential) -> None:
        try:
            endpoint = cred.endpoint()
        except ValueError as exc:
            self.credentials.discard()
            self._fail(failures.unusable_credential_verdict(str(exc)))
            return
        self._attempt += 1
        self._socket_live = True
        self.credentials.used()
        self.phase = Phase.OPENING
        self.metrics.connect_attempts += 1
        timeout = (
            self.watchdogs.probe_connect_timeout
            if self.retry.last_failure_offline
            else self.watchdogs.connect_timeout
        )
        self._out.append(OpenSocket(self._attempt, endpoint, timeout))
        self._set_timer(Timer.CONNECT, timeout)

    def _on_socket_opened(self, event: SocketOpened) -> None:
        if event.attempt != self._attempt or self.phase is not Phase.OPENING:
            return
        self._cancel_timer(Timer.CONNECT)
        self.credentials.spent()
        self.retry.socket_opened()
        self.phase = Phase.SETUP
        handle = self.resumption.handle if self.config.session_resumption else None
        self.resumption.setup_sent(handle)
        if self.resumption.resuming:
            self.metrics.resumes_attempted += 1
        self._send_frame(self.config.to_setup(handle))
        self._set_timer(Timer.SETUP, self.watchdogs.setup_timeout)

    def _on_open_failed(self, event: SocketOpenFailed) -> None:
        if event.attempt != self._attempt or self.phase is not Phase.OPENING:
            return
        self._cancel_timer(Timer.CONNECT)
        self._socket_live = False
        if event.kind is OpenFailure.OFFLINE:
            # The handshake never completed: the credential stays usable (contract 1).
            self._offline_failure(event.message or "network unreachable")
            return
        reused = self.credentials.reused
        self.credentials.refused()
        if event.kind is OpenFailure.ERROR or event.status is None:
            self._server_failure(event.message or "handshake failed")
            return
        verdict = classify_handshake_status(event.status, event.message)
        if (
            verdict.kind is CloseClass.FATAL_AUTH
            and reused
            and not self.credentials.auth_retry_used
        ):
            # A reused token may have been spent after all; one fresh try tells.
            self.credentials.auth_retry_used = True
            self._start_attempt()
        elif verdict.kind is CloseClass.RETRY:
            self._server_failure(f"handshake HTTP {event.status}", retry_after=event.retry_after)
        else:
            self._fail(verdict)

    def _on_socket_closed(self, event: SocketClosed) -> None:
        if event.attempt != self._attempt or not self._socket_live:
            return
        self._socket_live = False
        phase = self.phase
        if phase is Phase.OPENING:
            self._cancel_timer(Timer.CONNECT)
            self._offline_failure(event.reason or "connection closed during the handshake")
            return
        if phase in (Phase.HANDING_OVER, Phase.CLOSING):
            self._after_our_close(event.code, event.reason)
            return
        if phase not in (Phase.SETUP, Phase.CONNECTED):
            return
        resuming, go_away = self.resumption.resuming, self._go_away
        verdict = classify_close(event.code, event.reason, resuming=resuming, after_go_away=go_away)
        planned = self._go_away and not verdict.fatal and verdict.kind is not CloseClass.BAD_RESUME
        during_setup = phase is Phase.SETUP
        if verdict.kind is CloseClass.FATAL_AUTH and not during_setup:
            # The server accepted this credential and later ended the session over it:
            # the token expired mid-connection. A fresh token decides; a refusal during
            # the next setup is fatal, so this cannot loop.
            verdict = CloseVerdict(
                CloseClass.RETRY, verdict.code, verdict.reason, "The credential expired."
            )
        served = self._served()
        culprit = self._last_written if self._session_ready else None
        self._connection_gone(event.code, event.reason, planned=planned)
        described = f"closed {event.code} {event.reason}".strip()
        if planned:
            self._handover_done("the server ended the connection after goAway", served)
        elif verdict.kind is CloseClass.BAD_RESUME and not during_setup and culprit is not None:
            # The handle was accepted: a 1007 now rejects the newest message read. Report
            # it, never replay it, resume again (each rejection counts: no loop).
            self._reject_message(culprit, described)
            self._server_failure(f"the server rejected a message ({described})")
        elif verdict.kind is CloseClass.BAD_RESUME:
            self._bad_resume(verdict.advice)
        elif verdict.fatal:
            if verdict.kind is CloseClass.BAD_REQUEST:
                # Do not replay what may be the message the server rejected.
                self._report_dropped(
                    self.outbox.remove_where(lambda i: i.was_sent),
                    "the server rejected the session's messages",
                )
            self._fail(verdict)
        elif during_setup and self.resumption.resuming:
            # A refused resume is most often the server still holding the session's old
            # half-open socket (Google refuses until it notices): keep the handle and
            # wait it out, for stale_socket_wait; a drop in setup is probed (no verdict).
            waited = self.resumption.refused(self._now)
            if waited >= self.watchdogs.stale_socket_wait:
                self._bad_resume(f"the server refused the resumed setup for {waited:.0f} s")
            elif event.code in (None, 1006):
                self._offline_failure(f"the link dropped during the resumed setup ({described})")
            else:
                self.metrics.server_failures += 1
                decision = self.retry.after_refusal(self.resumption.refusals, self.rng)
                self._retry_or_give_up(decision, f"resume refused ({described})")
        elif (
            not during_setup
            and event.code in (None, 1006)
            # the driver failed the connection itself over a broken or oversized frame:
            # the server's fault, not the network's
            and not event.reason.startswith("closed by the client")
        ):
            self._after_drop(f"the link dropped ({described})", served)
        else:
            self._server_failure(described)

    def _after_our_close(self, code: int | None, reason: str) -> None:
        for_good = self.phase is Phase.CLOSING
        self._cancel_timer(Timer.CLOSE)
        self._connection_gone(code, reason, planned=True)
        if for_good:
            self._finish_close()
            return
        self.metrics.planned_handovers += 1
        self._handover_done("planned handover after goAway")

    def _bad_resume(self, reason: str) -> None:
        if self.resumption.bad_resume(reason):
            self._out.append(DeleteHandle())
        self.metrics.fresh_session_fallbacks += 1
        self._reconnect_now(reason)

    # -- frames ------------------------------------------------------------------------------

    def _on_frame(self, event: FrameReceived) -> None:
        if event.attempt != self._attempt or self.phase not in (Phase.SETUP, Phase.CONNECTED):
            return
        try:
            frame = read_server_frame(event.data)
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            self._garbage_since_message = True  # not a reply, and not proof of a healthy server
            self._emit(ev.ProtocolViolation(str(exc), exc.size))
            return
        self._garbage_since_message = False
        if Timer.LINK in self.timers:  # a message is evidence of life
            self._cancel_timer(Timer.LINK)
        if type(frame) is InlineData:  # an audio-only frame: 50 a second, nothing built
            self._on_audio(frame)
        for message in () if isinstance(frame, InlineData) else frame.messages:
            if self.phase not in (Phase.SETUP, Phase.CONNECTED) or event.attempt != self._attempt:
                return
            self._on_message(message)
        self._watch_reply()
        self._maybe_handover()

    def _on_message(self, message: ServerMessage) -> None:
        match message:
            case SetupComplete():
                if self.phase is Phase.SETUP:
                    self._on_setup_complete(message)
            case GoAway():
                self._on_go_away(message)
            case _:
                self._on_conversation(message)

    def _on_setup_complete(self, setup: SetupComplete) -> None:
        self._cancel_timer(Timer.SETUP)
        self.phase = Phase.CONNECTED
        self._connection_ready(setup.raw)

    # -- goAway ------------------------------------------------------------------------------

    def _maybe_handover(self) -> None:
        # Over the handover budget the session stays until the server closes (the GOAWAY
        # timer is a backstop); within it, it leaves at a turn boundary with the next
        # token in hand, so a token service's blip costs no gap while the deadline allows.
        if not (self._go_away and self._at_turn_boundary()):
            return
        if Timer.HANDLE_GRACE in self.timers:  # past the deadline: leave now, token or not
            self._handover()
        elif self.retry.handovers_left:
            if self.credentials.usable(self._wall) is not None:
                self._handover()
            elif self.credentials.request is None and Timer.PREFETCH not in self.timers:
                self._prefetch()

    def _handover(self) -> None:
        self.retry.handed_over(self._served())
        self._cancel_timer(Timer.GOAWAY, Timer.HANDLE_GRACE, Timer.REPLY, Timer.STABLE)
        self.phase = Phase.HANDING_OVER
        self._out.append(CloseSocket(self._attempt, 1000, "goAway handover"))
        self._set_timer(Timer.CLOSE, self.watchdogs.close_timeout)

    def _reconnect_now(self, reason: str) -> None:
        """Reconnect with no backoff (planned handover, expected close, fresh fallback)."""
        self.phase = Phase.WAITING
        self._emit(ev.Reconnecting(0.0, self.retry.next_attempt, reason, "server", True))
        self._start_attempt()

    # -- failures ----------------------------------------------------------------------------

    def _retry_or_give_up(self, decision: Retry | GiveUp, reason: str) -> None:
        if isinstance(decision, GiveUp):
            self._fail(decision.verdict())
            return
        self.phase = Phase.WAITING
        kind: ev.FailureKind = "offline" if decision.offline else "server"
        attempt = self.retry.next_attempt
        self._emit(ev.Reconnecting(decision.delay, attempt, reason, kind, decision.planned))
        if decision.delay > 0:
            self._set_timer(Timer.RETRY, decision.delay)
        else:
            self._start_attempt()  # at once: no timer round trip

    def _fail(self, verdict: CloseVerdict) -> None:
        self._abort("fatal: " + verdict.kind.value)
        self._cancel_all_timers()
        self._cancel_token_request()
        if self._session_ready:
            self._connection_gone(verdict.code, verdict.reason, planned=False)
        self.phase = Phase.FAILED
        self._report_at_end()
        self._emit(ev.Failed(verdict))

    # -- timers ------------------------------------------------------------------------------

    def _on_timer(self, event: TimerFired) -> None:
        timer = self.timers.fired(event.name, event.serial)
        phase = self.phase
        if timer is None:
            return  # cancelled or replaced
        if timer is Timer.RETRY and phase is Phase.WAITING:
            self._start_attempt()
        elif (
            timer is Timer.TOKEN
            and phase is Phase.FETCHING
            and self.credentials.request is not None
        ):
            self._cancel_token_request()
            self.credentials.timeouts_in_row += 1  # the next offline fetch may take longer
            self._offline_failure("the token source did not answer in time")
        elif timer is Timer.CONNECT and phase is Phase.OPENING:
            self._abort("connect timeout")
            self._offline_failure("connect timeout")
        elif timer is Timer.SETUP and phase is Phase.SETUP:
            self.metrics.dead_links_detected += 1
            self._abort("no setupComplete")
            self._connection_gone(None, "no setupComplete", planned=False)
            self._server_failure(f"no setupComplete within {self.watchdogs.setup_timeout:g} s")
        elif timer is Timer.REPLY and phase is Phase.CONNECTED:
            if self._garbage_since_message:
                # Only unreadable frames while a reply is owed: a broken server, not a
                # thinking model. Backed off like a server error.
                self.metrics.dead_links_detected += 1
                self._abort("no reply")
                reason = "only unreadable frames while a reply was due"
                self._connection_gone(None, reason, planned=False)
                self._server_failure(reason)
            else:
                self._check_link()  # silence is not evidence: ask for some
        elif timer is Timer.LINK and phase is Phase.CONNECTED:
            self._dead_link(
                f"no sign of life within {self.watchdogs.link_check_timeout:g} s of a link "
                f"check (a reply was {self.watchdogs.reply_timeout:g} s overdue)"
            )
        elif timer is Timer.PREFETCH and phase is Phase.CONNECTED and self._go_away:
            self._prefetch()
        elif timer is Timer.STABLE:
            self.retry.stable()
        elif timer is Timer.GOAWAY and phase is Phase.CONNECTED:
            if self._turn_handle_due():  # it comes some 20-70 ms after turnComplete
                self._set_timer(Timer.HANDLE_GRACE, self.watchdogs.handover_handle_grace)
            else:
                self._handover()
        elif timer is Timer.HANDLE_GRACE and phase is Phase.CONNECTED:
            self._handover()
        elif timer is Timer.CLOSE and phase in (Phase.HANDING_OVER, Phase.CLOSING):
            self._abort("close timeout")
            self._after_our_close(None, "close timed out")

    # -- app requests --------------------------------------------------------------------------

    def _on_close_requested(self) -> None:
        if self.phase is Phase.IDLE:
            self.phase = Phase.CLOSED
            self._emit(ev.Closed())
            return
        if self.phase in (Phase.CLOSED, Phase.CLOSING):
            return
        self._settle_at_close()
        self._report_dropped(self.outbox.clear(), "the session was closed")
        self._cancel_token_request()
        self._cancel_all_timers()
        if self._socket_live and self.phase in (Phase.SETUP, Phase.CONNECTED, Phase.HANDING_OVER):
            self.phase = Phase.CLOSING
            self._out.append(CloseSocket(self._attempt, 1000, "client closed"))
            self._set_timer(Timer.CLOSE, self.watchdogs.close_timeout)
            return
        self._abort("client closed")
        self._finish_close()

    def _finish_close(self) -> None:
        self._cancel_all_timers()
        self.phase = Phase.CLOSED
        self._report_at_end()
        self._emit(ev.Closed())

    def _on_resume_requested(self) -> None:
        if self.phase is Phase.FAILED:
            self.retry.app_resumed()
            self.credentials.auth_retry_used = False
            self.phase = Phase.WAITING
            if self._lost_at is None:
                self._lost_at = self._now
            self._start_attempt()
        elif self.phase is Phase.WAITING:
            self._start_attempt()  # "retry now"

    def _on_reseed_requested(self) -> None:
        if self.phase not in (Phase.IDLE, Phase.CLOSING, Phase.CLOSED):
            self._drop_handle("the app asked for a fresh session re-seeded from its transcript")
        if self.phase in (Phase.SETUP, Phase.CONNECTED):
            self._handover()  # the close ends in a fresh session, re-seeded (ContextReset)
        elif self.phase in (Phase.FETCHING, Phase.OPENING) and self.resumption.fresh_session_due:
            self._prepare_fresh_session()  # this attempt's setup carries no handle
