"""Turns the app got complete that the handle does not hold yet: restored, never asked again.

Google sends the resumable handle that holds a turn some 20-70 ms after ``turnComplete``
(reference section 10). A link that drops inside that window resumes from the older
handle, whose state lacks the finished turn; replaying the sends that turn read would make
the model answer them a second time (the user hears the answer twice). Instead the session
restores the turn as history: the user's side (the text sent, or the input transcription
of their speech) and the model's answer (its text, or the output transcription of its
audio) go to the resumed session in one ``clientContent`` with ``turnComplete: false``,
which the server appends to the history without answering (the reference's own
``clientContent`` example, section 3.2, carries a ``model`` turn so).

:class:`TurnRestore` records, from the server content, each turn completed since the
newest resumable handle: the newest send it read, what the user said in it, what the model
said. When the link drops, :meth:`TurnRestore.connection_lost` takes the
sends those turns read out of the replay record and puts one restore message in their
place, numbered with the newest of them; the others are *covered* by it (they end
``Delivered`` with it, or ``SendDropped`` with it: :meth:`TurnRestore.covered`).

What cannot be restored is said, never hidden (``TurnsRestored.missing``): speech with no
input transcription, an answer with no text, video, and the structure of tool calls (only
the answer's text is restored: no ``functionCall`` part in ``clientContent`` is in the
reference). When nothing of the turns is known as text, their sends are replayed as before
and the event says so (``reasked``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tunnelproof.protocol.casing import get_field
from tunnelproof.protocol.client_messages import Role, Turn
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.server_messages import ServerContent
from tunnelproof.session import app_events as ev
from tunnelproof.session.outbox import Outbox
from tunnelproof.session.outgoing import ClientMessage, MessageKind, Outgoing
from tunnelproof.session.resumption import ResumptionState
from tunnelproof.session.turns import TurnTracker

MAX_TURNS = 32
"""Completed turns kept while no handle comes (a server that never sends one)."""
MAX_TEXT = 64 * 1024
"""Characters kept of one turn's user or model text (the transcript keeps 128 KiB)."""
MAX_COVERS = 256
"""Restore messages whose covered sends are remembered (older ones were settled)."""


@dataclass(slots=True)
class _Completed:
    """One turn the app got complete: the newest send it read and what was said."""

    upto: int | None
    heard: str
    said: str
    cut: bool  # ended by ``interrupted``: an answer cut before any word says nothing


@dataclass(slots=True)
class _Said:
    """Text of the turn in progress, bounded."""

    parts: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, text: str) -> None:
        if self.size < MAX_TEXT:
            self.parts.append(text)
            self.size += len(text)

    def take(self) -> str:
        text = "".join(self.parts).strip()[:MAX_TEXT]
        self.parts, self.size = [], 0
        return text


class TurnRestore:
    """Completed turns since the newest resumable handle, and the restores made of them."""

    __slots__ = (
        "_audio",
        "_covers",
        "_cut",
        "_done",
        "_enabled",
        "_heard",
        "_said",
        "_turns",
    )

    def __init__(self, turns: TurnTracker, config: LiveConfig) -> None:
        self._turns = turns
        self._audio = config.modality == "AUDIO"  # the output transcription is its words
        self._enabled = config.session_resumption  # without it a drop starts a fresh session
        self._done: list[_Completed] = []
        self._heard = _Said()
        self._said = _Said()
        self._cut = False
        self._covers: dict[int, tuple[int, ...]] = {}

    # -- what happened -------------------------------------------------------------------

    def content(self, content: ServerContent, last_written: int | None) -> None:
        """A ``serverContent`` was handled (after the turn tracker saw it)."""
        if not self._enabled:
            return
        if content.input_transcription is not None:
            self._heard.add(content.input_transcription.text)
        for part in content.parts:  # as the transcript records it (content.py)
            if part.text is not None and not part.thought:
                self._said.add(part.text)
        if self._audio and content.output_transcription is not None:
            self._said.add(content.output_transcription.text)
        self._cut = self._cut or content.interrupted
        if content.turn_complete:
            # Everything before the oldest send no turn has read was read by this turn.
            first = self._turns.unheld_from
            upto = first - 1 if first is not None else last_written
            heard, said = self._heard.take(), self._said.take()
            self._done.append(_Completed(upto, heard, said, self._cut))
            self._cut = False
            del self._done[:-MAX_TURNS]

    def handle_issued(self) -> None:
        """A resumable handle: it holds every turn completed before it."""
        self._done.clear()

    def covered(self, seqs: list[int] | tuple[int, ...]) -> list[int]:
        """The sends covered by the restore messages among ``seqs`` (each told once)."""
        if not self._covers:
            return []
        return [s for seq in seqs for s in self._covers.pop(seq, ())]

    def connection_lost(
        self, outbox: Outbox, now: float, resumption: ResumptionState
    ) -> tuple[ev.TurnsRestored | None, frozenset[str]]:
        """The link dropped: restore the turns the newest handle lacks, in ``outbox``.

        Returns the event for the app (``None`` when no completed turn is unheld) and the
        tool calls the restored sends answer (settled: not to be cancelled; a call still
        open, or answered by a send that is replayed, is cancelled as before). Must
        run before the outbox's unconfirmed sends are put back for replay. Only for a
        resume: a fresh session is re-seeded from the transcript, which holds these turns.
        """
        done, self._done = self._done, []
        self._heard.take()
        self._said.take()
        self._cut = False
        upto = max((t.upto for t in done if t.upto is not None), default=None)
        if upto is None or not resumption.will_resume:
            return None, frozenset()
        read = sorted((i for i in outbox.unconfirmed if i.seq <= upto), key=lambda i: i.seq)
        if not read:
            return None, frozenset()  # a handle holds what they read: nothing is replayed
        turns, missing = _history(done, read)
        if not turns:  # nothing known as text: replayed (answered again, if it was: said so)
            told = any(t.said or not t.cut for t in done)
            event = ev.TurnsRestored(len(done), (), tuple(missing), reasked=True) if told else None
            return event, frozenset()
        taken = {id(i) for i in read}
        outbox.remove_where(lambda i: id(i) in taken)
        earlier = outbox.take_unverified(before=upto + 1)  # audio beyond the replay window
        seqs = sorted({*(i.seq for i in read), *(a.seq for a in earlier)})
        restore = Outgoing.of(read[-1].seq, ClientMessage.content(turns, turn_complete=False), now)
        restore.was_sent = True  # the same sends again, in another form: a replay
        outbox.unconfirmed.appendleft(restore)  # in front: older than anything left
        self._covers[restore.seq] = tuple(s for s in seqs if s != restore.seq)
        if len(self._covers) > MAX_COVERS:
            del self._covers[min(self._covers)]
        calls = frozenset(c for i in read for c in i.tool_ids)
        return ev.TurnsRestored(len(done), tuple(seqs), tuple(missing)), calls


def _history(done: list[_Completed], read: list[Outgoing]) -> tuple[list[Turn], list[str]]:
    """The restore's turns, in the order they were said, and what is missing."""
    turns: list[Turn] = []
    missing: list[str] = []

    def say(role: Role, text: str) -> None:
        if text:
            turns.append(Turn(role, text))

    low = -1
    for turn in done:
        high = turn.upto if turn.upto is not None else low
        mine = [i for i in read if low < i.seq <= high]
        low = max(low, high)
        for item in mine:
            for t in item.turns:  # text sent, or an earlier restore (both roles)
                say(t.role, t.text)
        spoke = any(i.kind is MessageKind.AUDIO for i in mine)
        if turn.heard:
            say("user", turn.heard)
        elif spoke:
            missing.append("what the user said (speech without input transcription)")
        if any(i.kind is MessageKind.REALTIME and _is_video(i) for i in mine):
            missing.append("video (only text is restored)")
        if turn.said:
            say("model", turn.said)
        elif not turn.cut:  # a turn cut before any word said nothing; this one said it aloud
            missing.append("the model's answer (no text: turn on output transcription)")
        calls = [c for i in mine for c in i.tool_ids]
        if calls:
            missing.append(f"tool calls {', '.join(calls)} (only the answer's text is restored)")
    return turns, list(dict.fromkeys(missing))


def _is_video(item: Outgoing) -> bool:
    body = next(iter(item.message.body.values()), None)
    return isinstance(body, Mapping) and get_field(body, "video") is not None
