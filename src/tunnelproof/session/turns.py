"""The turn tracker: where the conversation is, one turn at a time.

It answers the questions the machine asks of a turn (is a reply owed, is output flowing,
is this a turn boundary, which sends could a handle issued now not hold) from what
happened, told through methods named after it: :meth:`TurnTracker.sent`,
:meth:`~TurnTracker.output_arrived`, :meth:`~TurnTracker.turn_completed`, ...

Sends are tracked by sequence number. Today only the sends since the oldest unanswered
one matter (a resumable handle issued before any output cannot hold them: the server marks
itself not resumable while it generates, so it issued that handle before reading them).
Turns are FIFO, so the list is also the start of a map from client sequence numbers to the
server turns that answer them.
"""

from __future__ import annotations


class TurnTracker:
    """The state of the model turn and of the replies owed."""

    __slots__ = ("_awaiting", "generating", "interaction_in_progress", "reply_due", "streaming")

    def __init__(self) -> None:
        self.generating = False
        """A model turn is in progress (until ``turnComplete`` or ``interrupted``)."""
        self.streaming = False
        """Model output is flowing (until ``generationComplete``)."""
        self.reply_due = False
        """The app sent something that asks for an answer and none has started yet."""
        self.interaction_in_progress = False
        """The server said ``interactionStatus: IN_PROGRESS`` and not yet ``IDLE``."""
        # Sends since (and including) the oldest one whose reply is due, oldest first;
        # None while no reply is due.
        self._awaiting: list[int] | None = None

    # -- questions -------------------------------------------------------------------------

    @property
    def owed(self) -> bool:
        """Something is owed by the server: a reply, or the rest of flowing output.

        While true, any server message proves the link alive, and silence is suspicious.
        """
        return self.reply_due or self.streaming

    @property
    def busy(self) -> bool:
        """Not at a turn boundary: a turn runs or its reply is due."""
        return self.generating or self.reply_due

    @property
    def awaiting_answer(self) -> tuple[int, ...]:
        """Sends a handle issued now cannot hold: the unanswered one and all after it."""
        return tuple(self._awaiting) if self._awaiting is not None else ()

    # -- what happened -----------------------------------------------------------------------

    def sent(self, seq: int, *, expects_reply: bool) -> None:
        """Message ``seq`` went out on the live connection."""
        if expects_reply:
            self.reply_due = True
            if self._awaiting is None:
                self._awaiting = []
        if self._awaiting is not None:
            self._awaiting.append(seq)

    def output_arrived(self) -> None:
        """Model text, audio or transcription arrived: the owed reply has started."""
        self.generating = True
        self.streaming = True
        self._answered()

    def tool_call_arrived(self) -> None:
        """The model asked for a tool: it answered, and now waits for the app."""
        self.streaming = False
        self._answered()

    def generation_completed(self) -> None:
        """``generationComplete``: output stops; the server may wait for playback."""
        self.streaming = False

    def interrupted(self) -> None:
        """``interrupted``: the user spoke over the model; the turn ends."""
        self.generating = False
        self.streaming = False

    def turn_completed(self) -> None:
        """``turnComplete``: the turn is over and nothing is owed."""
        self.generating = False
        self.streaming = False
        self._answered()

    def interaction_reported(self, status: str) -> None:
        """``interactionStatus``: background work goes on (``IN_PROGRESS``) or is over."""
        self.interaction_in_progress = status == "IN_PROGRESS"

    def connection_lost(self) -> bool:
        """The connection is gone; returns whether a reply was owed or cut off."""
        lost = self.busy
        self.generating = False
        self.streaming = False
        self.interaction_in_progress = False
        self._answered()
        return lost

    def _answered(self) -> None:
        self.reply_due = False
        self._awaiting = None
