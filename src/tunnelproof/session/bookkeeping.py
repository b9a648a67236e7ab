"""The machine's data and bookkeeping: everything that does not change its phase.

:class:`SessionBookkeeping` is the base of :class:`~tunnelproof.session.machine.SessionMachine`
(as h11's ``Connection`` keeps the fields that do not affect transitions apart from
``_state.py``). It holds the helpers that own data (outbox, transcript, turns, tool calls,
resumption state, credential slot, retry budget, timers, relay link), collects the actions
of the call in progress, and does the work that follows a decision without making one:
writing and replaying sends, translating server content, confirming delivery, settling a
lost connection. Every phase change is in ``machine.py``.
"""

from __future__ import annotations

import random

from tunnelproof.protocol.client_messages import encode_client_message
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.server_messages import (
    GoAway,
    InlineData,
    ServerContent,
    ServerMessage,
    SessionResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    UnknownMessage,
    UsageMetadata,
)
from tunnelproof.protocol.types import JsonDict
from tunnelproof.session import app_events as ev
from tunnelproof.session.accounting import DeliveryAccounting
from tunnelproof.session.actions import (
    AbortSocket,
    Action,
    CancelTokenFetch,
    DeleteHandle,
    Emit,
    FetchToken,
    SaveHandle,
    SendFrame,
)
from tunnelproof.session.content import content_events
from tunnelproof.session.credential_slot import CredentialSlot
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import AudioDropLedger, Outbox, OutboxLimits, SendResult
from tunnelproof.session.outgoing import MessageKind, Outgoing
from tunnelproof.session.phases import Phase
from tunnelproof.session.policy import DEFAULT_POLICY, DEFAULT_WATCHDOGS, RetryPolicy, Watchdogs
from tunnelproof.session.relay_link import RelayLink
from tunnelproof.session.restore import TurnRestore
from tunnelproof.session.resumption import ResumptionState
from tunnelproof.session.retry_budget import RetryBudget
from tunnelproof.session.screening import screen
from tunnelproof.session.timers import CONNECTION_TIMERS, Timer, Timers
from tunnelproof.session.tool_calls import ToolCalls
from tunnelproof.session.transcript import DEFAULT_MAX_BYTES, DEFAULT_MAX_TURNS, Transcript
from tunnelproof.session.turns import TurnTracker


class SessionBookkeeping(DeliveryAccounting):
    """Data and phase-free work of the session machine (see the module docstring)."""

    phase: Phase

    def __init__(
        self,
        config: LiveConfig,
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        watchdogs: Watchdogs = DEFAULT_WATCHDOGS,
        limits: OutboxLimits | None = None,
        rng: random.Random | None = None,
        transcript_turns: int = DEFAULT_MAX_TURNS,
        transcript_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        # Settings: never change, and decide nothing on their own.
        self.config = config
        self.policy = policy
        self.watchdogs = watchdogs
        self.rng = rng if rng is not None else random.Random()
        # Data, owned by the helpers; they answer questions, the machine decides.
        self.outbox = Outbox(limits or OutboxLimits())
        self.transcript = Transcript(max_turns=transcript_turns, max_bytes=transcript_bytes)
        self.metrics = SessionMetrics()
        self.credentials = CredentialSlot()
        self.retry = RetryBudget(policy)
        self.turns = TurnTracker()
        self.tools = ToolCalls()
        self.resumption = ResumptionState()
        self.restore = TurnRestore(self.turns, config)  # turns a drop would take (restore.py)
        self.timers = Timers()
        # The phase and the few facts about the current socket that a phase cannot hold.
        self.phase = Phase.IDLE  # changed only by SessionMachine (machine.py)
        self._attempt = 0
        self._socket_live = False  # a socket of self._attempt may exist (until abort/close)
        self._session_ready = False  # this socket reached setupComplete
        self._go_away = False  # the server announced the end of this connection
        self._ever_connected = False
        self._lost_at: float | None = None  # monotonic start of the current gap
        self._seq = 0  # the last send's sequence number
        self._connected_at: float | None = None  # monotonic setupComplete of this socket
        # Question texts by seq, kept until answered: told to the app if an answer is lost.
        self._question_texts: dict[int, str] = {}
        # Questions whose answer a lost connection cut or owed and that the session asks
        # again itself (replayed on a resume, re-asked after the history in a fresh one).
        self._reask: set[int] = set()
        self._cut_partial = ""  # model text of the answer a lost connection cut
        # Re-asked questions taken out of the transcript for a fresh session: written back
        # when asked again (a replay, which is otherwise never written twice).
        self._unwritten: set[int] = set()
        self._audio_drops = AudioDropLedger()  # reported once per outage
        self._garbage_since_message = False  # only unparseable frames since the last message
        self._last_written: int | None = None  # newest seq written on this connection
        self._relay = RelayLink(self._emit, self.rng)  # is the server a tunnelproof relay?
        # The call in progress.
        self._now = 0.0
        self._wall = 0.0
        self._out: list[Action] = []

    @property
    def resumption_handle(self) -> str | None:
        """The newest resumable handle, if any."""
        return self.resumption.handle

    @property
    def attempt(self) -> int:
        """The id of the newest socket attempt."""
        return self._attempt

    @property
    def socket_live(self) -> bool:
        """A socket of this session may exist right now."""
        return self._socket_live

    def _set_timer(self, timer: Timer, delay: float, keep_sooner: bool = False) -> None:
        at = self._now + max(0.0, delay)
        self._out.append((self.timers.set_by if keep_sooner else self.timers.set)(timer, at))

    def _cancel_timer(self, *timers: Timer) -> None:
        for timer in timers:
            action = self.timers.cancel(timer)
            if action is not None:
                self._out.append(action)

    def _cancel_all_timers(self) -> None:
        self._cancel_timer(*self.timers.running())

    def _send_frame(self, message: JsonDict) -> None:
        self._out.append(SendFrame(self._attempt, encode_client_message(message)))

    def _abort(self, reason: str) -> None:
        if self._socket_live:
            self._out.append(AbortSocket(self._attempt, reason))
            self._socket_live = False

    def _cancel_token_request(self) -> None:
        request = self.credentials.abandoned()
        if request is not None:
            self._out.append(CancelTokenFetch(request))

    def _connection_ready(self, setup_complete: JsonDict) -> None:
        """``setupComplete``: count it, re-seed a fresh session, flush, and say so."""
        self._session_ready = True
        self._connected_at = self._now
        self._last_written = None
        self.resumption.ready()
        resuming = self.resumption.resuming
        self._relay.setup_complete(setup_complete, resuming=resuming)
        first = not self._ever_connected
        self._ever_connected = True
        self.metrics.connections += 1
        if not first:
            self.metrics.reconnects += 1
        gap = self._now - self._lost_at if self._lost_at is not None else 0.0
        self._lost_at = None
        if not first or resuming:
            self.metrics.record_gap(gap)
        if self.policy.stable_after > 0:
            self._set_timer(Timer.STABLE, self.policy.stable_after)
        self.retry.connected()
        if resuming:
            self.metrics.resumes_succeeded += 1
        else:
            # A fresh server session: re-seed it from the transcript if there is history.
            reason, self.resumption.reset_reason = self.resumption.reset_reason, None
            seed = self.transcript.seed_message()
            if seed is not None:
                self._send_frame(seed)
                self.resumption.seed_sent()
            if reason is not None or seed is not None:
                turns = len(seed["clientContent"]["turns"]) if seed is not None else 0
                self._emit(ev.ContextReset(reason or "a fresh session was started", turns))
        replayed = self._flush()
        self._report_audio_drops()  # the outage is over: one report for what it cost
        if resuming:
            self._emit(ev.Resumed(self._attempt, gap, replayed))
        else:
            self._emit(ev.Connected(self._attempt, first))

    def _on_go_away(self, go_away: GoAway) -> None:
        self.metrics.go_aways += 1
        left = go_away.time_left
        if self.retry.handovers_left:
            delay = max(0.0, left - self.watchdogs.go_away_margin) if left is not None else 0.0
        else:  # budget spent: stay until the server closes, so an answer can still come;
            delay = (left or 0.0) + self.watchdogs.close_timeout  # this is only a backstop
        if self._go_away and Timer.GOAWAY in self.timers:
            return  # a repeated goAway does not move the deadline later
        self._go_away = True
        self._set_timer(Timer.GOAWAY, delay)
        self._emit(ev.GoAwayReceived(left, self._now + delay))
        # Prefetch the next credential while the turn finishes (contract 4).
        self._prefetch()

    def _end_of_call(self) -> None:
        # Audio drops are gathered during an outage and reported when it ends; while
        # connected (or once stopped) they are reported at the end of the call.
        if self._audio_drops.seqs and self.phase in (Phase.CONNECTED, Phase.FAILED, Phase.CLOSED):
            self._report_audio_drops()

    def _served(self) -> float:
        """How long the current connection has served since ``setupComplete``."""
        return self._now - self._connected_at if self._connected_at is not None else 0.0

    def _fetch_token(self, *, prefetch: bool) -> None:
        self._out.append(FetchToken(self.credentials.asked(self._now), prefetch=prefetch))

    def _prefetch(self) -> None:
        if self.credentials.usable(self._wall) is None and self.credentials.request is None:
            self._fetch_token(prefetch=True)

    def _save_handle(self) -> None:
        handle = self.resumption.handle
        if handle is None:
            return
        stored = StoredSession(
            handle=handle,
            saved_at=self._wall,
            disconnected_at=self.resumption.disconnected_at,
            transcript=self.transcript.snapshot(),
        )
        self._out.append(SaveHandle(stored))

    def _drop_handle(self, reason: str) -> None:
        if self.resumption.dropped(reason):
            self._out.append(DeleteHandle())

    def _connection_gone(self, code: int | None, reason: str, *, planned: bool) -> None:
        """Bookkeeping for a socket that is gone (after setup was at least attempted)."""
        was_ready, self._session_ready = self._session_ready, False
        self._socket_live = False
        self._cancel_timer(*CONNECTION_TIMERS)
        self._go_away = False
        if was_ready:
            self._lost_at = self._now
            self.resumption.disconnected(self._wall)
            self._save_handle()
            self._emit(ev.Disconnected(code, reason, planned=planned))
        self._connected_at = None
        self._garbage_since_message = False
        partial_text = self.transcript.partial_model_text
        lost = self.turns.connection_lost()
        # Completed turns the handle lacks go back as history, not questions (restore.py).
        restored, kept = self.restore.connection_lost(self.outbox, self._now, self.resumption)
        tool_ids = tuple(i for i in self.tools.since_handle if i not in kept)
        self.transcript.commit_model()
        # Which owed questions the session asks again itself: those the server's state may
        # lack (unconfirmed, so replayed). A confirmed one is in the state without its
        # answer; replaying it would duplicate it, so the app is told (reply_lost). A
        # setup that failed carried no conversation: the earlier verdicts stand.
        unconfirmed = set(self.outbox.unconfirmed.seqs)
        owed = [seq for seq in (lost.cut, *lost.waiting) if seq is not None]
        lost_questions = [seq for seq in owed if seq not in unconfirmed]
        if was_ready:
            self._cut_partial = partial_text.strip()
            self._reask = {seq for seq in owed if seq in unconfirmed}
        unanswered = tuple(
            self._question_texts[seq] for seq in lost_questions if seq in self._question_texts
        )
        reply_lost = bool(lost_questions)
        if restored is not None:
            self._emit(restored)
        if tool_ids:
            self._cancel_tool_calls(set(tool_ids))
        rewound: ev.Rewound | None = None
        if partial_text or lost.owed or tool_ids:
            reasked = any(seq in unconfirmed for seq in owed)
            rewound = ev.Rewound(partial_text, reply_lost, tool_ids, unanswered, reasked)
        self._relay.connection_lost(rewound)  # reported now, or held for the resume
        self.tools.connection_settled()
        # Audio sent beyond the replay window with no confirmation since: the link died
        # with it, and nothing can replay it. Reported, never silently lost.
        unverified = self.outbox.take_unverified()
        if unverified:
            ms = sum(a.audio_ms for a in unverified)
            self.metrics.messages_dropped += len(unverified)
            self.metrics.audio_ms_dropped += ms
            self._audio_drops.add(
                (a.seq for a in unverified),
                ms,
                "sent into a link that died, beyond the replay window (the server may lack it)",
            )
        # What the resumed state lacks goes back into the queue (contract 3).
        self._report_dropped(
            self.outbox.requeue_unconfirmed(self._now), "too old to replay after reconnect"
        )
        if self.resumption.link_lost():
            self._out.append(DeleteHandle())

    def _prepare_fresh_session(self) -> None:
        """The next attempt starts a new server session: settle what the old one held."""
        self.resumption.fresh_session_started()
        # Answers still unconfirmed answer calls the new session never saw: dropped too.
        answered = {c for item in self.outbox.pending for c in item.tool_ids}
        if self.tools.open or answered:
            ids = tuple(sorted(self.tools.open))
            self._cancel_tool_calls(self.tools.open | answered)
            if ids:
                self._emit(ev.Rewound("", False, ids))
        # Text already sent is in the transcript, which re-seeds the new session, except
        # the questions still owed an answer: they are asked again after the history (and
        # leave the history, with the cut-off start of their answer), so the fresh session
        # answers them instead of holding them as a finished past.
        reask = self._reask
        text_kinds = (MessageKind.TEXT, MessageKind.CLIENT_CONTENT)
        for item in list(self.outbox.pending):
            if item.was_sent and item.kind in text_kinds and item.seq in reask:
                for turn in item.turns:
                    self.transcript.forget(turn.role, turn.text)
                self._unwritten.add(item.seq)
        if reask and self._cut_partial:
            self.transcript.forget("model", self._cut_partial)
        self.outbox.remove_where(
            lambda i: i.was_sent and i.kind in text_kinds and i.seq not in reask
        )

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
        wire = self._relay.frame(item.wire, item.seq) if self._relay.keeps_turns else item.wire
        self._out.append(SendFrame(self._attempt, wire))
        self._last_written = seq = item.seq
        message = item.message  # its fields directly: this runs per 20 ms audio chunk
        if message.turns and (not item.was_sent or seq in self._unwritten):
            self._unwritten.discard(seq)
            for turn in message.turns:
                self.transcript.add(turn.role, turn.text)
        elif seq in self._unwritten:
            self._unwritten.discard(seq)
        if message.kind is MessageKind.TOOL_RESPONSE:
            self.tools.answered(item.tool_ids)
        if message.expects_reply:  # asking again never postpones a reply already owed
            self._set_timer(Timer.REPLY, self.watchdogs.reply_timeout, keep_sooner=True)
            text = " ".join(t.text for t in item.turns if t.role == "user")
            if text:
                self._question_texts[item.seq] = text
                if len(self._question_texts) > 256:  # bounded: the oldest are long answered
                    del self._question_texts[min(self._question_texts)]
        audio = message.kind is MessageKind.AUDIO
        self.turns.sent(seq, expects_reply=message.expects_reply, audio=audio)
        # Items evicted from the replay record were delivered; they only lose their
        # replay insurance, so they are not reported as dropped.
        self.outbox.mark_sent(item)

    def _on_conversation(self, message: ServerMessage) -> None:
        """A server message about the conversation (not setupComplete, not goAway)."""
        match message:
            case ServerContent():
                self._on_content(message)
            case SessionResumptionUpdate():
                self._on_resumption_update(message)
            case ToolCall():
                reissued = self.tools.reissued()
                question = self.turns.tool_call_arrived()  # the model waits for the app now
                self.tools.called([c.id for c in message.function_calls if c.id], question)
                self.resumption.output_seen()
                self._emit(ev.ToolCallRequested(message.function_calls, reissued))
            case ToolCallCancellation():
                self.tools.withdrawn(message.ids)
                self._emit(ev.ToolCallCancelled(message.ids))
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

    def _on_audio(self, inline: InlineData) -> None:
        """An audio-only frame (``audio_only_part``), handled as :meth:`_on_content` handles
        its one-part ``serverContent`` without building it (tests hold both to the same
        actions): the path of 50 frames a second per voice session."""
        if not inline.is_audio:
            return
        try:
            pcm = inline.decode()
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            self._emit(ev.ProtocolViolation(str(exc), exc.size))
        else:
            self._out.append(Emit(ev.AudioChunk(pcm, inline.mime_type)))  # _emit, per frame
        self.turns.output_arrived()
        self.resumption.output_seen()

    def _on_content(self, content: ServerContent) -> None:
        outcome = content_events(
            content, self.transcript, audio_modality=self.config.modality == "AUDIO"
        )
        self.metrics.protocol_errors += outcome.protocol_errors
        for event in outcome.events:
            self._emit(event)
        if outcome.output:
            self.turns.output_arrived()
            self.resumption.output_seen()  # the server answers only after reading a seed
        if content.interrupted:
            self.turns.interrupted()
            self.transcript.commit_model()
            self._emit(ev.Interrupted())
        if content.generation_complete:
            # From here the server may wait for playback before turnComplete: a quiet
            # link is normal, so the watchdog stops watching.
            self.turns.generation_completed()
            self._emit(ev.GenerationComplete())
        if content.interaction_status is not None:
            self.turns.interaction_reported(content.interaction_status)
        if content.turn_complete:
            answered = self.turns.answering
            if answered is not None:
                self._forget_questions_up_to(answered)
            self.tools.turn_answered(answered, cut=self.turns.cut)  # without a tool call
            self.turns.turn_completed()
            self.resumption.turn_ended()  # the next handle will include this turn
            self._cancel_timer(Timer.REPLY)
            self.transcript.commit_model()
            self._emit(ev.TurnComplete(content.turn_complete_reason))
        self.restore.content(content, self._last_written)

    def _on_resumption_update(self, update: SessionResumptionUpdate) -> None:
        if not self.resumption.issued(update.new_handle, resumable=update.resumable):
            return
        self.tools.handle_issued()
        self.restore.handle_issued()
        self._confirm_delivery()
        self._save_handle()

    def _at_turn_boundary(self) -> bool:
        if self.phase is not Phase.CONNECTED or self.turns.busy or self.tools.open:
            return False
        if self.turns.interaction_in_progress:
            return False  # turnComplete is not idle on background-reasoning models
        # Wait for a handle that includes the last turn, or the resume would rewind it.
        return self.resumption.current or not self.config.session_resumption

    def _turn_handle_due(self) -> bool:
        """A turn ended and the resumable handle that includes it has not come yet."""
        return (
            self.config.session_resumption
            and not self.resumption.current
            and not self.turns.busy
            and not self.tools.open
        )

    def _accept(self, item: Outgoing) -> SendResult:
        if self.phase in (Phase.CLOSED, Phase.CLOSING):
            self.metrics.messages_dropped += 1
            return SendResult("dropped", item.seq, "the session is closed")
        item, refused = screen(item, self.tools, self.outbox)  # too large, no open call
        if refused is not None:
            self.metrics.messages_dropped += 1
            self.metrics.audio_ms_dropped += item.audio_ms
            return SendResult("dropped", item.seq, refused)
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
