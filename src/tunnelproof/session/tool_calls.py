"""Tool calls the session knows about: open, unconfirmed by a handle, and cancelled.

A tool call issued after the newest resumable handle is not in the state a resume
restores; the machine cancels it then (``Rewound``), and answers to a cancelled call are
refused rather than sent into a session that never made the call.

Any other answer to a call that is not open is refused at the app's call too
(:meth:`ToolCalls.refusal`): Google closes the connection 1007 on a ``toolResponse`` whose id
it has no open call for (never made, answered already, or withdrawn by a
``toolCallCancellation``), and that close fails the whole session.
"""

from __future__ import annotations

from collections.abc import Collection

# Cancelled ids are remembered to refuse late answers; bounded for very long sessions.
_MAX_CANCELLED = 4096
_KEEP_CANCELLED = 2048


class ToolCalls:
    """Open, since-the-handle and cancelled tool-call ids."""

    __slots__ = (
        "_cancelled",
        "_pending_for",
        "_question",
        "_settled",
        "_since_handle",
        "open",
        "reissue_pending",
    )

    def __init__(self) -> None:
        self.open: set[str] = set()
        """Calls the model made and the app has not answered (or that were not cancelled)."""
        self._since_handle: list[str] = []
        self._cancelled: set[str] = set()
        self.reissue_pending: tuple[str, ...] = ()
        """Calls cancelled by the last reconnect; the next tool call re-issues them."""
        self._question: dict[str, int | None] = {}  # open call id -> question it answers
        self._pending_for: int | None = None  # the oldest question of reissue_pending
        self._settled: dict[str, str] = {}  # closed call id -> why (for the refusal reason)

    @property
    def since_handle(self) -> tuple[str, ...]:
        """Calls made after the newest resumable handle (a resume would lose them)."""
        return tuple(self._since_handle)

    def cancelled_among(self, ids: tuple[str, ...]) -> set[str]:
        """Which of ``ids`` were cancelled by a reconnect."""
        return self._cancelled.intersection(ids)

    def called(self, ids: list[str], question: int | None = None) -> None:
        """The model asked for these calls (answering client message ``question``)."""
        self.open.update(ids)
        self._since_handle.extend(ids)
        for call_id in ids:
            self._question[call_id] = question
        if len(self._question) > _MAX_CANCELLED:  # bounded: old calls are long settled
            for old in list(self._question)[:-_KEEP_CANCELLED]:
                del self._question[old]

    def turn_answered(self, question: int | None, *, cut: bool = False) -> None:
        """A model turn (answering ``question``, if known) completed without a tool call.

        It ends a pending re-issue (the model answered without calling the tool again),
        unless it was ``cut`` short or answers a question older than the cancelled calls'
        one: the replayed messages' turns before the re-issued call (each cut by the next)
        must not take its ``reissued`` flag away.
        """
        if not self.reissue_pending or cut:
            return
        pending = self._pending_for
        if question is None or pending is None or question >= pending:
            self.reissue_pending, self._pending_for = (), None

    def answered(self, ids: tuple[str, ...]) -> None:
        """The app's answers to ``ids`` went out."""
        self.open -= set(ids)
        self._settle(ids, "it was answered already")

    def withdrawn(self, ids: tuple[str, ...]) -> None:
        """The server cancelled these calls (``toolCallCancellation``)."""
        self.open -= set(ids)
        self._settle(ids, "the server withdrew it with toolCallCancellation")

    def _settle(self, ids: tuple[str, ...], why: str) -> None:
        for call_id in ids:
            self._settled.setdefault(call_id, why)  # the first reason stands
        if len(self._settled) > _MAX_CANCELLED:  # bounded like the cancelled ids
            for old in list(self._settled)[:-_KEEP_CANCELLED]:
                del self._settled[old]

    def refusal(self, ids: tuple[str, ...], responses: int, queued: Collection[str]) -> str | None:
        """Why an answer to ``ids`` (``responses`` function responses) must not go out.

        ``None`` if it may: every id is an open call, or one a reconnect cancelled (the
        caller strips those, see :meth:`cancelled_among`). ``queued`` holds the ids already
        answered by a message still waiting in the outbox. Open calls survive a resume
        from a handle that holds them, so answers to a previous connection's calls pass.
        """
        if not ids or len(ids) != responses:
            return "a toolResponse answers one or more tool calls, each by its toolCall's id"
        seen: set[str] = set()
        for call_id in ids:
            if call_id in seen:
                return f"it answers tool call {call_id!r} twice"
            seen.add(call_id)
            if call_id in queued:
                return f"tool call {call_id!r} is answered already (by a queued message)"
            if call_id not in self.open and call_id not in self._cancelled:
                why = self._settled.get(call_id, "the model never made it")
                return f"no open tool call {call_id!r}: {why}"
        return None

    def handle_issued(self) -> None:
        """A resumable handle arrived: the calls so far are in its state."""
        self._since_handle.clear()

    def connection_settled(self) -> None:
        """The lost connection's calls since the handle were cancelled; start a new count."""
        self._since_handle.clear()

    def reissued(self) -> tuple[str, ...]:
        """A tool call arrived: the cancelled calls it re-issues (and forget them)."""
        ids, self.reissue_pending = self.reissue_pending, ()
        self._pending_for = None
        return ids

    def cancel(self, ids: set[str]) -> None:
        """These calls are gone with the server state that made them."""
        self.open -= ids
        self._cancelled |= ids
        self.reissue_pending = tuple(dict.fromkeys([*self.reissue_pending, *sorted(ids)]))[-64:]
        asked = [q for i in ids if (q := self._question.get(i)) is not None]
        if asked:
            earliest = min(asked)
            known = self._pending_for
            self._pending_for = earliest if known is None else min(earliest, known)
        if len(self._cancelled) > _MAX_CANCELLED:
            self._cancelled = set(list(self._cancelled)[-_KEEP_CANCELLED:])
