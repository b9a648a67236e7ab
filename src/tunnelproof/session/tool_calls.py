"""Tool calls the session knows about: open, unconfirmed by a handle, and cancelled.

A tool call issued after the newest resumable handle is not in the state a resume
restores; the machine cancels it then (``Rewound``), and answers to a cancelled call are
refused rather than sent into a session that never made the call.
"""

from __future__ import annotations

# Cancelled ids are remembered to refuse late answers; bounded for very long sessions.
_MAX_CANCELLED = 4096
_KEEP_CANCELLED = 2048


class ToolCalls:
    """Open, since-the-handle and cancelled tool-call ids."""

    __slots__ = ("_cancelled", "_since_handle", "open", "reissue_pending")

    def __init__(self) -> None:
        self.open: set[str] = set()
        """Calls the model made and the app has not answered (or that were not cancelled)."""
        self._since_handle: list[str] = []
        self._cancelled: set[str] = set()
        self.reissue_pending: tuple[str, ...] = ()
        """Calls cancelled by the last reconnect; the next tool call re-issues them."""

    @property
    def since_handle(self) -> tuple[str, ...]:
        """Calls made after the newest resumable handle (a resume would lose them)."""
        return tuple(self._since_handle)

    def cancelled_among(self, ids: tuple[str, ...]) -> set[str]:
        """Which of ``ids`` were cancelled by a reconnect."""
        return self._cancelled.intersection(ids)

    def called(self, ids: list[str]) -> None:
        """The model asked for these calls."""
        self.open.update(ids)
        self._since_handle.extend(ids)

    def answered(self, ids: tuple[str, ...]) -> None:
        """The app's answers to ``ids`` went out."""
        self.open -= set(ids)

    def withdrawn(self, ids: tuple[str, ...]) -> None:
        """The server cancelled these calls (``toolCallCancellation``)."""
        self.open -= set(ids)

    def handle_issued(self) -> None:
        """A resumable handle arrived: the calls so far are in its state."""
        self._since_handle.clear()

    def connection_settled(self) -> None:
        """The lost connection's calls since the handle were cancelled; start a new count."""
        self._since_handle.clear()

    def reissued(self) -> tuple[str, ...]:
        """A tool call arrived: the cancelled calls it re-issues (and forget them)."""
        ids, self.reissue_pending = self.reissue_pending, ()
        return ids

    def cancel(self, ids: set[str]) -> None:
        """These calls are gone with the server state that made them."""
        self.open -= ids
        self._cancelled |= ids
        self.reissue_pending = tuple(dict.fromkeys([*self.reissue_pending, *sorted(ids)]))[-64:]
        if len(self._cancelled) > _MAX_CANCELLED:
            self._cancelled = set(list(self._cancelled)[-_KEEP_CANCELLED:])
