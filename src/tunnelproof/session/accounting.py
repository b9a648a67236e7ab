"""Delivery accounting: every send ends delivered, replayed, or reported (contract 3).

:class:`DeliveryAccounting` is a base of
:class:`~tunnelproof.session.bookkeeping.SessionBookkeeping`: the work that turns the
outbox's and the turn tracker's facts into ``Delivered`` and ``SendDropped`` events. It
decides nothing about phases (those are all in ``machine.py``).
"""

from __future__ import annotations

from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import Action, Emit
from tunnelproof.session.metrics import SessionMetrics
from tunnelproof.session.outbox import AudioDropLedger, Outbox
from tunnelproof.session.outgoing import MessageKind, Outgoing
from tunnelproof.session.relay_link import RelayLink
from tunnelproof.session.restore import TurnRestore
from tunnelproof.session.tool_calls import ToolCalls
from tunnelproof.session.transcript import Transcript
from tunnelproof.session.turns import TurnTracker


class DeliveryAccounting:
    """Reports what happened to the app's sends (see the module docstring)."""

    outbox: Outbox
    transcript: Transcript
    metrics: SessionMetrics
    turns: TurnTracker
    tools: ToolCalls
    restore: TurnRestore
    _out: list[Action]
    _session_ready: bool
    _question_texts: dict[int, str]
    _audio_drops: AudioDropLedger
    _unwritten: set[int]
    _relay: RelayLink

    def _emit(self, event: ev.AppEvent) -> None:
        self._out.append(Emit(event))

    def _report_dropped(self, items: list[Outgoing], reason: str) -> None:
        if not items:
            return
        self.metrics.messages_dropped += len(items)
        audio = [i for i in items if i.kind is MessageKind.AUDIO]
        if audio:
            # Gathered and reported once per outage (or at the end of this call while
            # connected): one event with the total, not one per 20 ms chunk.
            ms = sum(i.audio_ms for i in audio)
            self.metrics.audio_ms_dropped += ms
            self._audio_drops.add((i.seq for i in audio), ms, reason)
        for item in items:
            if item.kind is MessageKind.AUDIO:
                continue
            if item.seq in self._unwritten:
                # Taken out of the transcript to be asked again, and never asked: gone.
                self._unwritten.discard(item.seq)
            elif item.was_sent:
                # Written once, so it is in the transcript; a fresh session re-seeded from
                # it would then hold a message the app was told is lost (and may resend).
                for turn in item.turns:
                    self.transcript.forget(turn.role, turn.text)
            # A restore message goes with the sends it covers (restore.py).
            seqs = (item.seq, *self.restore.covered((item.seq,)))
            self._emit(ev.SendDropped(seqs, item.kind.value, reason))

    def _report_audio_drops(self) -> None:
        """Emit the audio dropped since the last report as one ``SendDropped``."""
        taken = self._audio_drops.take()
        if taken is not None:
            seqs, ms, reason = taken
            self._emit(ev.SendDropped(seqs, "audio", reason, ms))

    def _report_at_end(self) -> None:
        """The session failed or closed: a held ``Rewound`` and the audio drops, now."""
        self._relay.release()
        self._report_audio_drops()

    def _settle_at_close(self) -> None:
        """The app closes the session: every send still unconfirmed gets its verdict.

        No resume will follow, so a handle is no longer needed as evidence: what the live
        connection carried and no answer was owed for counts as delivered; a question
        still waiting for its answer is reported dropped (it will never be answered).
        """
        if not self._session_ready:
            return  # nothing unconfirmed: a lost connection put it all back in pending
        awaiting = set(self.turns.awaiting_answer)
        unread = self.outbox.unconfirmed.select(awaiting)  # by seq: audio is rebuilt
        read = [seq for seq in self.outbox.unconfirmed.seqs if seq not in awaiting]
        read += self.restore.covered(read)
        earlier = [a.seq for a in self.outbox.take_unverified()]
        if read or earlier:
            self._emit(ev.Delivered(tuple(sorted([*earlier, *read]))))
        self.outbox.remove_where(lambda i: i.was_sent, among=awaiting)
        self._report_dropped(unread, "the session was closed before the server answered it")

    def _forget_questions_up_to(self, seq: int) -> None:
        for old in [s for s in self._question_texts if s <= seq]:
            del self._question_texts[old]

    def _confirm_delivery(self) -> None:
        """A resumable handle arrived: decide which sends its state holds, and say so.

        The one place delivery is decided. The handle holds everything sent before it,
        except the sends awaiting an answer (the oldest unanswered one and all after it):
        the server marks itself not resumable while it generates, so a handle issued
        before any output answering them was issued before it read them. Audio no turn
        has consumed is not held either (an unfinished utterance is not in the state).
        """
        first = self.turns.unheld_from
        sent = self.outbox.unconfirmed.seqs
        keep = 0 if first is None else sum(1 for seq in sent if seq >= first)
        confirmed = self.outbox.confirm(keep_last=keep)
        confirmed += self._history_past_unheard_audio(first)
        confirmed += self.restore.covered(confirmed)  # the sends a restore message stands for
        # Audio that left the replay window earlier was sent before these: held too,
        # unless no turn has consumed it yet.
        earlier = [a.seq for a in self.outbox.take_unverified(before=first)]
        if confirmed or earlier:
            self._emit(ev.Delivered(tuple(sorted([*earlier, *confirmed]))))

    def _history_past_unheard_audio(self, first: int | None) -> list[int]:
        """History (``clientContent`` asking no answer) sent after audio no turn consumed
        and before any unanswered question: the server appended it at once, so the handle
        holds it though the unfinished utterance before it is not (replaying it would put
        it in the history twice). Confirmed, out of order."""
        asked = self.turns.awaiting_answer[:1]
        if first is None or (asked and asked[0] <= first):
            return []
        limit = asked[0] if asked else None
        held = [
            item.seq
            for item in self.outbox.unconfirmed.others()
            if item.kind is MessageKind.CLIENT_CONTENT
            and not item.expects_reply
            and item.seq > first
            and (limit is None or item.seq < limit)
        ]
        if held:
            self.outbox.unconfirmed.discard(set(held))
        return held

    def _cancel_tool_calls(self, ids: set[str]) -> None:
        self.tools.cancel(ids)
        self._report_dropped(
            self.outbox.drop_tool_answers(ids),
            "answers a tool call the resumed session never saw",
        )

    def _reject_message(self, seq: int, described: str) -> None:
        """The server rejected message ``seq`` (closed 1007 after it): report, never replay."""
        rejected = self.outbox.remove_where(lambda i: True, among=(seq,))
        self._report_dropped(rejected, f"the server rejected it ({described})")
