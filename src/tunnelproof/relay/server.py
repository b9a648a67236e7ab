"""``RelayServer``: devices speak the Live API to it; it keeps one upstream per conversation.

Paths are Google's (and the emulator's), so a client changes only its base URL::

    GET /ws/google.ai.generativelanguage.{VERSION}.GenerativeService.BidiGenerateContent
    GET /ws/google.ai.generativelanguage.{VERSION}.GenerativeService.BidiGenerateContentConstrained

(``VERSION``: v1, v1alpha, v1beta)
    GET /relay/stats   (loopback peers only: counters as JSON)

``//ws/...`` is served too. Embed it in an aiohttp app with :meth:`RelayServer.add_routes`
(then ``await relay.start_background()`` / ``relay.shutdown()`` around the app), or run it
standalone (``async with RelayServer(...)``, or ``tunnelproof relay``).

One device connection: authenticate the upgrade (:mod:`tunnelproof.relay.auth`), read
``setup``, either start a conversation (upstream ``setupComplete`` first, so an upstream
refusal reaches the device as a close) or resume one from the relay handle in
``sessionResumption.handle``, send ``setupComplete``, replay what the device missed, then
forward both ways until the socket ends. The device's drop only detaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl as ssl_module
import time
import uuid
from dataclasses import asdict
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from tunnelproof.protocol.casing import camelize_keys
from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT, REASON_RESOURCE_EXHAUSTED
from tunnelproof.protocol.relay_setup import split_name
from tunnelproof.relay import wire
from tunnelproof.relay.auth import DeviceAuthenticator, DeviceIdentity, Refused
from tunnelproof.relay.conversation import Conversation, ConversationStats
from tunnelproof.relay.device import DeviceSocket
from tunnelproof.relay.handles import HandleCodec, HandleInvalid, RelayHandle
from tunnelproof.relay.scaleout import FlushingHandleStore, RedisCoordinator
from tunnelproof.relay.settings import RelaySettings
from tunnelproof.session.credentials import TokenSource
from tunnelproof.session.handle_store import HandleStore

log = logging.getLogger("tunnelproof.relay")

WS_PATH = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(v1|v1alpha|v1beta)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_ROUTE = (
    r"/{slashes:/*}ws/{method:google\.ai\.generativelanguage\.(?:v1|v1alpha|v1beta)"
    r"\.GenerativeService\.BidiGenerateContent(?:Constrained)?}"
)
SETUP_TIMEOUT = 30.0
MAX_DEVICE_FRAME = 16 * 1024 * 1024


class RelayServer:
    """The relay. ``upstream`` is a token source for Gemini (e.g.
    :class:`~tunnelproof.tokens.direct.ApiKeySource`): the API key stays here.

    ``handle_store`` keeps upstream handles (default: in memory); ``port=0`` picks a port;
    ``ssl`` serves ``wss://`` (google-genai always connects with ``wss``). ``coordinator``
    (with a shared Redis ``handle_store``) runs several processes as one relay
    (:mod:`tunnelproof.relay.scaleout`).
    """

    def __init__(
        self,
        upstream: TokenSource,
        devices: DeviceAuthenticator,
        *,
        settings: RelaySettings | None = None,
        handle_store: HandleStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
        coordinator: RedisCoordinator | None = None,
    ) -> None:
        self.ssl = ssl
        self.coordinator = coordinator
        self.settings = settings or RelaySettings()
        self.upstream = upstream
        self.devices = devices
        self.codec = HandleCodec(self.settings.secret)
        if handle_store is None:
            from tunnelproof.session.stores import MemoryHandleStore

            handle_store = MemoryHandleStore()
        if coordinator is not None:
            # Flush a conversation's record before storing an upstream handle: a stored
            # handle then never holds a device message the record lacks (scaleout).
            handle_store = FlushingHandleStore(handle_store, coordinator)
        self.handle_store = handle_store
        self.host = host
        self.requested_port = port
        self.port = 0
        self.conversations: dict[str, Conversation] = {}
        self.totals = ConversationStats()
        self.refused: dict[str, int] = {}
        self.device_connections = 0
        self.process_takeovers = 0  # conversations taken over from another relay process
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._sockets: set[DeviceSocket] = set()
        self._background: set[asyncio.Future[None]] = set()

    # -- addresses ------------------------------------------------------------------------

    @property
    def ws_base(self) -> str:
        """``ws://host:port`` of the standalone server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl else 'ws'}://{host}:{self.port}"

    @property
    def http_base(self) -> str:
        """``http(s)://host:port`` (the base URL for google-genai's ``http_options``)."""
        return self.ws_base.replace("ws", "http", 1)

    def ws_url(self, version: str = "v1beta", constrained: bool = False) -> str:
        """A full device WebSocket URL."""
        method = "BidiGenerateContentConstrained" if constrained else "BidiGenerateContent"
        return (
            f"{self.ws_base}/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"
        )

    def ready_info(self) -> dict[str, Any]:
        """The JSON the CLI prints when ready (no secret in it)."""
        return {
            "event": "ready",
            "ws": self.ws_base,
            "wsUrl": self.ws_url("v1alpha", constrained=True),
            "port": self.port,
            "stats": f"{self.http_base}/relay/stats",
        }

    # -- lifecycle -------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Mount the device WebSocket paths (and ``/relay/stats``) on ``app``.

        Only those paths: the app's other routes are untouched.
        """
        app.router.add_get("/relay/stats", self._stats)
        app.router.add_get(_ROUTE, self.handle_device)

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve standalone on ``host:port``."""
        app = web.Application()
        self.add_routes(app)
        # Standalone, every other path answers like Google's 404 (JSON).
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.requested_port, ssl_context=self.ssl, reuse_address=True
        )
        await site.start()
        self._runner = runner
        server = site._server
        sockets: list[socket.socket] = list(getattr(server, "sockets", []) or [])
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        await self.start_background()

    async def start_background(self) -> None:
        """Start the sweeper (and the Redis coordinator); call once when embedding."""
        if self.coordinator is not None and self._sweeper is None:
            await self.coordinator.start(self._hand_over, self._lost)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="relay-sweeper")

    async def stop(self) -> None:
        """Close every conversation (upstream handles stay in the store) and stop serving."""
        await self.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def shutdown(self) -> None:
        """Close conversations and background tasks (for embedded use)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conv in list(self.conversations.values()):
            if self.coordinator is not None:
                await self._hand_over(conv.id)  # another process takes it from here
            else:
                await conv.close()
        for sock in list(self._sockets):
            await sock.stop()
        if self.coordinator is not None:
            await self.coordinator.stop()

    async def _sweep(self) -> None:
        interval = max(0.5, min(60.0, self.settings.parked_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            horizon = time.monotonic() - self.settings.parked_ttl
            for conv in list(self.conversations.values()):
                if conv.device is None and conv.upstream is None and conv.last_active < horizon:
                    await conv.close()

    # -- HTTP --------------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        if not _loopback(request):
            return web.json_response({"error": "forbidden"}, status=403)
        return web.json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        """Counters, summed over every conversation seen by this process."""
        totals = asdict(self.totals)
        for conv in self.conversations.values():
            for key, value in asdict(conv.stats).items():
                totals[key] += value
        buffered = sum(c.buffer.size_bytes for c in self.conversations.values())
        return {
            "conversations": len(self.conversations),
            "devices_attached": sum(1 for c in self.conversations.values() if c.device),
            "upstreams_open": sum(1 for c in self.conversations.values() if c.upstream),
            "device_connections": self.device_connections,
            "process_takeovers": self.process_takeovers,
            "buffered_bytes": buffered,
            "refused": dict(self.refused),
            **totals,
        }

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if WS_PATH.match(request.path) is None:
            return web.json_response(
                {"error": {"code": 404, "message": "Not found.", "status": "NOT_FOUND"}},
                status=404,
            )
        if request.method != "GET":
            return web.json_response({"error": {"code": 405}}, status=405)
        return await self.handle_device(request)

    def _refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1

    async def handle_device(self, request: web.Request) -> web.StreamResponse:
        """Serve one device WebSocket (an aiohttp handler)."""
        try:
            identity = await self.devices.admit(request)
        except Refused as exc:
            log.info("device upgrade refused (%d): %s", exc.status, exc.reason)
            self._refuse("auth")
            body = {"error": {"code": exc.status, "message": "Unauthorized."}}
            return web.json_response(body, status=exc.status)
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=MAX_DEVICE_FRAME)
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": {"code": 400}}, status=400)
        await ws.prepare(request)
        self.device_connections += 1
        device = DeviceSocket(
            ws, max_bytes=self.settings.device_queue_bytes, text_frames=self.settings.text_frames
        )
        self._sockets.add(device)
        conv: Conversation | None = None
        try:
            conv = await self._setup(ws, device, identity)
            if conv is not None:
                await self._forward(ws, device, conv)
        finally:
            if conv is not None:
                conv.detach(device, reason="socket ended")
            if not ws.closed:
                # Let queued frames (a close reason) go out first, briefly.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(device.gone.wait(), 2.0)
            await device.stop()
            self._sockets.discard(device)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    async def _first_frame(self, ws: web.WebSocketResponse) -> tuple[str, wire.JsonDict] | None:
        with contextlib.suppress(TimeoutError):
            msg = await asyncio.wait_for(ws.receive(), SETUP_TIMEOUT)
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                return wire.parse_device_frame(msg.data)
        return None

    async def _setup(
        self, ws: web.WebSocketResponse, device: DeviceSocket, identity: DeviceIdentity
    ) -> Conversation | None:
        try:
            first = await self._first_frame(ws)
            if first is None:
                return None
            kind, setup = first
            if kind != "setup":
                raise wire.invalid()
            raw_handle = wire.setup_handle(setup)
            wants = wire.wants_handles(setup)
            if raw_handle is None:
                if identity.conversation is not None:
                    raise wire.invalid()  # a resume ticket used for a new conversation
                conv = await self._new_conversation(setup, identity)
                conv.attach(device, position=None, wants_handles=wants)
                return conv
            position = self._position(raw_handle, identity)
            conv = await self._resumable(position, setup)
            conv.attach(device, position=position, wants_handles=wants)
            if conv.upstream is None:
                await conv.open_upstream()
            elif conv.upstream.state == "failed":
                await conv.upstream.resume()  # the device is back: try upstream again
            return conv
        except wire.WireError as exc:
            self._refuse(f"close_{exc.code}")
            device.kick(exc.code, exc.reason)
            return None
        except Exception:
            # e.g. Redis unreachable during a takeover: refuse this attempt, stay up.
            log.exception("device setup failed")
            self._refuse("internal")
            device.kick(1011, "Internal error encountered.")
            return None

    def _position(self, raw: str, identity: DeviceIdentity) -> RelayHandle:
        try:
            position = self.codec.decode(raw)
        except HandleInvalid:
            raise wire.invalid() from None
        if position.user_id != identity.user_id:
            raise wire.invalid()  # never tell whose conversation it is
        if identity.conversation is not None and identity.conversation != position.conversation:
            raise wire.invalid()
        return position

    async def _new_conversation(
        self, setup: wire.JsonDict, identity: DeviceIdentity
    ) -> Conversation:
        if len(self.conversations) >= self.settings.max_conversations:
            raise wire.WireError(1013, "The service is currently unavailable.")
        mine = sum(
            1
            for c in self.conversations.values()
            if c.user_id == identity.user_id and c.upstream is not None
        )
        if mine >= self.settings.max_upstreams_per_user:
            raise wire.WireError(1013, REASON_RESOURCE_EXHAUSTED)
        config = wire.config_from_setup(setup, self.settings.default_model)
        conv = self._make(uuid.uuid4().hex, identity.user_id, config, setup)
        if self.coordinator is not None:
            if not await self.coordinator.try_acquire(conv.id):
                raise wire.WireError(1011, "Internal error encountered.")
            self.coordinator.track(conv.id, conv)
        await conv.open_upstream()
        failure = await conv.wait_ready(self.settings.upstream_connect_timeout)
        if failure is not None:
            log.warning("[%s] new conversation refused: %s", conv.id, failure)
            await conv.close()
            raise wire.WireError(1011, "Internal error encountered.")
        return conv

    async def _resumable(self, position: RelayHandle, setup: wire.JsonDict) -> Conversation:
        conv = self.conversations.get(position.conversation)
        if conv is not None and conv.closed and self.coordinator is not None:
            conv = None  # being handed over: take it back through the lease
        if conv is not None:
            if conv.user_id != position.user_id or conv.closed:
                raise wire.invalid()
            if position.seq > conv.buffer.last_seq:
                raise wire.invalid()
            return conv
        if self.coordinator is not None:
            return await self._take_over(position)
        # Not in this process (restarted): resumable only if the upstream handle is in
        # the store; the buffer before the restart is gone.
        stored = await self.handle_store.load(position.conversation, now_wall=time.time())
        if stored is None:
            raise wire.invalid()
        config = wire.config_from_setup(setup, self.settings.default_model)
        conv = self._make(position.conversation, position.user_id, config, setup)
        conv.buffer.last_seq = position.seq
        conv.received = position.received
        return conv

    async def _take_over(self, position: RelayHandle) -> Conversation:
        """Become the owner of a conversation another process holds (or held)."""
        coord = self.coordinator
        assert coord is not None
        conv_id = position.conversation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.takeover_timeout
        asked: str | None = None
        while not await coord.try_acquire(conv_id):
            owner = await coord.owner(conv_id)
            if owner is not None and owner != asked:
                await coord.request_handover(conv_id, owner)
                asked = owner
            if loop.time() > deadline:
                self._refuse("takeover_timeout")
                raise wire.WireError(1013, "The service is currently unavailable.")
            await asyncio.sleep(0.05)
        loaded = await coord.load(conv_id)
        if loaded is None or loaded.user_id != position.user_id:
            await coord.release(conv_id)
            raise wire.invalid()
        config = wire.config_from_setup(loaded.setup, self.settings.default_model)
        conv = self._make(conv_id, loaded.user_id, config, loaded.setup)
        conv.buffer.restore(loaded.frames, max(loaded.last_seq, position.seq))
        conv.received = max(loaded.received, position.received)
        if position.received > loaded.received:
            # The device was told the dead owner had these (a handle it sent), so the
            # device will not replay them; the owner died before flushing them. Counted.
            conv.stats.input_lost_to_owner_death += position.received - loaded.received
            log.error(
                "[%s] the previous owner died before recording %d device message(s) it had"
                " received: they are lost",
                conv_id,
                position.received - loaded.received,
            )
        self.process_takeovers += 1
        coord.track(conv_id, conv, stored_through=loaded.last_seq)
        # Before the cut turn's end (that ends the last one's turn); the digests make the
        # duplicate check shared: the device's replay of what the dead owner had is dropped.
        conv.carry(loaded.unheld, loaded.digests)
        if loaded.generating:
            log.warning("[%s] the previous owner died mid-turn: the turn is cut", conv_id)
            conv.report_cut_turn()
        return conv

    async def _hand_over(self, conv_id: str) -> None:
        """Another process wants ``conv_id``: give it up cleanly (see scaleout)."""
        conv = self.conversations.get(conv_id)
        coord = self.coordinator
        if conv is None or coord is None:
            return
        await conv.hand_over(self.settings.handover_turn_wait)
        await coord.flush(conv_id)
        await coord.release(conv_id)
        if self.conversations.get(conv_id) is conv:
            del self.conversations[conv_id]
            for key, value in asdict(conv.stats).items():
                setattr(self.totals, key, getattr(self.totals, key) + value)
        log.info("[%s] handed over", conv_id)

    async def _lost(self, conv_id: str) -> None:
        """Our lease was lost: another process owns it; stop at once."""
        conv = self.conversations.pop(conv_id, None)
        if conv is not None:
            conv.closed = True
            conv._end_device(1001, "")
            await conv.close_upstream()

    def _make(self, conv_id: str, user_id: str, config: Any, setup: wire.JsonDict) -> Conversation:
        conv = Conversation(
            id=conv_id,
            user_id=user_id,
            config=config,
            setup=camelize_keys(dict(setup)),
            settings=self.settings,
            codec=self.codec,
            token_source=self.upstream,
            handle_store=self.handle_store,
        )
        conv.on_closed = self._forget
        if self.coordinator is not None:
            conv.record = self.coordinator.flush
        self.conversations[conv_id] = conv
        return conv

    def _forget(self, conv: Conversation) -> None:
        if self.conversations.get(conv.id) is conv:
            del self.conversations[conv.id]
            if self.coordinator is not None:
                task = asyncio.ensure_future(self.coordinator.forget(conv.id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            for key, value in asdict(conv.stats).items():
                setattr(self.totals, key, getattr(self.totals, key) + value)

    async def _forward(
        self, ws: web.WebSocketResponse, device: DeviceSocket, conv: Conversation
    ) -> None:
        # A kick (replaced, not draining, conversation over) closes the socket from the
        # writer, which ends this loop.
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return
            if conv.device is not device:
                return  # replaced by a newer connection
            name, data = split_name(msg.data)  # a tunnelproof client names its messages
            try:
                kind, body = wire.parse_device_frame(data)
                if kind == "setup":
                    raise wire.invalid()
            except wire.WireError as exc:
                device.kick(exc.code, exc.reason)
                return
            await conv.from_device(kind, body, name=name)


def _loopback(request: web.Request) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return False
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(peer[0]).is_loopback
    return False


__all__ = ["REASON_INVALID_ARGUMENT", "RelayServer"]
