"""Real-socket helpers for the benchmarks that drive ``LiveSession`` against the emulator.

* :class:`EmulatorTokens`: a token source minting one single-use token per call from the
  emulator's ``POST /v1alpha/auth_tokens`` (optionally through a ``TunnelProxy``, so a
  tunnel cuts the token fetch too, as it would on a phone); it records every call's time.
* :class:`TimedSession`: ``LiveSession`` that also timestamps every server frame per
  attempt (the goAway gap is measured between two sockets' frames).
* :class:`Recorder`: consumes a session's events with their arrival times and waits on them.
* :func:`tunnel_trial`: one real-time tunnel (benchmark 2).

Instrumentation only observes: the session's decisions are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential, TokenOffline, TokenUnavailable
from tunnelproof.session.events import Event, FrameReceived
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.policy import RetryPolicy

# The default session, as every user of Google's Live models has it: the default model,
# AUDIO answers with transcription (the strict emulator refuses TEXT on Live models).
CONFIG = LiveConfig()


class EmulatorTokens:
    """Mint a fresh token per call (a backend's job) and remember when each call was made.

    ``http_base`` is where to mint (the emulator, or a proxy in front of it); ``ws_base`` is
    put in the credential. A new HTTP connection per call, like ``TokenServiceSource``: a
    pooled one may be half-open right after a drop.
    """

    def __init__(self, http_base: str, ws_base: str, api_key: str, *, verify: Any = True) -> None:
        self.http_base = http_base
        self.ws_base = ws_base
        self.api_key = api_key
        # One TLS context for all calls: httpx builds a new one (loading the CA bundle,
        # ~20 ms of CPU) for every client created with verify=True.
        self.verify = _ssl_context() if verify is True else verify
        self.calls: list[float] = []  # monotonic times

    async def __call__(self) -> Credential:
        """One fresh single-use token."""
        self.calls.append(time.monotonic())
        try:
            async with httpx.AsyncClient(
                verify=self.verify,
                timeout=30.0,
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as client:
                response = await client.post(
                    f"{self.http_base}/v1alpha/auth_tokens",
                    headers={"x-goog-api-key": self.api_key},
                    json={"uses": 1},
                )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TokenOffline(type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise TokenUnavailable(type(exc).__name__) from exc
        if response.status_code != 200:
            raise TokenUnavailable(f"mint answered {response.status_code}")
        now = time.time()
        return Credential(
            kind="ephemeral_token",
            secret=response.json()["name"],
            ws_base=self.ws_base,
            api_version="v1alpha",
            expires_at=now + 1800,
            new_session_expires_at=now + 60,
        )


def _ssl_context() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class TimedSession(LiveSession):
    """``LiveSession`` recording ``(monotonic time, attempt)`` of every server frame."""

    frames: list[tuple[float, int]]

    def _feed(self, event: Event) -> None:
        if isinstance(event, FrameReceived):
            if not hasattr(self, "frames"):
                self.frames = []
            self.frames.append((time.monotonic(), event.attempt))
        super()._feed(event)


class Recorder:
    """Collect ``(monotonic time, event)`` from a session in the background."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.log: list[tuple[float, ev.AppEvent]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.session.events():
            self.log.append((time.monotonic(), event))
            self._changed.set()

    def count(self, kind: type[Any]) -> int:
        """How many events of ``kind`` so far."""
        return sum(1 for _, e in self.log if isinstance(e, kind))

    def times(self, kind: type[Any], after: float = float("-inf")) -> list[float]:
        """Arrival times of events of ``kind`` after ``after``."""
        return [t for t, e in self.log if isinstance(e, kind) and t > after]

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True

    async def wait_for(self, kind: type[Any], *, after: float, timeout: float) -> float | None:
        """Time of the first ``kind`` event after ``after``, waiting up to ``timeout``."""
        ok = await self.wait(lambda: bool(self.times(kind, after)), timeout)
        return self.times(kind, after)[0] if ok else None

    async def stop(self) -> None:
        """Stop consuming (the session should be closed first)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _free_low_port(low: int = 20000, high: int = 32000) -> int:
    """A free loopback port outside Linux's default ephemeral range (32768-60999)."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


async def _listen_again(upstream_port: int, port: int) -> Any:
    """Start the proxy on ``port`` again, retrying briefly if the port is still busy."""
    from tunnelproof.testing.tunnel import TunnelProxy

    for attempt in range(50):  # bounded: about 5 s
        try:
            return await TunnelProxy("127.0.0.1", upstream_port, listen_port=port).start()
        except OSError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)
    raise RuntimeError("unreachable")


async def tunnel_trial(
    policy: RetryPolicy, length: float, *, mode: str = "unreachable", timeout: float
) -> dict[str, Any]:
    """One real-time tunnel of ``length`` seconds (see benchmark 2's docstring).

    ``mode="unreachable"``: the proxy resets its connections and stops listening (connects
    are refused at once, as when the phone knows it has no network), then listens again on
    the same port. ``mode="blackhole"``: the proxy resets its connections and holds new
    ones silently until the tunnel ends (they then complete at once: optimistic, a real
    SYN would wait for its next retransmission).
    """
    from tunnelproof.emulator import EmulatorServer
    from tunnelproof.testing.tunnel import TunnelProxy

    async with EmulatorServer() as emu:
        # A port below the ephemeral range: while the proxy is down, the client's own
        # outgoing connections could otherwise be given this port (even connect to
        # themselves) and the proxy could not listen on it again.
        port = _free_low_port()
        proxy = await TunnelProxy("127.0.0.1", emu.port, listen_port=port).start()
        tokens = EmulatorTokens(proxy.url("http"), proxy.url("ws"), emu.api_key)
        session = LiveSession(CONFIG, tokens, policy=policy)
        await session.start()
        rec = Recorder(session)
        try:
            if not await rec.wait(lambda: rec.count(ev.Connected) > 0, 15.0):
                raise RuntimeError("the session did not connect")
            # Wait for a resumption handle, or there is nothing to resume.
            if not await rec.wait(lambda: session.resumption_handle is not None, 10.0):
                raise RuntimeError("no resumption handle arrived")
            metrics_before = session.metrics
            calls_before = len(tokens.calls)
            entered = time.monotonic()
            if mode == "blackhole":
                proxy.blackhole()
                proxy.reset()  # the phone's OS drops its sockets as the signal goes
                await asyncio.sleep(length)
                proxy.restore()
            else:
                proxy.reset()
                await proxy.stop()
                await asyncio.sleep(length)
                proxy = await _listen_again(emu.port, port)
            exit_at = time.monotonic()
            restored = await rec.wait_for(ev.Resumed, after=entered, timeout=timeout)
            fresh = rec.times(ev.Connected, after=entered)
            if restored is None and fresh:
                restored = fresh[0]
            after = session.metrics
            return {
                "tunnel_s": length,
                "mode": mode,
                "restored_after_s": (restored - exit_at) if restored is not None else None,
                "resumed": bool(rec.times(ev.Resumed, after=entered)),
                "gave_up": rec.count(ev.Failed) > 0,
                "attempts": len(tokens.calls)
                - calls_before
                + (after.tokens_reused - metrics_before.tokens_reused),
                "token_requests": len(tokens.calls) - calls_before,
                "connects": after.connect_attempts - metrics_before.connect_attempts,
            }
        finally:
            await session.close()
            await rec.stop()
            await proxy.stop()
