"""How failures are routed to a retry decision (client contract 5), phase-free.

:class:`FailureRouting` sits between
:class:`~tunnelproof.session.bookkeeping.SessionBookkeeping` and
:class:`~tunnelproof.session.machine.SessionMachine`: it turns a failure (a server error,
a gone network, an abrupt drop, a dead link, a finished handover) into a decision of the
:class:`~tunnelproof.session.retry_budget.RetryBudget` and hands it to the machine's
``_retry_or_give_up``, which makes the phase change.
"""

from __future__ import annotations

from tunnelproof.protocol.close_codes import CloseClass, CloseVerdict
from tunnelproof.session.actions import CheckLink
from tunnelproof.session.bookkeeping import SessionBookkeeping
from tunnelproof.session.events import LinkChecked, TokenFailure
from tunnelproof.session.phases import Phase
from tunnelproof.session.retry_budget import GiveUp, Retry
from tunnelproof.session.timers import Timer


def unusable_credential_verdict(problem: str) -> CloseVerdict:
    """The verdict for a credential the machine cannot even turn into an endpoint."""
    return CloseVerdict(
        CloseClass.FATAL_CONFIG,
        None,
        problem,
        "The token source returned an unusable credential; fix it, then resume().",
    )


def token_failure_verdict(kind: TokenFailure, message: str) -> CloseVerdict | None:
    """The fatal verdict of a token-source failure, or ``None`` when it is retried."""
    if kind is TokenFailure.AUTH:
        return CloseVerdict(
            CloseClass.FATAL_AUTH,
            None,
            message,
            "The token source refused to issue a token (HTTP 401/403): the user "
            "must sign in again, then call resume().",
        )
    if kind is TokenFailure.CONFIG:
        return CloseVerdict(
            CloseClass.FATAL_CONFIG,
            None,
            message,
            "The token source is misconfigured (URL, key or settings); fix it, then call resume().",
        )
    return None


class FailureRouting(SessionBookkeeping):
    """Failure kinds to retry decisions (see the module docstring)."""

    def _retry_or_give_up(self, decision: Retry | GiveUp, reason: str) -> None:
        raise NotImplementedError  # SessionMachine: the phase change

    def _after_drop(self, reason: str, served: float) -> None:
        """An abrupt drop (no close frame, a reset, a dead link found by a watchdog)."""
        decision = self.retry.after_drop(reason, served, self._now, self.rng)
        if isinstance(decision, Retry) and decision.delay == 0.0:
            self.metrics.immediate_reconnects += 1
        else:
            self.metrics.server_failures += 1
        self._retry_or_give_up(decision, reason)

    def _dead_link(self, reason: str) -> None:
        """A watchdog found the link dead: abort it and reconnect as after a drop."""
        self.metrics.dead_links_detected += 1
        served = self._served()
        self._abort("dead link")
        self._connection_gone(None, reason, planned=False)
        self._after_drop(reason, served)

    def _handover_done(self, reason: str, served: float | None = None) -> None:
        """Reconnect after a handover: at once within the budget, then backed off.

        ``served``: the server closed a connection that served this long after its goAway;
        that counts against the budget like our own handover, so a server that closes at
        once after every goAway drives no hot loop either."""
        if served is not None:
            self.retry.handed_over(served)
        self._retry_or_give_up(self.retry.after_handover(self.rng), reason)

    def _server_failure(self, reason: str, *, retry_after: float | None = None) -> None:
        if retry_after is not None and retry_after > 0 and self.policy.shed_is_wait:
            # A shed answer (429/503 with Retry-After): a wait, not a failure against
            # the caps, so a herd is served in turn instead of giving up.
            self.metrics.shed_waits += 1
            self._retry_or_give_up(self.retry.after_shed(retry_after, self.rng), reason)
            return
        self.metrics.server_failures += 1
        decision = self.retry.after_server_failure(reason, self.rng, retry_after)
        self._retry_or_give_up(decision, reason)

    def _offline_failure(self, reason: str) -> None:
        self.metrics.offline_failures += 1
        if not self.policy.probe_offline:
            self._server_failure(reason)  # the seed's policy: one backoff for both kinds
            return
        decision = self.retry.after_offline_failure(reason, self._now, self.rng)
        self._retry_or_give_up(decision, reason)

    def _on_link_checked(self, event: LinkChecked) -> None:
        if (
            event.attempt != self._attempt
            or self.phase is not Phase.CONNECTED
            or Timer.LINK not in self.timers
        ):
            return  # an answer for an old socket, or the link already proved itself
        if not event.alive:
            self._dead_link(f"dead link: {event.detail}")
            return
        self._cancel_timer(Timer.LINK)
        if self.turns.owed:
            self._set_timer(Timer.REPLY, self.watchdogs.reply_timeout)

    def _watch_reply(self) -> None:
        """After a message: while something is owed, any message proves the link alive and
        silence is suspicious (the reply watchdog restarts); with nothing owed it stops."""
        if self.phase is Phase.CONNECTED:
            if self.turns.owed:
                self._set_timer(Timer.REPLY, self.watchdogs.reply_timeout)
            else:
                self._cancel_timer(Timer.REPLY)

    def _check_link(self) -> None:
        """A reply is overdue: silence is not evidence (a model may think for minutes), so
        ask the driver for some (the kernel's view, a ping's pong) within a deadline."""
        self.metrics.link_checks += 1
        self._out.append(CheckLink(self._attempt))
        self._set_timer(Timer.LINK, self.watchdogs.link_check_timeout)

    def _prefetch_again(self, retry_after: float | None) -> None:
        """A goAway prefetch failed: fetch again while the connection lasts, so the
        handover still has its token in hand (the deadline timer hands over regardless)."""
        if retry_after is not None and retry_after > 0:
            delay = self.policy.shed_delay(retry_after, self.rng)
        else:
            delay = min(1.0, self.policy.server_delay(0, self.rng))
        self._set_timer(Timer.PREFETCH, delay)
