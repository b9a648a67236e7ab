"""A fake world around ``SessionMachine``: clock, timers, token source and sockets.

Tests drive the machine through this harness instead of asyncio: time moves only when a
test calls :meth:`Harness.advance`, timers fire in order, and every action is recorded.
The harness also checks, after every step, the invariants that must hold whatever the
order of events (at most one live socket, outbox within bounds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from tunnelproof.protocol.config import LiveConfig
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
    Event,
    FrameReceived,
    OpenFailure,
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
from tunnelproof.session.machine import SessionMachine
from tunnelproof.session.outbox import OutboxLimits, SendResult
from tunnelproof.session.policy import DEFAULT_POLICY, DEFAULT_WATCHDOGS, RetryPolicy, Watchdogs

T0 = 1000.0
WALL0 = 1_800_000_000.0


def frame(**message: Any) -> bytes:
    """A server frame as Google sends it: UTF-8 JSON in a binary frame."""
    return orjson.dumps(message)


@dataclass
class Harness:
    config: LiveConfig = field(default_factory=lambda: LiveConfig(model="gemini-3.8-live"))
    policy: RetryPolicy = DEFAULT_POLICY
    watchdogs: Watchdogs = DEFAULT_WATCHDOGS
    limits: OutboxLimits = field(default_factory=OutboxLimits)
    seed: int = 0
    token_window: float = 60.0

    def __post_init__(self) -> None:
        self.m = SessionMachine(
            self.config,
            policy=self.policy,
            watchdogs=self.watchdogs,
            limits=self.limits,
            rng=random.Random(self.seed),
        )
        self.now = T0
        self.wall = WALL0
        self.log: list[Action] = []
        self.events: list[ev.AppEvent] = []
        self.timers: dict[str, tuple[int, float]] = {}
        self.live_sockets: set[int] = set()
        self.max_live_sockets = 0
        self.token_requests: list[FetchToken] = []
        self.answered_requests: set[int] = set()
        self.tokens_issued = 0
        self.spent_secrets: set[str] = set()
        self.secret_by_attempt: dict[int, str] = {}
        self.opens: list[OpenSocket] = []
        self.saved: list[StoredSession] = []
        self.deleted = 0

    # -- plumbing ------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        actions = self.m.handle(event, now=self.now, wall=self.wall)
        self._apply(actions)
        if isinstance(event, SocketOpened) and event.attempt in self.secret_by_attempt:
            self.spent_secrets.add(self.secret_by_attempt[event.attempt])
        return actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            self.log.append(action)
            match action:
                case SetTimer(name=name, serial=serial, at=at):
                    self.timers[name] = (serial, at)
                case CancelTimer(name=name):
                    self.timers.pop(name, None)
                case Emit(event=event):
                    self.events.append(event)
                case OpenSocket():
                    secret = _secret_of(action)
                    assert secret not in self.spent_secrets, "token reused after handshake"
                    self.secret_by_attempt[action.attempt] = secret
                    self.live_sockets.add(action.attempt)
                    self.opens.append(action)
                case AbortSocket(attempt=attempt):
                    self.live_sockets.discard(attempt)
                case FetchToken():
                    self.token_requests.append(action)
                case CancelTokenFetch(request=request):
                    self.answered_requests.add(request)
                case SaveHandle(session=session):
                    self.saved.append(session)
                case DeleteHandle():
                    self.deleted += 1
                case SendFrame() | CloseSocket():
                    pass
            self.max_live_sockets = max(self.max_live_sockets, len(self.live_sockets))
        assert len(self.live_sockets) <= 1, f"two sockets at once: {self.live_sockets}"
        assert self.m.outbox.within_bounds()

    def send(self, message: dict[str, Any]) -> SendResult:
        result, actions = self.m.send(message, now=self.now, wall=self.wall)
        self._apply(actions)
        return result

    def advance(self, seconds: float, *, max_fires: int = 10_000) -> None:
        """Move time forward, firing due timers in order."""
        end = self.now + seconds
        for _ in range(max_fires):
            due = [(at, name, serial) for name, (serial, at) in self.timers.items() if at <= end]
            if not due:
                break
            at, name, serial = min(due)
            self.now = max(self.now, at)
            self.wall = WALL0 + (self.now - T0)
            del self.timers[name]
            self.feed(TimerFired(name, serial))
        else:  # pragma: no cover
            raise AssertionError("timer storm")
        self.now = end
        self.wall = WALL0 + (self.now - T0)

    def fire(self, name: str) -> None:
        """Advance exactly to timer ``name`` and fire it (and anything due before it)."""
        assert name in self.timers, f"timer {name} not set: {sorted(self.timers)}"
        self.advance(self.timers[name][1] - self.now)

    def retry(self) -> None:
        """Let the backoff/probe timer run out (and nothing after it)."""
        self.fire("retry")

    # -- the fake outside world ------------------------------------------------------------

    @property
    def attempt(self) -> int:
        return self.m.attempt

    def pending_request(self) -> FetchToken | None:
        for request in reversed(self.token_requests):
            if request.request not in self.answered_requests:
                return request
        return None

    def credential(self) -> Credential:
        self.tokens_issued += 1
        return Credential(
            kind="ephemeral_token",
            secret=f"auth_tokens/t{self.tokens_issued}",
            ws_base="ws://127.0.0.1:9",
            expires_at=self.wall + 1800,
            new_session_expires_at=self.wall + self.token_window,
        )

    def give_token(self, credential: Credential | None = None) -> None:
        request = self.pending_request()
        assert request is not None, "no token request pending"
        self.answered_requests.add(request.request)
        self.feed(TokenFetched(request.request, credential or self.credential()))

    def fail_token(
        self, kind: TokenFailure, message: str = "", retry_after: float | None = None
    ) -> None:
        request = self.pending_request()
        assert request is not None, "no token request pending"
        self.answered_requests.add(request.request)
        self.feed(TokenFailed(request.request, kind, message, retry_after))

    def opened(self) -> None:
        self.feed(SocketOpened(self.attempt))

    def open_failed(
        self,
        kind: OpenFailure = OpenFailure.OFFLINE,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.live_sockets.discard(self.attempt)
        self.feed(SocketOpenFailed(self.attempt, kind, status, "test", retry_after))

    def server(self, **message: Any) -> None:
        self.feed(FrameReceived(self.attempt, frame(**message)))

    def setup_complete(self) -> None:
        self.server(setupComplete={})

    def handle_update(self, handle: str | None, resumable: bool = True) -> None:
        body: dict[str, Any] = {"resumable": resumable}
        if handle is not None:
            body["newHandle"] = handle
        self.server(sessionResumptionUpdate=body)

    def closed(self, code: int | None = 1006, reason: str = "") -> None:
        self.live_sockets.discard(self.attempt)
        self.feed(SocketClosed(self.attempt, code, reason))

    def start(self, stored: StoredSession | None = None) -> None:
        self.feed(Started(stored))

    def connect(self) -> None:
        """From a token request (or a reused credential) to setupComplete."""
        if self.m.phase.value == "fetching":
            self.give_token()
        self.opened()
        self.setup_complete()

    # -- inspection --------------------------------------------------------------------------

    def frames(self, attempt: int | None = None) -> list[dict[str, Any]]:
        attempt = self.attempt if attempt is None else attempt
        return [
            orjson.loads(a.text)
            for a in self.log
            if isinstance(a, SendFrame) and a.attempt == attempt
        ]

    def setup_handle(self, attempt: int | None = None) -> str | None:
        setup = self.frames(attempt)[0]["setup"]
        return setup.get("sessionResumption", {}).get("handle")

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def actions_of(self, kind: type[Any]) -> list[Any]:
        return [a for a in self.log if isinstance(a, kind)]

    def clear(self) -> None:
        self.events.clear()


def _secret_of(action: OpenSocket) -> str:
    url = action.endpoint.url
    auth = action.endpoint.headers.get("Authorization", "")
    return url.split("access_token=")[-1] if "access_token=" in url else auth
