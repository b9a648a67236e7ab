"""The turn tracker: which server turn answers which client message (FIFO).

It answers the questions the machine asks of a turn (is a reply owed, is output flowing,
is this a turn boundary, which sends could a handle issued now not hold, which question
was cut off) from what happened, told through methods named after it:
:meth:`TurnTracker.sent`, :meth:`~TurnTracker.output_arrived`,
:meth:`~TurnTracker.turn_completed`, ...

The model of the conversation (client contract 3):

* every send has a sequence number; a send that asks for an answer (user text, a
  ``clientContent`` with ``turnComplete``, a tool response, the end of an utterance) is a
  *question*;
* the server answers questions in the order it reads them, one turn each (FIFO). The
  first output of a new turn answers the oldest unanswered question, so that question and
  every send before it are *read* (TCP keeps order). Output that continues a turn answers
  nothing new: a follow-up asked while an answer is still arriving is answered by the
  *next* turn, and a resumable handle that comes with the current one does not hold it;
* a turn cut by ``interrupted`` before any output still consumed its question (the server
  read the question that interrupted it, and that one is answered next).

Audio has no question of its own (the server decides where an utterance ends): a turn
that starts with no question pending counts everything sent before it as read. That is
the best the wire allows without ``lastConsumedClientMessageIndex`` (Vertex only).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LostTurn:
    """What a lost connection cut: the question being answered and those still waiting."""

    cut: int | None  # the question whose answer was cut off (its seq), if any
    waiting: tuple[int, ...]  # questions sent and not answered yet, oldest first
    owed: bool  # a reply was owed or in progress


class TurnTracker:
    """The model turn, the questions owed an answer, and what the server has read."""

    __slots__ = (
        "_answering",
        "_in_turn",
        "_questions",
        "_unread",
        "generating",
        "interaction_in_progress",
        "streaming",
    )

    def __init__(self) -> None:
        self.generating = False
        """A model turn is in progress (until ``turnComplete`` or ``interrupted``)."""
        self.streaming = False
        """Model output is flowing (until ``generationComplete``)."""
        self.interaction_in_progress = False
        """The server said ``interactionStatus: IN_PROGRESS`` and not yet ``IDLE``."""
        # Sends not yet known to be read by the server, oldest first: (seq, is_question).
        self._unread: deque[tuple[int, bool]] = deque()
        # How many of ``_unread`` are questions: ``reply_due`` is asked on every frame, and
        # ``_unread`` grows by one per 20 ms audio chunk through a long answer (a scan of it
        # was 43% of a streaming client's CPU).
        self._questions = 0
        self._answering: int | None = None  # the question the current turn answers
        self._in_turn = False  # a server turn started and its turnComplete has not come

    # -- questions -------------------------------------------------------------------------

    @property
    def reply_due(self) -> bool:
        """A question was sent and its answer has not started yet."""
        return self._questions > 0

    @property
    def owed(self) -> bool:
        """Something is owed by the server: a reply, or the rest of flowing output.

        While true, any server message proves the link alive, and silence is suspicious
        (but never proof: the machine then checks the link).
        """
        return self.reply_due or self.streaming

    @property
    def busy(self) -> bool:
        """Not at a turn boundary: a turn runs or a reply is due."""
        return self.generating or self.reply_due

    @property
    def awaiting_answer(self) -> tuple[int, ...]:
        """Sends a handle issued now cannot hold: the oldest unanswered question and all
        after it (a handle comes with the turn answering an earlier question)."""
        if not self._questions:
            return ()
        for index, (_, question) in enumerate(self._unread):
            if question:
                return tuple(seq for seq, _ in list(self._unread)[index:])
        return ()

    @property
    def answering(self) -> int | None:
        """The question the turn in progress answers (until it completes)."""
        return self._answering

    # -- what happened -----------------------------------------------------------------------

    def sent(self, seq: int, *, expects_reply: bool) -> None:
        """Message ``seq`` went out on the live connection."""
        if expects_reply:
            self._questions += 1
        elif not self._questions:
            # With no question before it, a send is read by the next turn's start and is
            # never among ``awaiting_answer``: nothing asks about it, so it is not kept
            # (audio streams 50 chunks a second through a long answer).
            return
        self._unread.append((seq, expects_reply))

    def output_arrived(self) -> None:
        """Model text, audio or transcription arrived."""
        if not self._in_turn:
            self._turn_started()
        self.generating = True
        self.streaming = True

    def tool_call_arrived(self) -> None:
        """The model asked for a tool: that answers a question, and the model now waits
        for the app (its tool response is the next question, answered by a new turn)."""
        if not self._in_turn:
            self._turn_started()
        self._end_turn()

    def generation_completed(self) -> None:
        """``generationComplete``: output stops; the server may wait for playback."""
        self.streaming = False

    def interrupted(self) -> None:
        """``interrupted``: the server read something that cut the turn short (its
        ``turnComplete`` follows)."""
        if not self._in_turn:
            self._turn_started()  # a turn cut before any output still read its question
        self.generating = False
        self.streaming = False

    def turn_completed(self) -> None:
        """``turnComplete``: the turn is over."""
        self._end_turn()

    def interaction_reported(self, status: str) -> None:
        """``interactionStatus``: background work goes on (``IN_PROGRESS``) or is over."""
        self.interaction_in_progress = status == "IN_PROGRESS"

    def connection_lost(self) -> LostTurn:
        """The connection is gone: what was cut, and what was still waiting."""
        waiting = tuple(seq for seq, question in self._unread if question)
        lost = LostTurn(
            cut=self._answering if self.generating else None,
            waiting=waiting,
            owed=self.busy,
        )
        self._end_turn()
        self.interaction_in_progress = False
        self._unread.clear()
        self._questions = 0
        return lost

    def _turn_started(self) -> None:
        """A new turn: it answers the oldest unanswered question (FIFO)."""
        self._in_turn = True
        self._answering = None
        while self._unread:
            seq, question = self._unread.popleft()
            if question:
                self._questions -= 1
                self._answering = seq
                return
        # No question pending (audio, proactive output): everything sent counts as read.

    def _end_turn(self) -> None:
        self._in_turn = False
        self.generating = False
        self.streaming = False
        self._answering = None
