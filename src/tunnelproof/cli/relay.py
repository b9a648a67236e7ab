"""`tunnelproof relay`: run the relay (devices ↔ relay ↔ Gemini; see docs/relay.md).

Devices connect with the Live API wire protocol to the printed ``wsUrl`` (same paths as
Google). When listening, one JSON line goes to stdout::

    {"event": "ready", "ws": "ws://127.0.0.1:8765", "wsUrl": "ws://…/ws/…Constrained",
     "port": 8765, "stats": "http://127.0.0.1:8765/relay/stats", "upstream": "wss://…"}

Secrets come from the environment only, never from flags (they would show in ``ps``):
``GEMINI_API_KEY`` / ``TUNNELPROOF_API_KEY`` (upstream), ``TUNNELPROOF_RELAY_TICKET_SECRET``
(verifies tickets minted by the token service), ``TUNNELPROOF_RELAY_SECRET`` (signs device
handles; share it between relay processes), ``TUNNELPROOF_RELAY_STATIC_KEYS``
(``user:key,…`` development bearer keys).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import ssl
import sys

import typer

from tunnelproof.protocol.endpoints import GOOGLE_WS_BASE


def command(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(0, help="Port (0 picks a free one)."),
    upstream: str = typer.Option(GOOGLE_WS_BASE, help="Gemini's (or the emulator's) ws base."),
    grace: float = typer.Option(120.0, help="Seconds the upstream stays open for a gone device."),
    buffer_mb: float = typer.Option(8.0, help="Output buffer bound per conversation (MB)."),
    buffer_seconds: float = typer.Option(120.0, help="Output buffer age bound (seconds)."),
    model: str = typer.Option("gemini-3.8-live", help="Model for setups that name none."),
    separate_handle_frames: bool = typer.Option(
        False, help="Send device handles as their own frames (strict protobuf clients)."
    ),
    text_frames: bool = typer.Option(
        False, help="Send text frames (Google sends binary; for JSON.parse-only clients)."
    ),
    redis_url: str | None = typer.Option(
        None, help="redis://… shared by every relay process (owner leases, handover)."
    ),
    lease: float = typer.Option(10.0, help="Owner lease (seconds) with --redis-url."),
    certfile: str | None = typer.Option(None, help="TLS certificate (PEM): serve wss://."),
    keyfile: str | None = typer.Option(None, help="TLS private key (PEM) for --certfile."),
    log_level: str = typer.Option("warning", help="Python log level."),
) -> None:
    """Run the relay until SIGINT/SIGTERM."""
    from tunnelproof.relay import BufferLimits, DeviceAuthenticator, RelayServer, RelaySettings
    from tunnelproof.tokens.auth import StaticKeyAuthenticator
    from tunnelproof.tokens.direct import ApiKeySource
    from tunnelproof.tokens.tickets import TicketLedger, TicketSigner

    if not 0 <= port <= 65535:
        typer.echo(f"tunnelproof relay: --port must be between 0 and 65535, got {port}.", err=True)
        raise typer.Exit(code=2)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr)
    api_key = os.environ.get("TUNNELPROOF_API_KEY") or os.environ.get("GEMINI_API_KEY")
    if not api_key:
        typer.echo("tunnelproof relay: set GEMINI_API_KEY (or TUNNELPROOF_API_KEY).", err=True)
        raise typer.Exit(code=2)
    ticket_secret = os.environ.get("TUNNELPROOF_RELAY_TICKET_SECRET", "")
    static = os.environ.get("TUNNELPROOF_RELAY_STATIC_KEYS", "")
    keys: dict[str, str] = {}
    for pair in static.split(","):
        user, sep, key = pair.strip().partition(":")
        if sep and user and key:
            keys[key] = user
    if not ticket_secret and not keys:
        typer.echo(
            "tunnelproof relay: no way to admit devices: set TUNNELPROOF_RELAY_TICKET_SECRET "
            "and/or TUNNELPROOF_RELAY_STATIC_KEYS.",
            err=True,
        )
        raise typer.Exit(code=2)
    relay_secret = os.environ.get("TUNNELPROOF_RELAY_SECRET", "")
    coordinator = None
    handle_store = None
    signer = TicketSigner(ticket_secret) if ticket_secret else None
    consume = TicketLedger().consume if signer else None
    if redis_url:
        if not relay_secret:
            typer.echo(
                "tunnelproof relay: --redis-url needs TUNNELPROOF_RELAY_SECRET, shared by "
                "every relay process (it signs the device handles).",
                err=True,
            )
            raise typer.Exit(code=2)
        from tunnelproof.relay.scaleout import RedisCoordinator, RedisTicketLedger
        from tunnelproof.session.stores import RedisHandleStore

        coordinator = RedisCoordinator(redis_url, lease=lease)
        handle_store = RedisHandleStore(redis_url)
        if signer:
            consume = RedisTicketLedger(coordinator.redis).consume
    devices = DeviceAuthenticator(
        signer=signer,
        consume=consume,
        authenticator=StaticKeyAuthenticator(keys) if keys else None,
    )
    settings = RelaySettings(
        grace_period=grace,
        buffer=BufferLimits(max_bytes=int(buffer_mb * 1024 * 1024), max_age=buffer_seconds),
        default_model=model,
        handle_in_frame=not separate_handle_frames,
        text_frames=text_frames,
    )
    if relay_secret:
        settings = dataclasses.replace(settings, secret=relay_secret.encode())
    tls = None
    if certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
    server = RelayServer(
        ApiKeySource(api_key, ws_base=upstream),
        devices,
        settings=settings,
        host=host,
        port=port,
        coordinator=coordinator,
        handle_store=handle_store,
        ssl=tls,
    )

    ready = False

    async def serve() -> None:
        nonlocal ready
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            ready = True
            sys.stdout.write(json.dumps({**server.ready_info(), "upstream": upstream}) + "\n")
            sys.stdout.flush()
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        if ready:
            raise
        # Before the ready line: the address cannot be bound (unknown host, in use).
        typer.echo(
            f"tunnelproof relay: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True
        )
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    """Add the `relay` command to ``app``."""
    app.command("relay")(command)
