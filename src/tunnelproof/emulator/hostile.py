"""Hostile-server mode: make a running emulator misbehave on the wire, on purpose.

A client must survive a server that sends garbage, frames of the wrong shape, frames far
larger than it accepts, or a flood of frames faster than it can think. The emulator's own
code stays faithful; this module drives a running :class:`EmulatorServer`'s connections
from outside (it needs no hook in them)::

    async with EmulatorServer() as emu:
        hostile = HostileMode(emu)
        ...                                         # a client connects and sets up
        report = await hostile.attack(plan=HostilePlan(kinds=(HostileKind.GARBAGE,)))
        # or: every connection, right after its setupComplete
        async with HostileMode(emu, HostilePlan(...), every_connection=True):
            ...

What each kind sends (all after ``setupComplete``, on the live socket):

* ``garbage`` — binary frames of random bytes and text frames that are not JSON;
* ``wrong_types`` — well-formed JSON with the known message kinds holding values of the
  wrong type (``{"serverContent": []}``, ``{"goAway": {"timeLeft": 50}}``, ...);
* ``huge`` — one valid frame of ``huge_bytes`` (default 20 MiB: above the 16 MiB a
  ``LiveSession`` accepts, so the client must refuse it, not buffer it);
* ``flood`` — ``flood_frames`` valid but useless frames (an unknown message kind, as
  Google adds them) as fast as the socket takes them.

The in-process emulator only (it reaches into the server's connections); the report says
what was sent so a test can check the client saw exactly that much.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Any

import orjson

from tunnelproof.emulator.connection import LiveConnection
from tunnelproof.emulator.events import EventLog
from tunnelproof.emulator.hub import ConnectionPeer
from tunnelproof.emulator.server import EmulatorServer
from tunnelproof.protocol.types import JsonDict


class HostileKind(StrEnum):
    """What a hostile attack sends (see the module docstring)."""

    GARBAGE = "garbage"
    WRONG_TYPES = "wrong_types"
    HUGE = "huge"
    FLOOD = "flood"


WRONG_TYPED: tuple[JsonDict, ...] = (
    {"serverContent": []},
    {"serverContent": {"turnComplete": "maybe"}},
    {"serverContent": {"modelTurn": {"parts": {"text": 1}}}},
    {"serverContent": {"modelTurn": {"parts": [{"text": 5}]}}},
    {"serverContent": {"inputTranscription": "words"}},
    {"toolCall": {"functionCalls": "call me"}},
    {"toolCall": {"functionCalls": [{"id": 7, "name": "f"}]}},
    {"toolCallCancellation": {"ids": [1, 2]}},
    {"goAway": {"timeLeft": 50}},
    {"goAway": {"timeLeft": "soon"}},
    {"sessionResumptionUpdate": {"newHandle": 5, "resumable": True}},
    {"sessionResumptionUpdate": {"resumable": "yes please"}},
    {"usageMetadata": {"totalTokenCount": "many"}},
    {"setupComplete": 5},
)
"""Known kinds with a wrong type inside: each one a clear protocol error for a client."""


@dataclass(frozen=True, slots=True)
class HostilePlan:
    """What an attack sends. ``frames`` applies to garbage and wrong types, each."""

    kinds: tuple[HostileKind, ...] = (HostileKind.GARBAGE, HostileKind.WRONG_TYPES)
    frames: int = 20
    huge_bytes: int = 20 * 1024 * 1024
    flood_frames: int = 5_000
    pause: float = 0.0
    """Seconds between frames (0: back to back)."""
    seed: int = 0


@dataclass(slots=True)
class HostileReport:
    """What one attack sent, by kind, and whether the socket was still open at the end."""

    connection: str
    sent: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    completed: bool = False
    socket_open_after: bool = False


def frames_for(plan: HostilePlan) -> Iterator[tuple[HostileKind, bytes | str]]:
    """The frames of ``plan``, in order: ``bytes`` go as binary frames, ``str`` as text."""
    rng = random.Random(plan.seed)
    for kind in plan.kinds:
        if kind is HostileKind.GARBAGE:
            for n in range(plan.frames):
                if n % 2:
                    yield kind, f"not json {{{rng.random()}"
                else:
                    yield kind, rng.randbytes(rng.randint(1, 256))
        elif kind is HostileKind.WRONG_TYPES:
            for n in range(plan.frames):
                yield kind, orjson.dumps(WRONG_TYPED[n % len(WRONG_TYPED)])
        elif kind is HostileKind.HUGE:
            # Valid JSON, so only its size is wrong.
            prefix, suffix = b'{"serverContent":{"modelTurn":{"parts":[{"text":"', b'"}]}}}'
            body = b"x" * max(0, plan.huge_bytes - len(prefix) - len(suffix))
            yield kind, prefix + body + suffix
        else:
            flood = orjson.dumps({"hostileFlood": {"useless": True}})
            for _ in range(plan.flood_frames):
                yield kind, flood


async def attack_connection(conn: LiveConnection, plan: HostilePlan) -> HostileReport:
    """Send ``plan``'s frames on ``conn``; stops early when the client closes the socket."""
    report = HostileReport(conn.id)
    ws = conn.ws
    hub = conn.hub
    hub.events.emit("hostile_started", connection=conn.id, kinds=[k.value for k in plan.kinds])
    for kind, frame in frames_for(plan):
        if ws.closed or not conn.is_open:
            break
        try:
            if isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_bytes(frame)
        except (ConnectionError, RuntimeError):
            break
        report.sent[kind.value] += 1
        report.bytes_sent += len(frame)
        if plan.pause > 0:
            await asyncio.sleep(plan.pause)
        elif report.sent[kind.value] % 200 == 0:
            await asyncio.sleep(0)  # a flood must not starve the emulator's other sockets
    else:
        report.completed = True
    report.socket_open_after = not ws.closed and conn.is_open
    hub.events.emit(
        "hostile_finished",
        connection=conn.id,
        sent=dict(report.sent),
        completed=report.completed,
    )
    return report


class HostileMode:
    """Hostile behaviour for a running in-process emulator.

    :meth:`attack` hits one connection now (the newest open one by default). With
    ``every_connection=True``, used as an async context manager, every connection is
    attacked right after its ``setupComplete`` until the context exits.
    """

    def __init__(
        self,
        emulator: EmulatorServer,
        plan: HostilePlan | None = None,
        *,
        every_connection: bool = False,
    ) -> None:
        self.emulator = emulator
        self.plan = plan or HostilePlan()
        self.every_connection = every_connection
        self.reports: list[HostileReport] = []
        self._watcher: asyncio.Task[None] | None = None
        self._attacks: set[asyncio.Task[HostileReport]] = set()

    async def attack(
        self, connection: str | None = None, *, plan: HostilePlan | None = None
    ) -> HostileReport:
        """Attack ``connection`` (an id; ``None``: the newest open one) and wait for it."""
        hub = self.emulator.hub
        if connection is None:
            open_ = [c for c in hub.connections.values() if c.is_open and c.session is not None]
            if not open_:
                raise LookupError("no open, set-up connection to attack")
            conn = open_[-1]
        else:
            conn = hub.connections[connection]
        report = await attack_connection(_live(conn), plan or self.plan)
        self.reports.append(report)
        return report

    async def __aenter__(self) -> HostileMode:
        if self.every_connection:
            self._watcher = asyncio.create_task(self._watch(), name="emulator-hostile")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks: list[asyncio.Task[Any]] = [*self._attacks]
        if self._watcher is not None:
            tasks.append(self._watcher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        events = self.emulator.hub.events
        done = [e.seq for e in events.since(0, "setup_complete")]
        last = max(done, default=0)
        while True:
            # Sequence numbers, not positions: the log drops its oldest events when full.
            await events.wait_until(partial(_has_setup_after, events, last), 3600.0)
            fresh = events.since(last, "setup_complete")
            last = fresh[-1].seq
            for event in fresh:
                conn = self.emulator.hub.connections.get(str(event.data.get("connection")))
                if conn is not None:
                    task = asyncio.create_task(self._attack_logged(_live(conn)))
                    self._attacks.add(task)
                    task.add_done_callback(self._attacks.discard)

    async def _attack_logged(self, conn: LiveConnection) -> HostileReport:
        report = await attack_connection(conn, self.plan)
        self.reports.append(report)
        return report


def _has_setup_after(events: EventLog, seq: int) -> bool:
    return bool(events.since(seq, "setup_complete"))


def _live(conn: ConnectionPeer) -> LiveConnection:
    """The hub holds connections by their protocol; the attacks need the socket itself."""
    if not isinstance(conn, LiveConnection):
        raise TypeError(f"not a live connection: {conn!r}")
    return conn
