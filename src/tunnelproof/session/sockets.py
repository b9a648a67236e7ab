"""The asyncio side of one socket attempt: open, read, write, close, abort.

``LiveSession`` owns a :class:`SocketAttempt` per ``OpenSocket`` action and runs
:func:`run_socket` for it. Everything that happens is fed back to the machine as an event
(``SocketOpened``, ``SocketOpenFailed``, ``FrameReceived``, ``SocketClosed``,
``LinkChecked``) through the ``feed`` callback; nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import State

from tunnelproof.protocol.endpoints import Endpoint
from tunnelproof.session.driver import (
    classify_connect_error,
    kernel_verdict,
    read_kernel_link,
    tune_socket,
)
from tunnelproof.session.events import (
    Event,
    FrameReceived,
    LinkChecked,
    SocketClosed,
    SocketOpened,
)
from tunnelproof.session.policy import Watchdogs

log = logging.getLogger("tunnelproof.session")

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Server frames carry base64 audio; Google's biggest frames are well under this. A bound
keeps a misbehaving peer from making us buffer without limit."""

# Options the session sets itself; an app's connect_kwargs cannot override them.
MANAGED_KWARGS = frozenset(
    {"ping_interval", "ping_timeout", "open_timeout", "additional_headers", "close_timeout"}
)


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How every socket of a session is opened."""

    watchdogs: Watchdogs
    ssl: ssl_module.SSLContext | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        watchdogs: Watchdogs,
        ssl: ssl_module.SSLContext | None,
        max_frame_bytes: int,
        connect_kwargs: Mapping[str, Any] | None,
    ) -> ConnectOptions:
        """Options with the app's extra ``connect`` arguments minus the managed ones."""
        extra = {k: v for k, v in (connect_kwargs or {}).items() if k not in MANAGED_KWARGS}
        return cls(watchdogs, ssl, max_frame_bytes, extra)


class DirectConnection(ClientConnection):
    """A client connection that hands each whole binary message to :attr:`on_message` as
    soon as its frame is parsed, instead of queueing it for ``recv()``.

    Saves, per 20 ms audio frame, websockets' message queue and the wake-up of the task
    reading it (``connect(create_connection=...)`` is websockets' hook for this). Only
    unfragmented binary messages (what Google sends) go direct; the first text or
    fragmented message turns direct delivery off for good, so from there on every message
    takes ``recv()`` in order, after those already delivered; a message that finds frames
    still queued for ``recv()`` (one that came before direct delivery began) queues behind
    them. Frames of other kinds (ping, pong, close) are websockets' as before.
    """

    on_message: Callable[[bytes], None] | None = None

    def process_event(self, event: Any) -> None:
        """Deliver a whole binary message now, or as websockets does."""
        on_message = self.on_message
        if on_message is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if event.opcode is not Opcode.BINARY or not event.fin:
                self.on_message = None  # text or a fragment: recv() from here on, in order
            elif not self.recv_messages.frames:  # nothing queued for recv() before it
                on_message(bytes(event.data))
                return
        super().process_event(event)


@dataclass(slots=True)
class SocketAttempt:
    """Driver-side state of one socket attempt."""

    attempt: int
    task: asyncio.Task[None] | None = None
    ws: ClientConnection | None = None
    outgoing: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    checker: asyncio.Task[None] | None = None
    dead: bool = False  # the machine no longer wants events from it
    direct: bool = False  # ws supports write_now (set once it is open)

    def gone(self) -> bool:
        """True once aborted (a method, so type checkers do not narrow it across awaits)."""
        return self.dead

    def send(self, text: str) -> None:
        """Write a text frame now if nothing waits before it, else queue it for the writer."""
        if self.dead:
            return
        if self.direct and not self.outgoing and self.ws is not None and write_now(self.ws, text):
            return
        self.outgoing.append(text)
        self.wake.set()

    def abort(self) -> None:
        """Tear the socket down now: no close handshake, no close_timeout wait."""
        self.dead = True
        if self.ws is not None:
            self.ws.transport.abort()
        if self.task is not None:
            self.task.cancel()
        self.stop_helpers()

    def stop_helpers(self) -> None:
        """Cancel the writer and any link check."""
        for task in (self.writer, self.checker):
            if task is not None:
                task.cancel()

    def check_link(self, watchdogs: Watchdogs, feed: Callable[[Event], None]) -> None:
        """Start gathering evidence about the link (``CheckLink``), unless already doing so."""
        if self.dead or self.ws is None or (self.checker is not None and not self.checker.done()):
            return
        self.checker = asyncio.create_task(
            check_link(self, watchdogs, feed), name=f"tunnelproof-check-{self.attempt}"
        )


async def run_socket(
    sock: SocketAttempt,
    endpoint: Endpoint,
    timeout: float,
    options: ConnectOptions,
    feed: Callable[[Event], None],
    release: Callable[[int], None],
) -> None:
    """Open ``sock``, feed its frames, and report how it ended.

    ``release(attempt)`` forgets the attempt in the session's table before the final
    event is fed, so the machine's reaction never finds a stale entry.
    """
    attempt = sock.attempt
    kwargs: dict[str, Any] = dict(options.extra)
    kwargs.setdefault("create_connection", DirectConnection)  # unless the app brings one
    if endpoint.url.startswith("wss://") and options.ssl is not None:
        kwargs["ssl"] = options.ssl
    if log.isEnabledFor(logging.DEBUG):  # redacting the URL costs ~0.1 ms per attempt
        log.debug("opening attempt %d to %s", attempt, endpoint.redacted_url())
    try:
        ws = await connect(
            endpoint.url,
            additional_headers=endpoint.headers,
            open_timeout=timeout,
            # No automatic WebSocket pings: Gemini pongs take 8-30 s, so ping timeouts
            # are false alarms. The kernel (TCP_USER_TIMEOUT, keepalive) and the
            # machine's watchdogs find dead links; a ping is sent only to check a link
            # whose reply is overdue, and only its pong counts (never its absence alone
            # before link_check_timeout).
            ping_interval=None,
            ping_timeout=None,
            # Audio does not compress; permessage-deflate only costs CPU.
            compression=None,
            max_size=options.max_frame_bytes,
            close_timeout=options.watchdogs.close_timeout,
            **kwargs,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not sock.dead:
            release(attempt)
            feed(classify_connect_error(attempt, exc))
        return
    if sock.dead:
        ws.transport.abort()
        return
    sock.ws = ws
    sock.direct = can_write_now(ws)
    missing = tune_socket(ws.transport.get_extra_info("socket"), options.watchdogs)
    if missing:
        log.debug("socket options not available here: %s", ", ".join(missing))
    sock.writer = asyncio.create_task(write_loop(sock), name=f"tunnelproof-writer-{attempt}")
    feed(SocketOpened(attempt))
    if isinstance(ws, DirectConnection) and hasattr(ws.recv_messages, "frames"):
        ws.on_message = _direct_reader(sock, ws, feed)
    try:
        async for message in ws:
            if sock.gone():
                return
            feed(FrameReceived(attempt, message))
    except ConnectionClosed:
        pass
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug in a frame handler must not kill the session silently
        log.exception("unexpected error reading attempt %d", attempt)
        ws.transport.abort()
    if sock.gone():
        return
    received = ws.protocol.close_rcvd
    code = received.code if received is not None else None
    reason = received.reason if received is not None else ""
    sent = ws.protocol.close_sent
    if received is None and sent is not None:
        # We failed the connection ourselves (1009: a server frame over max_frame_bytes,
        # 1002/1007: a broken frame). The server sent no code to classify, so the code
        # stays None (a lost link, retried), but the reason says what happened.
        reason = f"closed by the client: {sent.code} {sent.reason}".strip()
    release(attempt)
    sock.stop_helpers()
    feed(SocketClosed(attempt, code, reason))


def _direct_reader(
    sock: SocketAttempt, ws: ClientConnection, feed: Callable[[Event], None]
) -> Callable[[bytes], None]:
    """What ``run_socket``'s read loop does with a message, for :class:`DirectConnection`."""
    attempt = sock.attempt

    def on_message(data: bytes) -> None:
        if sock.gone():
            return
        try:
            feed(FrameReceived(attempt, data))
        except Exception:  # a bug in a frame handler must not kill the session silently
            log.exception("unexpected error reading attempt %d", attempt)
            ws.transport.abort()  # the read loop reports the close

    return on_message


async def check_link(
    sock: SocketAttempt, watchdogs: Watchdogs, feed: Callable[[Event], None]
) -> None:
    """Evidence for ``CheckLink``: the kernel's view, then a ping's pong.

    Only evidence is reported. A pong (inbound bytes) says alive; the kernel holding data
    unacknowledged for long says dead. A quiet link with neither is left to the machine's
    timer, which knows how long to wait (a slow pong is not a dead link).
    """
    ws = sock.ws
    assert ws is not None
    raw = ws.transport.get_extra_info("socket")
    verdict = kernel_verdict(read_kernel_link(raw), watchdogs)
    if verdict is not None:
        if not sock.gone():
            feed(LinkChecked(sock.attempt, False, verdict))
        return
    try:
        pong = asyncio.ensure_future(await ws.ping())
    except ConnectionClosed:
        return  # the reader reports the close
    pong.add_done_callback(_consume)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + watchdogs.link_check_timeout
    while not sock.gone() and loop.time() < deadline:
        done, _ = await asyncio.wait({pong}, timeout=0.5)
        if sock.gone():
            return
        if done:
            feed(LinkChecked(sock.attempt, True, "pong"))
            return
        verdict = kernel_verdict(read_kernel_link(raw), watchdogs)
        if verdict is not None:
            feed(LinkChecked(sock.attempt, False, verdict))
            return


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a finished future's outcome so a closed link logs no stray exception."""
    if not future.cancelled():
        future.exception()


def can_write_now(ws: ClientConnection) -> bool:
    """This ``websockets`` has the connection internals :func:`write_now` uses (checked by
    name, once per socket); if not, every frame goes through the writer task."""
    names = ("paused", "send_in_progress", "send_data", "set_connection_exc")
    return all(hasattr(ws, name) for name in names) and (hasattr(ws.protocol, "send_text"))


def write_now(ws: ClientConnection, text: str) -> bool:
    """Write one text frame at once, as ``await ws.send(text)`` does, when its drain would not
    wait. False (nothing written) otherwise: the caller queues it for the writer task.

    ``ws.send`` writes the frame to the transport before it awaits anything; the await is
    only its flow-control drain. When the connection is open, not paused by flow control
    and no fragmented send is in progress, that drain returns at once, so the frame is
    written here, synchronously, saving a task switch and a coroutine per 20 ms audio
    chunk. Order is kept: the caller writes directly only when nothing is queued, and a
    frame the writer task has taken is on the transport before its drain waits.
    """
    if (
        ws.protocol.state is not State.OPEN
        or ws.paused
        or ws.send_in_progress is not None
        or ws.transport.is_closing()
    ):
        return False
    ws.protocol.send_text(text.encode())
    try:
        ws.send_data()
    except Exception as exc:  # as ws.send does: the link is broken, the reader reports it
        ws.set_connection_exc(exc)
        ws.transport.abort()
    return True


async def write_loop(sock: SocketAttempt) -> None:
    """Send queued frames in order until the socket is gone."""
    ws = sock.ws
    assert ws is not None
    while not sock.dead:
        if not sock.outgoing:
            sock.wake.clear()
            await sock.wake.wait()
            continue
        text = sock.outgoing.popleft()
        try:
            await ws.send(text)
        except ConnectionClosed:
            return  # the reader reports the close


async def close_quietly(ws: ClientConnection, code: int, reason: str) -> None:
    """Start a graceful close; the reader reports the outcome."""
    with contextlib.suppress(Exception):
        await ws.close(code, reason)
