"""``SessionMachine``: the reconnecting Live client as a pure state machine.

No asyncio, no sockets, no clock, no global random: the machine takes an event (see
:mod:`~tunnelproof.session.events`) with the current monotonic time ``now`` (and the wall
clock ``wall``, for token and handle expiry) and returns the actions to perform (see
:mod:`~tunnelproof.session.actions`). Random jitter comes from an injected
``random.Random``. Every reconnect rule of the client contract lives here, so each one is a
fast deterministic test, and a Hypothesis state-machine test explores event orders.

Life of one connection::

    FETCHING --TokenFetched--> OPENING --SocketOpened/send setup--> SETUP
      --setupComplete/flush outbox--> CONNECTED --close/failure--> WAITING --timer--> ...

Rules worth knowing before reading the code:

* One socket per session, always: a new socket is opened only after the previous one is
  known to be gone (``SocketClosed``, or our own ``AbortSocket``). A goAway handover
  closes the old socket first (Google refuses a resume while it is open).
* A credential whose handshake completed is never used again; one whose handshake never
  completed is reused while its new-session window lasts.
* Only ``resumable: true`` handles are kept; the newest is used on every reconnect.
* The failure counter grows on every server-side failure and resets only after a
  connection stayed up ``RetryPolicy.stable_after`` seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from tunnelproof.protocol.client_messages import JsonDict, encode_client_message
from tunnelproof.protocol.close_codes import (
    CloseClass,
    CloseVerdict,
    classify_close,
    classify_handshake_status,
)
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.server_messages import (
    GoAway,
    ServerContent,
    ServerMessage,
    SessionResumptionUpdate,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    UnknownMessage,
    UsageMetadata,
    parse_server_frame,
)
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import (
    AbortSocket,
    Action,
    CancelTimer,
    CancelTokenFetch,
    CloseSocket,
    DeleteHandle,
    Emit,
    FetchToken,
    OpenSocket,
    SaveHandle,
    SendFrame,
    SetTimer,
)
from tunnelproof.session.credentials import Credential
from tunnelproof.session.events import (
    CloseRequested,
    Event,
    FrameReceived,
    OpenFailure,
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
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import (
    MessageKind,
    Outbox,
    OutboxLimits,
    Outgoing,
    SendResult,
    make_outgoing,
    without_tool_ids,
)
from tunnelproof.session.policy import DEFAULT_POLICY, DEFAULT_WATCHDOGS, RetryPolicy, Watchdogs
from tunnelproof.session.transcript import Transcript

# Timer names.
T_TOKEN = "token"
T_CONNECT = "connect"
T_SETUP = "setup"
T_REPLY = "reply"
T_STABLE = "stable"
T_RETRY = "retry"
T_GOAWAY = "goaway"
T_CLOSE = "close"
_CONNECTION_TIMERS = (T_CONNECT, T_SETUP, T_REPLY, T_STABLE, T_GOAWAY, T_CLOSE)

# A resumed setup refused this many times in a row (closed before setupComplete) is taken
# as a bad handle even without a 1007: the wire cannot tell a stale handle from a socket
# that died during setup, so one refusal is not enough, two are.
RESUME_REFUSALS_BEFORE_FRESH = 2


class Phase(StrEnum):
    """The machine's internal phase."""

    IDLE = "idle"
    FETCHING = "fetching"  # waiting for a credential
    OPENING = "opening"  # WebSocket handshake in progress
    SETUP = "setup"  # setup sent, waiting for setupComplete
    CONNECTED = "connected"
    CLOSING = "closing"  # our graceful close in progress (handover or app close)
    WAITING = "waiting"  # backoff / probe timer running
    FAILED = "failed"
    CLOSED = "closed"


class SessionState(StrEnum):
    """The public state of a session (``LiveSession.state``)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Rewind:
    partial_text: str
    reply_lost: bool
    tool_ids: tuple[str, ...]


class SessionMachine:
    """The sans-I/O core of :class:`~tunnelproof.session.live_session.LiveSession`.

    Use :meth:`handle` for events and :meth:`send` for app messages. Both return the
    actions to perform, in order.
    """

    def __init__(
        self,
        config: LiveConfig,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        watchdogs: Watchdogs = DEFAULT_WATCHDOGS,
        limits: OutboxLimits | None = None,
        rng: random.Random | None = None,
        transcript_turns: int = 200,
    ) -> None:
        self.config = config
        self.policy = policy
        self.watchdogs = watchdogs
        self.rng = rng if rng is not None else random.Random()
        self.outbox = Outbox(limits or OutboxLimits())
        self.transcript = Transcript(max_turns=transcript_turns)
        self.metrics = SessionMetrics()
        self.phase = Phase.IDLE

        self._now = 0.0
        self._wall = 0.0
        self._out: list[Action] = []

        # credentials
        self._request_seq = 0
        self._request: int | None = None  # token request in flight
        self._credential: Credential | None = None  # unspent (handshake never completed)
        self._credential_fresh = False  # never tried before the attempt now using it
        self._credential_tried = False  # an attempt already used it (handshake incomplete)
        self._auth_retry_used = False

        # socket
        self._attempt = 0
        self._socket_live = False  # a socket of self._attempt may exist
        self._resuming = False  # the current attempt sent a handle
        self._close_purpose = ""  # "handover" | "user"
        self._connected_at: float | None = None

        # handles and context
        self._handle: str | None = None
        self._handle_current = False  # no server output since the newest handle
        self._disconnected_at: float | None = None  # wall
        self._reset_reason: str | None = None  # a fresh session must say ContextReset
        self._had_session = False
        self._ever_connected = False
        self._resume_refusals = 0

        # turn state
        self._generating = False  # a model turn is in progress (until turnComplete)
        self._streaming = False  # model output is flowing (until generationComplete)
        self._reply_due = False
        # Messages sent since the one whose reply is due (it included). A resumable handle
        # that arrives before any output cannot contain them: the server marks itself not
        # resumable while it generates, so it issued that handle before reading them.
        self._sent_unanswered: int | None = None
        # The re-seed of a fresh session is sent right after setupComplete, so a handle the
        # server issued at setup predates it. Until a resumable handle arrives after model
        # output (which shows the server read the seed), a drop starts another fresh session,
        # re-seeded, instead of resuming one that may be empty. "sent" -> "read" -> "".
        self._seed_state = ""
        self._open_tool_calls: set[str] = set()
        self._calls_since_handle: list[str] = []
        self._cancelled_tool_ids: set[str] = set()

        # goAway
        self._go_away = False
        self._handover_pending = False

        # retry
        self._outage_failures = 0
        self._session_failures = 0
        self._outage_attempts = 0
        self._offline_since: float | None = None
        self._lost_at: float | None = None
        self._last_failure_offline = False

        self._timer_serial = 0
        self._timers: dict[str, int] = {}
        self._seq = 0

    # -- public surface ---------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The public state."""
        phase = self.phase
        if phase is Phase.IDLE:
            return SessionState.IDLE
        if phase is Phase.CONNECTED:
            return SessionState.CONNECTED
        if phase is Phase.FAILED:
            return SessionState.FAILED
        if phase is Phase.CLOSED:
            return SessionState.CLOSED
        if phase is Phase.CLOSING and self._close_purpose == "user":
            return SessionState.CLOSING
        return SessionState.RECONNECTING if self._ever_connected else SessionState.CONNECTING

    @property
    def resumption_handle(self) -> str | None:
        """The newest resumable handle, if any."""
        return self._handle

    @property
    def attempt(self) -> int:
        """The id of the newest socket attempt."""
        return self._attempt

    @property
    def socket_live(self) -> bool:
        """A socket of this session may exist right now."""
        return self._socket_live

    def handle(self, event: Event, *, now: float, wall: float) -> list[Action]:
        """Process ``event`` at monotonic ``now`` / wall-clock ``wall``; return the actions."""
        self._now, self._wall = now, wall
        self._out = []
        match event:
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
            case FrameReceived():
                self._on_frame(event)
            case SocketClosed():
                self._on_socket_closed(event)
            case TimerFired():
                self._on_timer(event)
            case CloseRequested():
                self._on_close_requested()
            case ResumeRequested():
                self._on_resume_requested()
        out, self._out = self._out, []
        return out

    def send(
        self, message: JsonDict, *, now: float, wall: float
    ) -> tuple[SendResult, list[Action]]:
        """The app sends ``message`` (a client message dict). Returns its result and actions.

        Raises ``ValueError`` for a message that is not a single client message or is a
        ``setup`` (programming errors, not network conditions).
        """
        self._now, self._wall = now, wall
        self._out = []
        self._seq += 1
        item = make_outgoing(self._seq, message, now)
        result = self._accept(item)
        out, self._out = self._out, []
        return result, out

    # -- helpers: actions ----------------------------------------------------------------

    def _emit(self, event: ev.AppEvent) -> None:
        self._out.append(Emit(event))

    def _set_timer(self, name: str, delay: float) -> None:
        self._timer_serial += 1
        self._timers[name] = self._timer_serial
        self._out.append(SetTimer(name, self._timer_serial, self._now + max(0.0, delay)))

    def _cancel_timer(self, *names: str) -> None:
        for name in names:
            if self._timers.pop(name, None) is not None:
                self._out.append(CancelTimer(name))

    def _send_frame(self, message: JsonDict) -> None:
        self._out.append(SendFrame(self._attempt, encode_client_message(message)))

    def _send_wire(self, text: str) -> None:
        self._out.append(SendFrame(self._attempt, text))

    def _abort(self, reason: str) -> None:
        if self._socket_live:
            self._out.append(AbortSocket(self._attempt, reason))
            self._socket_live = False

    def _report_dropped(self, items: list[Outgoing], reason: str) -> None:
        if not items:
            return
        self.metrics.messages_dropped += len(items)
        audio = [i for i in items if i.kind is MessageKind.AUDIO]
        other = [i for i in items if i.kind is not MessageKind.AUDIO]
        if audio:
            ms = sum(i.audio_ms for i in audio)
            self.metrics.audio_ms_dropped += ms
            self._emit(ev.SendDropped(tuple(i.seq for i in audio), "audio", reason, ms))
        for item in other:
            if item.was_sent:
                # Written once, so it is in the transcript; a fresh session re-seeded from
                # it would then hold a message the app was told is lost (and may resend).
                for turn in item.turns:
                    self.transcript.forget(turn.role, turn.text)
            self._emit(ev.SendDropped((item.seq,), item.kind.value, reason))

    def _save_handle(self) -> None:
        if self._handle is None:
            return
        self._out.append(
            SaveHandle(
                StoredSession(
                    handle=self._handle,
                    saved_at=self._wall,
                    disconnected_at=self._disconnected_at,
                    transcript=self.transcript.snapshot(),
                )
            )
        )

    def _drop_handle(self, reason: str) -> None:
        if self._handle is not None:
            self._out.append(DeleteHandle())
        self._handle = None
        self._handle_current = False
        self._reset_reason = reason

    # -- start, credentials ----------------------------------------------------------------

    def _on_started(self, event: Started) -> None:
        if self.phase is not Phase.IDLE:
            return
        stored = event.stored
        if stored is not None:
            self.transcript.load(stored.transcript)
            self._disconnected_at = stored.disconnected_at
            if stored.valid_at(self._wall, self.watchdogs.handle_validity):
                self._handle = stored.handle
                self._had_session = True
            else:
                self._out.append(DeleteHandle())
                self._reset_reason = "the stored resumption handle has expired"
        self._lost_at = self._now
        self._start_attempt()

    def _handle_expired(self) -> bool:
        if self._handle is None or self._disconnected_at is None:
            return False
        return self._wall >= self._disconnected_at + self.watchdogs.handle_validity

    def _start_attempt(self) -> None:
        """Get a credential (reuse an unspent one, wait for a prefetch, or fetch)."""
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return
        self._cancel_timer(T_RETRY)
        if self._handle_expired():
            self._drop_handle("the resumption handle expired (2 h after the disconnect)")
        if self._handle is None and self._had_session:
            self._prepare_fresh_session()
        self._outage_attempts += 1
        cred = self._credential
        if cred is not None and cred.usable_for_new_session(self._wall):
            # Either a prefetched token (goAway) or one whose handshake never completed.
            if self._credential_tried:
                self.metrics.tokens_reused += 1
            self._credential_fresh = not self._credential_tried
            self._open(cred)
            return
        self._credential = None
        self.phase = Phase.FETCHING
        if self._request is None:
            self._request_seq += 1
            self._request = self._request_seq
            self._out.append(FetchToken(self._request, prefetch=False))
        self._set_timer(T_TOKEN, self._token_timeout())

    def _token_timeout(self) -> float:
        if self._offline_since is not None:
            return min(self.watchdogs.token_timeout, self.watchdogs.probe_connect_timeout)
        return self.watchdogs.token_timeout

    def _on_token_fetched(self, event: TokenFetched) -> None:
        if event.request != self._request:
            return  # superseded or timed out
        self._request = None
        self._cancel_timer(T_TOKEN)
        self.metrics.tokens_fetched += 1
        self._credential = event.credential
        self._credential_tried = False
        if self.phase is Phase.FETCHING:
            self._credential_fresh = True
            self._open(event.credential)

    def _on_token_failed(self, event: TokenFailed) -> None:
        if event.request != self._request:
            return
        self._request = None
        self._cancel_timer(T_TOKEN)
        if self.phase is not Phase.FETCHING:
            return  # a failed prefetch: the handover fetches again and judges that result
        message = event.message or event.kind.value
        if event.kind is TokenFailure.AUTH:
            self._fail(
                CloseVerdict(
                    CloseClass.FATAL_AUTH,
                    None,
                    message,
                    "The token source refused to issue a token (HTTP 401/403): the user "
                    "must sign in again, then call resume().",
                )
            )
        elif event.kind is TokenFailure.CONFIG:
            self._fail(
                CloseVerdict(
                    CloseClass.FATAL_CONFIG,
                    None,
                    message,
                    "The token source is misconfigured (URL, key or settings); fix it, "
                    "then call resume().",
                )
            )
        elif event.kind is TokenFailure.OFFLINE:
            self._offline_failure(f"token source unreachable: {message}")
        else:
            self._server_failure(f"token source: {message}", retry_after=event.retry_after)

    # -- socket lifecycle -----------------------------------------------------------------

    def _open(self, cred: Credential) -> None:
        try:
            endpoint = cred.endpoint()
        except ValueError as exc:
            self._credential = None
            self._fail(
                CloseVerdict(
                    CloseClass.FATAL_CONFIG,
                    None,
                    str(exc),
                    "The token source returned an unusable credential; fix it, then resume().",
                )
            )
            return
        self._attempt += 1
        self._socket_live = True
        self._credential_tried = True
        self.phase = Phase.OPENING
        self.metrics.connect_attempts += 1
        timeout = (
            self.watchdogs.probe_connect_timeout
            if self._last_failure_offline
            else self.watchdogs.connect_timeout
        )
        self._out.append(OpenSocket(self._attempt, endpoint, timeout))
        self._set_timer(T_CONNECT, timeout)

    def _on_socket_opened(self, event: SocketOpened) -> None:
        if event.attempt != self._attempt or self.phase is not Phase.OPENING:
            return
        self._cancel_timer(T_CONNECT)
        # The handshake completed: the token is spent, whatever happens next.
        self._credential = None
        self._auth_retry_used = False
        if self.policy.reset_on_open:
            self._outage_failures = 0
        self.phase = Phase.SETUP
        handle = self._handle if self.config.session_resumption else None
        self._resuming = handle is not None
        if self._resuming:
            self.metrics.resumes_attempted += 1
        self._send_frame(self.config.to_setup(handle))
        self._set_timer(T_SETUP, self.watchdogs.setup_timeout)

    def _on_open_failed(self, event: SocketOpenFailed) -> None:
        if event.attempt != self._attempt or self.phase is not Phase.OPENING:
            return
        self._cancel_timer(T_CONNECT)
        self._socket_live = False
        if event.kind is OpenFailure.OFFLINE:
            # The handshake never completed: the credential stays usable (contract 1).
            self._offline_failure(event.message or "network unreachable")
            return
        reused = not self._credential_fresh
        self._credential = None  # the server saw it; never offer it again
        if event.kind is OpenFailure.ERROR or event.status is None:
            self._server_failure(event.message or "handshake failed")
            return
        verdict = classify_handshake_status(event.status, event.message)
        if verdict.kind is CloseClass.FATAL_AUTH and reused and not self._auth_retry_used:
            # A reused token may have been spent after all; one fresh try tells.
            self._auth_retry_used = True
            self._start_attempt()
        elif verdict.kind is CloseClass.RETRY:
            self._server_failure(
                f"handshake HTTP {event.status}",
                retry_after=event.retry_after,
            )
        else:
            self._fail(verdict)

    def _on_socket_closed(self, event: SocketClosed) -> None:
        if event.attempt != self._attempt or not self._socket_live:
            return
        self._socket_live = False
        phase = self.phase
        if phase is Phase.OPENING:
            self._cancel_timer(T_CONNECT)
            self._offline_failure(event.reason or "connection closed during the handshake")
            return
        if phase is Phase.CLOSING:
            self._after_our_close(event.code, event.reason)
            return
        if phase not in (Phase.SETUP, Phase.CONNECTED):
            return
        verdict = classify_close(
            event.code, event.reason, resuming=self._resuming, after_go_away=self._go_away
        )
        planned = self._go_away and not verdict.fatal and verdict.kind is not CloseClass.BAD_RESUME
        during_setup = phase is Phase.SETUP
        if verdict.kind is CloseClass.FATAL_AUTH and not during_setup:
            # The server accepted this credential and later ended the session over it:
            # the token expired mid-connection. A fresh token decides; a refusal during
            # the next setup is fatal, so this cannot loop.
            verdict = CloseVerdict(
                CloseClass.RETRY, verdict.code, verdict.reason, "The credential expired."
            )
        self._connection_gone(event.code, event.reason, planned=planned)
        if planned:
            self._reconnect_now("the server ended the connection after goAway")
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
        else:
            if during_setup and self._resuming:
                self._resume_refusals += 1
                if self._resume_refusals >= RESUME_REFUSALS_BEFORE_FRESH:
                    self._bad_resume(
                        f"the server refused the resumed setup {self._resume_refusals} times "
                        f"({event.code} {event.reason})"
                    )
                    return
            describe = f"closed {event.code} {event.reason}".strip()
            self._server_failure(describe)

    def _after_our_close(self, code: int | None, reason: str) -> None:
        self._cancel_timer(T_CLOSE)
        if self._close_purpose == "user":
            self._connection_gone(code, reason, planned=True)
            self._finish_close()
            return
        self._connection_gone(code, reason, planned=True)
        self.metrics.planned_handovers += 1
        self._reconnect_now("planned handover after goAway")

    def _connection_gone(self, code: int | None, reason: str, *, planned: bool) -> None:
        """Bookkeeping for a socket that is gone (after setup was at least attempted)."""
        was_connected = self._connected_at is not None
        self._connected_at = None
        self._socket_live = False
        self._cancel_timer(*_CONNECTION_TIMERS)
        self._go_away = False
        self._handover_pending = False
        if was_connected:
            self._lost_at = self._now
            self._disconnected_at = self._wall
            self._save_handle()
            self._emit(ev.Disconnected(code, reason, planned=planned))
        rewind = _Rewind(
            partial_text=self.transcript.partial_model_text,
            reply_lost=self._reply_due or self._generating,
            tool_ids=tuple(self._calls_since_handle),
        )
        self.transcript.commit_model()
        self._generating = False
        self._streaming = False
        self._reply_due = False
        self._sent_unanswered = None
        if rewind.tool_ids:
            self._cancel_tool_calls(set(rewind.tool_ids))
        if rewind.partial_text or rewind.reply_lost or rewind.tool_ids:
            self._emit(ev.Rewound(rewind.partial_text, rewind.reply_lost, rewind.tool_ids))
        self._calls_since_handle.clear()
        # What the resumed state lacks goes back into the queue (contract 3).
        self._report_dropped(
            self.outbox.requeue_unconfirmed(self._now), "too old to replay after reconnect"
        )
        if self._seed_state:
            self._seed_state = ""
            self._drop_handle("the link dropped before the re-seeded session showed its history")
            self._had_session = True

    def _cancel_tool_calls(self, ids: set[str]) -> None:
        self._open_tool_calls -= ids
        self._cancelled_tool_ids |= ids
        if len(self._cancelled_tool_ids) > 4096:  # bounded memory on very long sessions
            self._cancelled_tool_ids = set(list(self._cancelled_tool_ids)[-2048:])
        self._report_dropped(
            self.outbox.drop_tool_answers(ids),
            "answers a tool call the resumed session never saw",
        )

    def _prepare_fresh_session(self) -> None:
        """The next attempt starts a new server session: settle what the old one held."""
        if self._reset_reason is None:
            self._reset_reason = "the connection was lost before a resumption handle arrived"
        if self._open_tool_calls:
            ids = tuple(sorted(self._open_tool_calls))
            self._cancel_tool_calls(set(ids))
            self._emit(ev.Rewound("", False, ids))
        # Text already sent is in the transcript, which re-seeds the new session.
        self.outbox.remove_where(
            lambda i: i.was_sent and i.kind in (MessageKind.TEXT, MessageKind.CLIENT_CONTENT)
        )
        self._had_session = False

    def _bad_resume(self, reason: str) -> None:
        self._drop_handle(reason)
        self._resume_refusals = 0
        self.metrics.fresh_session_fallbacks += 1
        self._had_session = True
        self._reconnect_now(reason)

    # -- frames ------------------------------------------------------------------------------

    def _on_frame(self, event: FrameReceived) -> None:
        if event.attempt != self._attempt or self.phase not in (Phase.SETUP, Phase.CONNECTED):
            return
        try:
            frame = parse_server_frame(event.data)
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            self._emit(ev.ProtocolViolation(str(exc), exc.size))
            return
        for message in frame.messages:
            if self.phase not in (Phase.SETUP, Phase.CONNECTED) or event.attempt != self._attempt:
                return
            self._on_message(message)
        if self.phase is Phase.CONNECTED:
            if self._reply_due or self._streaming:
                # Something is owed: any message proves the link alive; silence does not.
                self._set_timer(T_REPLY, self.watchdogs.reply_timeout)
            else:
                self._cancel_timer(T_REPLY)
        self._maybe_handover()

    def _on_message(self, message: ServerMessage) -> None:
        match message:
            case SetupComplete():
                if self.phase is Phase.SETUP:
                    self._on_setup_complete()
            case ServerContent():
                self._on_content(message)
            case SessionResumptionUpdate():
                self._on_resumption_update(message)
            case ToolCall():
                ids = [c.id for c in message.function_calls if c.id]
                self._open_tool_calls.update(ids)
                self._calls_since_handle.extend(ids)
                self._handle_current = False
                self._reply_due = False
                self._sent_unanswered = None
                if self._seed_state:
                    self._seed_state = "read"
                self._streaming = False  # the model waits for the app now
                self._emit(ev.ToolCallRequested(message.function_calls))
            case ToolCallCancellation():
                self._open_tool_calls -= set(message.ids)
                self._emit(ev.ToolCallCancelled(message.ids))
            case GoAway():
                self._on_go_away(message)
            case UsageMetadata():
                self._emit(
                    ev.Usage(
                        message.prompt_token_count,
                        message.response_token_count,
                        message.total_token_count,
                    )
                )
            case UnknownMessage():
                self._emit(ev.UnknownServerMessage(message.kind, message.raw))

    def _on_setup_complete(self) -> None:
        self._cancel_timer(T_SETUP)
        self.phase = Phase.CONNECTED
        self._connected_at = self._now
        # Connected again: the 2 h validity window counts from the *next* disconnect.
        self._disconnected_at = None
        # A resumed state *is* the handle's state; a fresh one has no handle yet.
        self._handle_current = self._resuming
        first = not self._ever_connected
        self._ever_connected = True
        self._had_session = True
        self._resume_refusals = 0
        self._offline_since = None
        self._last_failure_offline = False
        self._outage_attempts = 0
        self.metrics.connections += 1
        if not first:
            self.metrics.reconnects += 1
        gap = self._now - self._lost_at if self._lost_at is not None else 0.0
        self._lost_at = None
        if not first or self._resuming:
            self.metrics.downtime_total += gap
            self.metrics.last_gap = gap
            self.metrics.gaps.append(gap)
            if len(self.metrics.gaps) > 1000:
                del self.metrics.gaps[:500]
        if self.policy.stable_after > 0:
            self._set_timer(T_STABLE, self.policy.stable_after)
        else:
            self._outage_failures = 0
        if self._resuming:
            self.metrics.resumes_succeeded += 1
        else:
            # A fresh server session: re-seed it from the transcript if there is history.
            reason = self._reset_reason
            self._reset_reason = None
            seed = self.transcript.seed_message()
            if seed is not None:
                self._send_frame(seed)
                self._seed_state = "sent"
            if reason is not None or seed is not None:
                turns = len(seed["clientContent"]["turns"]) if seed is not None else 0
                self._emit(ev.ContextReset(reason or "a fresh session was started", turns))
        replayed = self._flush()
        if self._resuming:
            self._emit(ev.Resumed(self._attempt, gap, replayed))
        else:
            self._emit(ev.Connected(self._attempt, first))

    def _flush(self) -> int:
        items, stale = self.outbox.take_all(self._now)
        self._report_dropped(stale, "audio older than its time to live")
        replayed = 0
        for item in items:
            if item.was_sent:
                replayed += 1
                self.metrics.messages_replayed += 1
                self.metrics.audio_ms_replayed += item.audio_ms
            self._write(item)
        return replayed

    def _write(self, item: Outgoing) -> None:
        """Send ``item`` on the live connection and record it."""
        self._send_wire(item.wire)  # encoded once, when the app sent it
        if not item.was_sent:
            for turn in item.turns:
                self.transcript.add(turn.role, turn.text)
        if item.kind is MessageKind.TOOL_RESPONSE:
            self._open_tool_calls -= set(item.tool_ids)
        if item.expects_reply:
            self._reply_due = True
            self._set_timer(T_REPLY, self.watchdogs.reply_timeout)
            if self._sent_unanswered is None:
                self._sent_unanswered = 0
        if self._sent_unanswered is not None:
            self._sent_unanswered += 1
        # Items evicted from the replay record were delivered; they only lose their
        # replay insurance, so they are not reported as dropped.
        self.outbox.mark_sent(item)

    def _on_content(self, content: ServerContent) -> None:
        output = False
        if content.input_transcription is not None:
            self.transcript.user_transcription(content.input_transcription.text)
            self._emit(
                ev.InputTranscript(
                    content.input_transcription.text, content.input_transcription.finished
                )
            )
        for part in content.parts:
            if part.thought:
                continue
            if part.text is not None:
                output = True
                self.transcript.model_output(part.text)
                self._emit(ev.TextDelta(part.text))
            elif part.inline_data is not None and part.inline_data.is_audio:
                output = True
                try:
                    pcm = part.inline_data.decode()
                except ProtocolError as exc:
                    self.metrics.protocol_errors += 1
                    self._emit(ev.ProtocolViolation(str(exc), exc.size))
                    continue
                self._emit(ev.AudioChunk(pcm, part.inline_data.mime_type))
        if content.output_transcription is not None:
            output = True
            if self.config.modality == "AUDIO":
                self.transcript.model_output(content.output_transcription.text)
            self._emit(
                ev.OutputTranscript(
                    content.output_transcription.text, content.output_transcription.finished
                )
            )
        if output:
            self._generating = True
            self._streaming = True
            self._reply_due = False
            self._sent_unanswered = None
            if self._seed_state:
                self._seed_state = "read"  # the server answers only after reading the seed
            self._handle_current = False
        if content.interrupted:
            self._generating = False
            self._streaming = False
            self.transcript.commit_model()
            self._emit(ev.Interrupted())
        if content.generation_complete:
            # From here the server may wait for playback before turnComplete: a quiet
            # link is normal, so the watchdog stops watching.
            self._streaming = False
            self._emit(ev.GenerationComplete())
        if content.turn_complete:
            self._generating = False
            self._streaming = False
            self._reply_due = False
            self._sent_unanswered = None
            self._handle_current = False  # the next handle will include this turn
            self._cancel_timer(T_REPLY)
            self.transcript.commit_model()
            self._emit(ev.TurnComplete(content.turn_complete_reason))

    def _on_resumption_update(self, update: SessionResumptionUpdate) -> None:
        if not update.resumable or update.new_handle is None:
            # Never replaces the handle (contract 2): resuming from it would lose data.
            self._handle_current = False
            return
        self._handle = update.new_handle
        self._handle_current = True
        if self._seed_state == "read":
            self._seed_state = ""  # issued after the server read the seed: it holds it
        self._calls_since_handle.clear()
        # What was sent since the unanswered message stays unconfirmed (see
        # _sent_unanswered): a resume from this handle must replay it.
        self.outbox.confirm(keep_last=self._sent_unanswered or 0)
        self._save_handle()

    # -- goAway ------------------------------------------------------------------------------

    def _on_go_away(self, go_away: GoAway) -> None:
        self.metrics.go_aways += 1
        margin = self.watchdogs.go_away_margin
        left = go_away.time_left
        delay = max(0.0, left - margin) if left is not None else 0.0
        if self._go_away and T_GOAWAY in self._timers:
            return  # a repeated goAway does not move the deadline later
        self._go_away = True
        self._handover_pending = True
        self._set_timer(T_GOAWAY, delay)
        self._emit(ev.GoAwayReceived(left, self._now + delay))
        # Prefetch the next credential while the turn finishes (contract 4).
        usable = self._credential is not None and self._credential.usable_for_new_session(
            self._wall
        )
        if not usable and self._request is None:
            self._request_seq += 1
            self._request = self._request_seq
            self._out.append(FetchToken(self._request, prefetch=True))

    def _at_turn_boundary(self) -> bool:
        if self.phase is not Phase.CONNECTED:
            return False
        if self._generating or self._reply_due or self._open_tool_calls:
            return False
        # Wait for a handle that includes the last turn, or the resume would rewind it.
        return self._handle_current or not self.config.session_resumption

    def _maybe_handover(self) -> None:
        if self._handover_pending and self._at_turn_boundary():
            self._handover()

    def _handover(self) -> None:
        self._handover_pending = False
        self._cancel_timer(T_GOAWAY, T_REPLY, T_STABLE)
        self.phase = Phase.CLOSING
        self._close_purpose = "handover"
        self._out.append(CloseSocket(self._attempt, 1000, "goAway handover"))
        self._set_timer(T_CLOSE, self.watchdogs.close_timeout)

    def _reconnect_now(self, reason: str) -> None:
        """Reconnect with no backoff (planned handover, expected close, fresh fallback)."""
        self.phase = Phase.WAITING
        self._emit(ev.Reconnecting(0.0, self._outage_attempts + 1, reason, "server", True))
        self._start_attempt()

    # -- failures ----------------------------------------------------------------------------

    def _server_failure(self, reason: str, *, retry_after: float | None = None) -> None:
        self.metrics.server_failures += 1
        self._last_failure_offline = False
        failures = self._outage_failures
        self._session_failures += 1
        cap = self.policy.max_attempts_per_outage
        if cap is not None and failures >= cap:
            self._give_up(f"gave up after {failures + 1} failed attempts in a row ({reason})")
            return
        session_cap = self.policy.max_attempts_per_session
        if session_cap is not None and self._session_failures > session_cap:
            self._give_up(f"gave up after {session_cap} failed attempts this session ({reason})")
            return
        delay = self.policy.server_delay(failures, self.rng, retry_after)
        self._outage_failures = failures + 1
        self._schedule_retry(delay, "server", reason)

    def _offline_failure(self, reason: str) -> None:
        self.metrics.offline_failures += 1
        if not self.policy.probe_offline:
            self._server_failure(reason)
            return
        self._last_failure_offline = True
        if self._offline_since is None:
            self._offline_since = self._now
        limit = self.policy.max_offline_seconds
        if limit is not None and self._now - self._offline_since >= limit:
            self._give_up(f"the network has been gone for over {limit:.0f} s ({reason})")
            return
        self._schedule_retry(self.policy.offline_delay(self.rng), "offline", reason)

    def _schedule_retry(self, delay: float, kind: ev.FailureKind, reason: str) -> None:
        self.phase = Phase.WAITING
        self._emit(ev.Reconnecting(delay, self._outage_attempts + 1, reason, kind))
        self._set_timer(T_RETRY, delay)

    def _give_up(self, reason: str) -> None:
        self._fail(
            CloseVerdict(
                CloseClass.RETRY,
                None,
                reason,
                f"Reconnecting {reason}; call resume() to try again.",
            )
        )

    def _fail(self, verdict: CloseVerdict) -> None:
        self._abort("fatal: " + verdict.kind.value)
        for name in list(self._timers):
            self._cancel_timer(name)
        if self._request is not None:
            self._out.append(CancelTokenFetch(self._request))
            self._request = None
        if self._connected_at is not None:
            self._connection_gone(verdict.code, verdict.reason, planned=False)
        self.phase = Phase.FAILED
        self._emit(ev.Failed(verdict))

    # -- timers ------------------------------------------------------------------------------

    def _on_timer(self, event: TimerFired) -> None:
        if self._timers.get(event.name) != event.serial:
            return  # cancelled or replaced
        del self._timers[event.name]
        name = event.name
        if name == T_RETRY and self.phase is Phase.WAITING:
            self._start_attempt()
        elif name == T_TOKEN and self.phase is Phase.FETCHING and self._request is not None:
            self._out.append(CancelTokenFetch(self._request))
            self._request = None
            self._offline_failure("the token source did not answer in time")
        elif name == T_CONNECT and self.phase is Phase.OPENING:
            self._abort("connect timeout")
            self._offline_failure("connect timeout")
        elif name == T_SETUP and self.phase is Phase.SETUP:
            self.metrics.dead_links_detected += 1
            self._abort("no setupComplete")
            self._connection_gone(None, "no setupComplete", planned=False)
            self._server_failure(f"no setupComplete within {self.watchdogs.setup_timeout:g} s")
        elif name == T_REPLY and self.phase is Phase.CONNECTED:
            self.metrics.dead_links_detected += 1
            self._abort("no reply")
            reason = f"no server message within {self.watchdogs.reply_timeout:g} s of a reply due"
            self._connection_gone(None, reason, planned=False)
            self._server_failure(reason)
        elif name == T_STABLE:
            self._outage_failures = 0
        elif name == T_GOAWAY and self.phase is Phase.CONNECTED:
            self._handover()
        elif name == T_CLOSE and self.phase is Phase.CLOSING:
            self._abort("close timeout")
            self._after_our_close(None, "close timed out")

    # -- app requests --------------------------------------------------------------------------

    def _on_close_requested(self) -> None:
        if self.phase in (Phase.CLOSED, Phase.IDLE) or (
            self.phase is Phase.CLOSING and self._close_purpose == "user"
        ):
            if self.phase is Phase.IDLE:
                self.phase = Phase.CLOSED
                self._emit(ev.Closed())
            return
        self._report_dropped(self.outbox.clear(), "the session was closed")
        if self._request is not None:
            self._out.append(CancelTokenFetch(self._request))
            self._request = None
        for name in list(self._timers):
            self._cancel_timer(name)
        if self._socket_live and self.phase in (Phase.SETUP, Phase.CONNECTED, Phase.CLOSING):
            self.phase = Phase.CLOSING
            self._close_purpose = "user"
            self._out.append(CloseSocket(self._attempt, 1000, "client closed"))
            self._set_timer(T_CLOSE, self.watchdogs.close_timeout)
            return
        self._abort("client closed")
        self._finish_close()

    def _finish_close(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        self.phase = Phase.CLOSED
        self._emit(ev.Closed())

    def _on_resume_requested(self) -> None:
        if self.phase is Phase.FAILED:
            self._outage_failures = 0
            self._session_failures = 0
            self._offline_since = None
            self._auth_retry_used = False
            self.phase = Phase.WAITING
            if self._lost_at is None:
                self._lost_at = self._now
            self._start_attempt()
        elif self.phase is Phase.WAITING:
            self._start_attempt()  # "retry now"

    # -- sends -----------------------------------------------------------------------------------

    def _accept(self, item: Outgoing) -> SendResult:
        if self.phase in (Phase.CLOSED,) or (
            self.phase is Phase.CLOSING and self._close_purpose == "user"
        ):
            self.metrics.messages_dropped += 1
            return SendResult("dropped", item.seq, "the session is closed")
        if item.kind is MessageKind.TOOL_RESPONSE:
            cancelled = self._cancelled_tool_ids.intersection(item.tool_ids)
            if cancelled:
                trimmed = without_tool_ids(item, cancelled)
                if trimmed is None:
                    self.metrics.messages_dropped += 1
                    return SendResult(
                        "dropped",
                        item.seq,
                        "the tool call was cancelled by a reconnect (the resumed session "
                        f"never saw {', '.join(sorted(cancelled))})",
                    )
                item = trimmed
        if self.phase is Phase.CONNECTED and not self.outbox.pending:
            self._write(item)
            return SendResult("sent", item.seq)
        result, dropped = self.outbox.enqueue(item, self._now)
        self._report_dropped(dropped, "outbox bound reached or audio too old")
        if result.dropped:
            self.metrics.messages_dropped += 1
            if item.kind is MessageKind.AUDIO:
                self.metrics.audio_ms_dropped += item.audio_ms
        return result
