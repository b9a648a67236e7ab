"""A discrete-event simulator that runs real ``SessionMachine`` instances on a virtual clock.

The reconnect logic is sans-I/O, so a 30-minute tunnel or a herd of 100,000 clients can be
replayed in seconds: the simulator is the "driver" and the "world" at once. It performs the
machine's actions against a model of the network and the servers, and feeds back the
events the real driver would, at the virtual time they would happen. Nothing here is a
re-implementation of the policy: the numbers come from the same machine ``LiveSession``
runs.

The world model (every number is a parameter, defaults are typical mobile values):

* **Latencies** of a healthy link: token fetch, WebSocket connect (TCP + TLS + upgrade),
  setup (``setup`` → ``setupComplete``).
* **Outages** (tunnels): intervals in which the link is gone. Two kinds of "gone":
  ``unreachable`` (the OS knows there is no network: a fetch or connect fails within
  ``fail_latency``) and ``blackhole`` (packets vanish: nothing answers; a connect that
  started inside the tunnel completes only at its next SYN retransmission after the tunnel,
  at 1, 3, 7, 15, 31, 63 s after it started, as Linux retransmits SYNs, unless the
  machine's own timeout abandoned it first). A socket that is connected when a tunnel starts
  is reported closed (``1006``) after ``detect_delay``: detecting a half-open link is
  benchmark 3's subject, here it is held equal for both policies.
* **Server restarts** (the storm): connects are refused while the Live server is down,
  the token service cannot mint (its upstream is down), and every connected socket is
  closed with ``1001`` at the restart.
* **Token service capacity**: an optional token bucket (``rate`` tokens/s, ``burst``). How
  the service answers while its upstream is down or its bucket is empty is
  :class:`StormWorld`'s ``service``: tunnelproof's (503 with a ``Retry-After`` sized by
  the backlog, by the service's own :class:`~tunnelproof.tokens.admission.Admission`) or
  the one before issue 15 (502, and 503 + ``Retry-After: 1``).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
from tunnelproof.session.machine import SessionMachine, SessionState
from tunnelproof.session.policy import DEFAULT_WATCHDOGS, RetryPolicy, Watchdogs
from tunnelproof.tokens.admission import Admission, overload_wait, retry_after_ms_header

WALL0 = 1_800_000_000.0
"""Wall-clock time at virtual time 0 (token and handle expiry use the wall clock)."""

SYN_RETRANSMITS = (1.0, 3.0, 7.0, 15.0, 31.0, 63.0)
"""Seconds after ``connect()`` at which Linux (re)sends a SYN (initial RTO 1 s, doubling)."""

OfflineMode = Literal["unreachable", "blackhole"]
ServiceModel = Literal["queue", "fixed"]
"""How the simulated token service answers while it cannot mint (see :class:`StormWorld`)."""

_SETUP_COMPLETE = b'{"setupComplete":{}}'


class Scheduler:
    """A virtual clock with a heap of callbacks. Bounded: :meth:`run` takes a limit."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.processed = 0

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (never in the past)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, args))

    def run(self, until: float, *, max_events: int = 50_000_000) -> bool:
        """Process callbacks due up to ``until``. False if ``max_events`` was hit first."""
        heap = self._heap
        for _ in range(max_events):
            if not heap or heap[0][0] > until:
                self.now = max(self.now, until)
                return True
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            self.processed += 1
            fn(*args)
        return False

    @property
    def pending(self) -> int:
        """Callbacks not yet run."""
        return len(self._heap)


@dataclass(slots=True)
class Latencies:
    """Healthy-link latencies in seconds (defaults: a phone on a decent mobile network)."""

    token: float = 0.15
    connect: float = 0.25
    setup: float = 0.20
    fail: float = 0.02
    close: float = 0.05


@dataclass(slots=True)
class ClientStats:
    """What one simulated client did (times are virtual seconds)."""

    token_requests: int = 0
    token_requests_up: int = 0  # made while the link/servers could see them
    connects: int = 0
    connected_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)
    failed_at: float | None = None
    failed_reason: str = ""


class SimClient:
    """One ``SessionMachine`` plus its timers, driven by a :class:`World`."""

    __slots__ = ("cid", "live", "machine", "stats", "timers", "world")

    def __init__(self, world: World, cid: int, machine: SessionMachine) -> None:
        self.world = world
        self.cid = cid
        self.machine = machine
        self.timers: dict[str, int] = {}
        self.stats = ClientStats()
        self.live: int | None = None  # attempt id of a socket the server holds open

    def feed(self, event: Event) -> None:
        """Hand ``event`` to the machine at the current virtual time; perform its actions."""
        now = self.world.sched.now
        self.apply(self.machine.handle(event, now=now, wall=WALL0 + now))

    def _timer(self, name: str, serial: int) -> None:
        if self.timers.get(name) != serial:
            return  # cancelled or replaced: the real driver would not fire it either
        del self.timers[name]
        self.feed(TimerFired(name, serial))

    def apply(self, actions: list[Action]) -> None:
        """Perform the machine's actions against the world."""
        world = self.world
        for action in actions:
            match action:
                case SetTimer(name=name, serial=serial, at=at):
                    self.timers[name] = serial
                    world.sched.at(at, self._timer, name, serial)
                case CancelTimer(name=name):
                    self.timers.pop(name, None)
                case FetchToken(request=request):
                    self.stats.token_requests += 1
                    world.fetch_token(self, request)
                case OpenSocket(attempt=attempt):
                    self.stats.connects += 1
                    world.open_socket(self, attempt)
                case SendFrame(attempt=attempt, text=text):
                    if text.startswith('{"setup"'):
                        world.setup(self, attempt)
                case CloseSocket(attempt=attempt):
                    world.close_socket(self, attempt)
                case AbortSocket(attempt=attempt):
                    if self.live == attempt:
                        self.live = None
                case Emit(event=event):
                    self._on_app_event(event)
                case CancelTokenFetch() | SaveHandle() | DeleteHandle():
                    pass

    def _on_app_event(self, event: ev.AppEvent) -> None:
        now = self.world.sched.now
        if isinstance(event, ev.Resumed):
            self.stats.resumed_at.append(now)
            self.world.on_restored(self, now)
        elif isinstance(event, ev.Connected):
            self.stats.connected_at.append(now)
            self.world.on_restored(self, now)
        elif isinstance(event, ev.Failed):
            self.stats.failed_at = now
            self.stats.failed_reason = event.verdict.reason
            self.world.on_failed(self, now)

    @property
    def connected(self) -> bool:
        """The machine is connected (setupComplete received on the current socket)."""
        return self.machine.state is SessionState.CONNECTED


class World:
    """The network and the servers around many :class:`SimClient` s.

    Subclass hooks :meth:`link_up` and :meth:`token_decision` shape outages and capacity;
    the defaults are an always-up link and an unlimited token service.
    """

    def __init__(
        self,
        *,
        latencies: Latencies | None = None,
        offline_mode: OfflineMode = "unreachable",
        detect_delay: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.sched = Scheduler()
        self.lat = latencies or Latencies()
        self.offline_mode: OfflineMode = offline_mode
        self.detect_delay = detect_delay
        self.clients: list[SimClient] = []
        self._tokens = itertools.count(1)
        self._handles = itertools.count(1)
        self.rng = random.Random(seed)
        self.restored_times: list[float] = []
        self.failed_times: list[float] = []
        self.token_arrivals: list[float] = []  # virtual times requests reached the service

    # -- construction -----------------------------------------------------------------

    def add_client(
        self,
        config: LiveConfig,
        policy: RetryPolicy,
        *,
        watchdogs: Watchdogs = DEFAULT_WATCHDOGS,
        seed: int = 0,
    ) -> SimClient:
        """A new client (not started)."""
        machine = SessionMachine(
            config, policy=policy, watchdogs=watchdogs, rng=random.Random(seed)
        )
        client = SimClient(self, len(self.clients), machine)
        self.clients.append(client)
        return client

    def start(self, client: SimClient, at: float | None = None) -> None:
        """Schedule ``Started`` for ``client``."""
        self.sched.at(self.sched.now if at is None else at, client.feed, Started())

    # -- model hooks ------------------------------------------------------------------

    def link_up(self, t: float) -> bool:
        """Whether the client's network works at ``t``."""
        return True

    def link_back_at(self, t: float) -> float | None:
        """When the outage containing ``t`` ends (``None``: not in an outage)."""
        return None

    def server_up(self, t: float) -> bool:
        """Whether the Live server (and so minting) works at ``t``."""
        return True

    def token_decision(self, t: float) -> tuple[str, float | None]:
        """``("ok", queued)`` (``queued``: seconds the request waited for its turn, or
        ``None``); ``("shed", retry_after)`` when over capacity; or
        ``("upstream_down", retry_after)`` while the Live server (and minting) is down
        (``retry_after`` ``None``: a plain 502)."""
        if not self.server_up(t):
            return "upstream_down", None
        return "ok", None

    def on_restored(self, client: SimClient, t: float) -> None:
        """A client got ``setupComplete`` (fresh or resumed)."""
        self.restored_times.append(t)

    def on_failed(self, client: SimClient, t: float) -> None:
        """A client gave up (``Failed``)."""
        self.failed_times.append(t)

    # -- actions ----------------------------------------------------------------------

    def _offline(
        self,
        t: float,
        deliver_ok: Callable[[], None],
        deliver_fail: Callable[[], None],
        ok_latency: float,
    ) -> None:
        """A request made while the link is gone."""
        if self.offline_mode == "unreachable":
            self.sched.at(t + self.lat.fail, deliver_fail)
            return
        back = self.link_back_at(t)
        if back is None:
            return
        # Blackhole: the SYN is lost; the first retransmission after the tunnel gets through.
        for offset in SYN_RETRANSMITS:
            if t + offset >= back:
                self.sched.at(t + offset + ok_latency, deliver_ok)
                return

    def fetch_token(self, client: SimClient, request: int) -> None:
        """Answer a ``FetchToken``."""
        t = self.sched.now

        def ok() -> None:
            self._token_answer(client, request)

        def offline() -> None:
            client.feed(TokenFailed(request, TokenFailure.OFFLINE, "network unreachable"))

        if not self.link_up(t):
            self._offline(t, ok, offline, self.lat.token)
            return
        self._token_answer(client, request, delay=True)

    def _token_answer(self, client: SimClient, request: int, *, delay: bool = False) -> None:
        t = self.sched.now
        client.stats.token_requests_up += 1
        self.token_arrivals.append(t)
        verdict, retry_after = self.token_decision(t)
        queued = retry_after if verdict == "ok" and retry_after is not None else 0.0
        if verdict == "upstream_down":
            # The token service is up but its upstream (Google) is not.
            self.sched.at(
                t + self.lat.token,
                client.feed,
                TokenFailed(request, TokenFailure.UNAVAILABLE, "upstream down", retry_after),
            )
            return
        if verdict == "shed":
            self.sched.at(
                t + self.lat.fail,
                client.feed,
                TokenFailed(request, TokenFailure.UNAVAILABLE, "503 busy", retry_after),
            )
            return
        n = next(self._tokens)
        when = t + queued + (self.lat.token if delay else 0.0)
        wall = WALL0 + when
        cred = Credential(
            kind="ephemeral_token",
            secret=f"auth_tokens/sim{n}",
            ws_base="ws://sim.invalid",
            expires_at=wall + 1800.0,
            new_session_expires_at=wall + 60.0,
        )
        self.sched.at(when, client.feed, TokenFetched(request, cred))

    def open_socket(self, client: SimClient, attempt: int) -> None:
        """Answer an ``OpenSocket``."""
        t = self.sched.now

        def ok() -> None:
            if not self.server_up(self.sched.now):
                client.feed(SocketOpenFailed(attempt, OpenFailure.OFFLINE, None, "refused"))
                return
            client.live = attempt
            client.feed(SocketOpened(attempt))

        def offline() -> None:
            client.feed(SocketOpenFailed(attempt, OpenFailure.OFFLINE, None, "unreachable"))

        if not self.link_up(t):
            self._offline(t, ok, offline, self.lat.connect)
            return
        if not self.server_up(t):
            self.sched.at(t + self.lat.fail, offline)
            return
        self.sched.at(t + self.lat.connect, ok)

    def setup(self, client: SimClient, attempt: int) -> None:
        """The client sent ``setup``: answer ``setupComplete`` and a fresh handle."""

        def answer() -> None:
            if client.live != attempt:
                return
            client.feed(FrameReceived(attempt, _SETUP_COMPLETE))
            handle = next(self._handles)
            update = b'{"sessionResumptionUpdate":{"newHandle":"h%d","resumable":true}}' % handle
            client.feed(FrameReceived(attempt, update))

        self.sched.at(self.sched.now + self.lat.setup, answer)

    def close_socket(self, client: SimClient, attempt: int) -> None:
        """A graceful close by the client."""

        def closed() -> None:
            if client.live == attempt:
                client.live = None
            client.feed(SocketClosed(attempt, 1000, ""))

        self.sched.at(self.sched.now + self.lat.close, closed)

    def drop(self, client: SimClient, code: int | None, reason: str = "") -> None:
        """The server side of ``client``'s socket is gone; tell the client (after detection)."""
        attempt = client.live
        if attempt is None:
            return
        client.live = None
        self.sched.at(
            self.sched.now + self.detect_delay, client.feed, SocketClosed(attempt, code, reason)
        )


# -- a single client through tunnels ------------------------------------------------------


class TunnelWorld(World):
    """One link with outage intervals (the train's tunnels)."""

    def __init__(self, outages: Sequence[tuple[float, float]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outages = sorted(outages)
        for begin, _ in self.outages:
            self.sched.at(begin, self._enter_tunnel)

    def link_up(self, t: float) -> bool:
        return not any(a <= t < b for a, b in self.outages)

    def link_back_at(self, t: float) -> float | None:
        for a, b in self.outages:
            if a <= t < b:
                return b
        return None

    def _enter_tunnel(self) -> None:
        for client in self.clients:
            self.drop(client, None, "")


@dataclass(slots=True)
class TunnelOutcome:
    """One client, one tunnel: when the conversation came back, and what it cost."""

    tunnel_s: float
    restored_after_s: float | None  # from the tunnel's end to setupComplete-resumed
    gave_up: bool
    gave_up_at_s: float | None  # from the tunnel's start
    attempts: int  # token requests + connects that reused a token
    token_requests: int
    server_requests: int  # requests that reached a server (made while the link was up)
    resumed: bool  # restored with the same server session (handle), not a fresh one


def simulate_tunnel(
    policy: RetryPolicy,
    tunnel_s: float,
    *,
    seed: int = 0,
    offline_mode: OfflineMode = "unreachable",
    latencies: Latencies | None = None,
    watchdogs: Watchdogs = DEFAULT_WATCHDOGS,
    config: LiveConfig | None = None,
    lead_in: float = 30.0,
    horizon: float = 900.0,
) -> TunnelOutcome:
    """Connect one client, run it through one tunnel of ``tunnel_s`` seconds, measure.

    The client connects at 0 and has a resumption handle long before the tunnel starts at
    ``lead_in``; the run ends at the first ``setupComplete`` after the tunnel, at a
    ``Failed``, or ``horizon`` seconds after the tunnel's end.
    """
    begin, end = lead_in, lead_in + tunnel_s
    world = TunnelWorld([(begin, end)], latencies=latencies, offline_mode=offline_mode, seed=seed)
    client = world.add_client(config or LiveConfig(), policy, watchdogs=watchdogs, seed=seed)
    world.start(client, at=0.0)
    world.sched.run(begin - 1e-9)
    if not client.connected:
        raise RuntimeError("the simulated client did not connect before the tunnel")
    before = (
        client.stats.token_requests,
        client.stats.token_requests_up,
        client.machine.metrics.tokens_reused,
        len(client.stats.resumed_at),
        len(client.stats.connected_at),
    )
    stop_at = end + horizon
    while world.sched.now < stop_at:
        world.sched.run(min(stop_at, world.sched.now + 5.0))
        done = (
            len(client.stats.resumed_at) > before[3] or len(client.stats.connected_at) > before[4]
        )
        if done or client.stats.failed_at is not None:
            break
    restored = [t for t in client.stats.resumed_at + client.stats.connected_at if t >= begin]
    first = min(restored) if restored else None
    resumed = bool(client.stats.resumed_at) and first in client.stats.resumed_at
    tokens = client.stats.token_requests - before[0]
    reused = client.machine.metrics.tokens_reused - before[2]
    failed_at = client.stats.failed_at
    return TunnelOutcome(
        tunnel_s=tunnel_s,
        restored_after_s=(first - end) if first is not None else None,
        gave_up=first is None,
        gave_up_at_s=(failed_at - begin) if failed_at is not None else None,
        attempts=tokens + reused,
        token_requests=tokens,
        server_requests=client.stats.token_requests_up - before[1],
        resumed=resumed,
    )


# -- a herd of clients through a server restart ----------------------------------------------


class StormWorld(World):
    """N clients, one Live server that restarts at 0, one token service of bounded capacity.

    The token service mints at most ``token_rate`` per second. ``service="queue"``
    (tunnelproof's service since issue 15): a request waits its turn (FIFO, at
    ``token_rate``) for up to ``queue_wait`` seconds, as the real service waits up to
    ``mint_queue_timeout`` for a mint slot; one that would wait longer is shed. While the
    upstream is down it lets one probe per ``probe_interval`` through and answers every
    other request 503 at once. Both answers carry a wait sized by the backlog
    (:class:`~tunnelproof.tokens.admission.Admission`, the service's own), as the clients
    read it: the ``retry-after-ms`` header (whole milliseconds, rounded up).
    ``service="fixed"`` (the service before issue 15): a token bucket (``burst``) that
    sheds at once with 503 + ``Retry-After: 1``, and 502 while the upstream is down.
    """

    def __init__(
        self,
        *,
        restart_s: float,
        token_rate: float | None,
        token_burst: float | None = None,
        retry_after: float = 1.0,
        service: ServiceModel = "queue",
        queue_wait: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.queue_wait = queue_wait
        self._next_free = -math.inf  # queue model: when the service can mint the next token
        self.restart_s = restart_s
        self.token_rate = token_rate
        self.burst = token_burst if token_burst is not None else (token_rate or 0) * 0.05 + 1
        self._bucket = self.burst
        self._bucket_at = -math.inf
        self.retry_after = retry_after
        self.service: ServiceModel = service
        self.admission: Admission | None = None
        self.down = False
        self.served: list[float] = []

    def use_capacity(self, token_rate: float | None) -> None:
        """From now on the service mints at most ``token_rate``/s (``None``: unlimited)."""
        self.token_rate = token_rate
        self.burst = (token_rate or 0) * 0.05 + 1
        self._bucket = self.burst
        self._bucket_at = self.sched.now
        self._next_free = self.sched.now
        self.admission = (
            Admission(token_rate, clock=lambda: self.sched.now)
            if token_rate is not None and self.service == "queue"
            else None
        )

    def server_up(self, t: float) -> bool:
        return not (0.0 <= t < self.restart_s)

    def token_decision(self, t: float) -> tuple[str, float | None]:
        admission = self.admission
        if admission is not None and not admission.may_call_upstream():
            return "shed", _client_wait(admission.shed())
        if not self.server_up(t):
            if admission is None:
                return "upstream_down", None  # 502
            admission.upstream_failed()  # this request was the probe
            return "upstream_down", _client_wait(admission.shed())
        if admission is not None:
            admission.upstream_ok()
        if self.token_rate is None:
            self.served.append(t)
            return "ok", None
        if admission is not None:
            turn = max(self._next_free, t)
            if turn - t > self.queue_wait:
                # As the route sheds a caller whose wait for a mint slot timed out: not
                # before the line ahead has drained (overload_wait).
                line = int((turn - t) * self.token_rate)
                return "shed", _client_wait(admission.shed(overload_wait(line, self.token_rate)))
            self._next_free = turn + 1.0 / self.token_rate
            self.served.append(turn)
            return "ok", turn - t
        if self._bucket_at == -math.inf:
            self._bucket_at = t
        self._bucket = min(self.burst, self._bucket + (t - self._bucket_at) * self.token_rate)
        self._bucket_at = t
        if self._bucket >= 1.0:
            self._bucket -= 1.0
            self.served.append(t)
            return "ok", None
        return "shed", self.retry_after

    def restart(self) -> None:
        """The Live server goes down now: every connected socket is closed with 1001."""
        for client in self.clients:
            self.drop(client, 1001, "")


def _client_wait(wait: float) -> float:
    """The wait a tunnelproof client reads from a shed answer (``retry-after-ms``)."""
    return int(retry_after_ms_header(wait)) / 1000.0


@dataclass(slots=True)
class StormOutcome:
    """What a herd did after a server restart."""

    clients: int
    restored: int
    gave_up: int
    t99_s: float | None
    t100_s: float | None
    restored_curve: list[tuple[float, float]]  # (t, fraction restored)
    offered_rps: list[tuple[float, float]]  # token requests reaching the service per second
    served_rps: list[tuple[float, float]]
    peak_offered_rps: float
    token_requests: int
    events: int


def simulate_storm(
    policy: RetryPolicy,
    clients: int,
    *,
    token_rate: float | None,
    restart_s: float = 1.0,
    seed: int = 0,
    latencies: Latencies | None = None,
    horizon: float = 900.0,
    config: LiveConfig | None = None,
    progress: Callable[[str], None] | None = None,
    service: ServiceModel = "queue",
) -> StormOutcome:
    """Connect ``clients`` clients, restart the server at 0, measure until all are back.

    Clients connect during a warm-up (before 0, without the capacity limit) and stay up long
    enough for their failure counters to reset (``stable_after``). The run ends when every
    client is restored or failed, or at ``horizon``.
    """
    lat = latencies or Latencies(token=0.05, connect=0.05, setup=0.05)
    world = StormWorld(
        restart_s=restart_s, token_rate=None, latencies=lat, seed=seed, service=service
    )
    cfg = config or LiveConfig()
    warm = -max(30.0, policy.stable_after + 15.0)
    world.sched.now = warm
    for i in range(clients):
        c = world.add_client(cfg, policy, seed=seed * 1_000_003 + i)
        world.start(c, at=warm + (i % 1000) * 0.005)
    world.sched.run(-1e-9)
    up = sum(1 for c in world.clients if c.connected)
    if up != clients:
        raise RuntimeError(f"only {up}/{clients} simulated clients connected during warm-up")
    # The measured phase: capacity applies, counters restart.
    world.sched.now = 0.0
    world.use_capacity(token_rate)
    world.restored_times.clear()
    world.failed_times.clear()
    world.token_arrivals.clear()
    world.served.clear()
    world.sched.at(0.0, world.restart)
    t = 0.0
    while t < horizon:
        t = min(horizon, t + 10.0)
        world.sched.run(t)
        done = len(world.restored_times) + len(world.failed_times)
        if progress is not None:
            progress(f"  t={t:5.0f} s restored {len(world.restored_times)}/{clients}")
        if done >= clients:
            break
    restored = sorted(world.restored_times)
    n_ok = len(restored)
    need99 = math.ceil(0.99 * clients)
    t99 = restored[need99 - 1] if n_ok >= need99 else None
    t100 = restored[-1] if n_ok == clients else None
    end = restored[-1] if restored else 0.0
    end = max(end, max(world.failed_times, default=0.0), 1.0)
    curve = _cumulative(restored, clients, end)
    return StormOutcome(
        clients=clients,
        restored=n_ok,
        gave_up=len(world.failed_times),
        t99_s=t99,
        t100_s=t100,
        restored_curve=curve,
        offered_rps=_per_second(world.token_arrivals, end),
        served_rps=_per_second(world.served, end),
        peak_offered_rps=max((r for _, r in _per_second(world.token_arrivals, end)), default=0.0),
        token_requests=len(world.token_arrivals),
        events=world.sched.processed,
    )


def _per_second(times: Sequence[float], end: float) -> list[tuple[float, float]]:
    """Counts per 1-s bin from 0 to ``end``."""
    bins = max(1, math.ceil(end) + 1)
    counts = [0] * bins
    for t in times:
        if t >= 0:
            counts[min(bins - 1, int(t))] += 1
    return [(float(i), float(c)) for i, c in enumerate(counts)]


def _cumulative(times: Sequence[float], total: int, end: float) -> list[tuple[float, float]]:
    """Fraction restored at each point of a ~200-point grid from 0 to ``end``."""
    steps = 200
    out: list[tuple[float, float]] = []
    k = 0
    ordered = sorted(times)
    for i in range(steps + 1):
        t = end * i / steps
        while k < len(ordered) and ordered[k] <= t:
            k += 1
        out.append((t, k / total if total else 0.0))
    return out
