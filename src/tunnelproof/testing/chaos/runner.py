"""The chaos soak: many concurrent ``LiveSession`` conversations through seeded faults.

The stack, all on loopback::

    LiveSession ── TunnelProxy (one per session) ──┐
         │                                         ├── emulator (a subprocess, restarted)
         └── TokenGate (faults) ── token service ──┘      (mints there)

* the emulator runs as :class:`~tunnelproof.emulator.EmulatorProcess` with persisted
  sessions, so a restart is a server restart, not amnesia;
* the token service is the real one (uvicorn, static bearer keys, one per session), its
  tokens locked to the same ``LiveConfig`` the sessions use; the :class:`TokenGate` in
  front of it fails on schedule;
* each session has its own :class:`~tunnelproof.testing.tunnel.TunnelProxy`, so a
  blackhole or a reset hits one conversation.

While it runs, :class:`ChaosStack` polls the emulator's event log (connections set up and
closed, refused resumes) and samples every session's outbox and the process's memory.
Afterwards :func:`~tunnelproof.testing.chaos.verdict.build_report` checks the client's
records against the emulator's server-side history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess
from tunnelproof.protocol.types import JsonDict
from tunnelproof.testing.chaos.config import CHAOS_CONFIG, CHAOS_WATCHDOGS, ChaosConfig
from tunnelproof.testing.chaos.driver import ChaosSession
from tunnelproof.testing.chaos.gate import TokenGate
from tunnelproof.testing.chaos.links import Links
from tunnelproof.testing.chaos.observed import Observed, peak_rss_kb, rss_kb
from tunnelproof.testing.chaos.record import SessionRecord
from tunnelproof.testing.chaos.schedule import (
    link_latency_ms,
    plan_session,
    restart_times,
)
from tunnelproof.testing.chaos.verdict import build_report
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.tokens.minting import Minter
from tunnelproof.tokens.router import TokenService
from tunnelproof.tokens.settings import TokenServiceSettings

log = logging.getLogger("tunnelproof.chaos")


API_KEY = "chaos-emulator-key"

CHAOS_EMULATOR_POLICY = dict(
    # The soak injects goAway itself (at and off turn boundaries); natural lifetimes and
    # session limits would only add unplanned closes at random times.
    connection_lifetime=3600.0,
    session_limit_audio=36_000.0,
    session_limit_video=36_000.0,
    # Spoken answers at 30 ms a word in 90 ms chunks: a long answer ("count to 40") lasts
    # about a second, so a fault can land in the middle of one, without 120 sessions'
    # real-time audio swamping two cores.
    seconds_per_word=0.03,
    audio_chunk_duration=0.09,
    tool_call_delay=0.0,
    auth_close_timeout=5.0,
)


_WATCHED = ("setup_complete", "connection_closed", "resume_refused", "resume_takeover")


class ChaosStack:
    """The running stack and the controls the sessions use to inject faults."""

    def __init__(self, emulator: EmulatorProcess, gate: TokenGate, observed: Observed) -> None:
        self.emulator = emulator
        self.gate = gate
        self.observed = observed
        self.gate_url = gate.url
        # Bound but never listening: every connection to it is refused (ECONNREFUSED), as
        # a token service that is down. Held open for the run so no one else takes the port.
        self._refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refusing.bind(("127.0.0.1", 0))
        self.refused_url = f"http://127.0.0.1:{self._refusing.getsockname()[1]}/api/live/token"
        self._http: aiohttp.ClientSession | None = None
        self._refusal_lock = asyncio.Lock()
        self._cursors: dict[str, int] = {}
        self._restarting = asyncio.Event()
        self._restarting.set()  # set = not restarting (the emulator answers)

    # -- identity -------------------------------------------------------------------------

    @staticmethod
    def caller(index: int) -> str:
        """The ``Authorization`` header of session ``index``'s user."""
        return f"Bearer chaos-key-{index}"

    def tokens_of(self, index: int) -> set[str]:
        """Every token minted for session ``index``."""
        caller = self.caller(index)
        return {t for t, c in self.gate.minted.items() if c == caller}

    def session_of_token(self) -> dict[str, int]:
        """token name -> session index."""
        out: dict[str, int] = {}
        for token, caller in self.gate.minted.items():
            out[token] = int(caller.rsplit("-", 1)[1])
        return out

    # -- emulator control over HTTP (one pooled client, fresh sockets) -------------------------

    async def start(self) -> None:
        """Open the HTTP client used for controls and polling."""
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=16),
            timeout=aiohttp.ClientTimeout(total=15.0),
        )

    async def stop(self) -> None:
        """Close the HTTP client and the refusing socket."""
        if self._http is not None:
            await self._http.close()
        self._refusing.close()

    async def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        await self._restarting.wait()
        assert self._http is not None
        query = {k: str(v) for k, v in params.items() if v is not None}
        url = self.emulator.control_url + path
        async with self._http.request(method, url, json=body, params=query) as response:
            data = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data

    async def _try(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """``_call`` that returns ``None`` instead of raising (a fault that could not land)."""
        try:
            return await self._call(method, path, body, **params)
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            self.observed.emulator_errors += 1
            log.debug("emulator control %s %s failed: %s", method, path, exc)
            return None

    async def connection_of(self, index: int) -> str | None:
        """The emulator connection currently carrying session ``index`` (by its tokens)."""
        conns = await self._try("GET", "/connections", open="1")
        if not conns:
            return None
        mine = self.tokens_of(index)
        found = [c for c in conns if c.get("token") in mine and c.get("state") == "open"]
        if not found:
            return None
        return str(max(found, key=lambda c: float(c.get("opened_at") or 0.0))["id"])

    async def emulator_close(self, conn: str, code: int, reason: str) -> bool:
        """Close ``conn`` with ``code``/``reason``; ``False`` if it could not be done."""
        body = {"code": code, "reason": reason}
        return await self._try("POST", f"/connections/{conn}/close", body) is not None

    async def emulator_go_away(self, conn: str, time_left: float) -> bool:
        """Send ``goAway`` on ``conn``."""
        body = {"timeLeft": time_left}
        return await self._try("POST", f"/connections/{conn}/go_away", body) is not None

    async def think_next_turn(self, index: int, seconds: float) -> bool:
        """Make session ``index``'s model think ``seconds`` before its next answer."""
        conns = await self._try("GET", "/connections", open="1")
        mine = self.tokens_of(index)
        found = [c for c in conns or () if c.get("token") in mine and c.get("session")]
        if not found:
            return False
        newest = max(found, key=lambda c: float(c.get("opened_at") or 0.0))
        body = {"seconds": seconds}
        return await self._try("POST", f"/sessions/{newest['session']}/think", body) is not None

    async def refuse_next_resume(
        self, code: int, reason: str, provoke: Callable[[], None], timeout: float = 15.0
    ) -> bool:
        """Arm "refuse the next resume" and ``provoke`` one; True once a refusal happened.

        Refusals are global in the emulator, so injections are serialised: the next one is
        armed only after this one was consumed (by this session or another resuming then).
        """
        async with self._refusal_lock:
            before = self.observed.refusals_consumed
            arm = {"count": 1, "code": code, "reason": reason}
            if await self._try("POST", "/resumes/refuse", arm) is None:
                return False
            provoke()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                await self.poll_events(("resume_refused",))
                if self.observed.refusals_consumed > before:
                    return True
                await asyncio.sleep(0.2)
            await self._try("POST", "/resumes/refuse", {"count": 0})
            return False

    # -- observation ----------------------------------------------------------------------------

    async def poll_events(self, kinds: Iterable[str] = _WATCHED) -> None:
        """Fetch new events of ``kinds`` from the emulator's log."""
        for kind in kinds:
            since = self._cursors.get(kind, 0)
            events = await self._try("GET", "/events", since=since, kind=kind)
            if not events:
                continue
            self._cursors[kind] = max(int(e["seq"]) for e in events)
            for e in events:
                self.observed.events.append(e)
                if kind == "resume_refused" and e.get("problem") == "fault":
                    self.observed.refusals_consumed += 1

    async def restart_emulator(self) -> None:
        """Restart the emulator process (SIGTERM, state saved, start on the same port)."""
        await self.poll_events()
        self.observed.emulator_peak_rss_kb = max(
            self.observed.emulator_peak_rss_kb, peak_rss_kb(self.emulator.pid)
        )
        self._restarting.clear()
        try:
            self.observed.restarts.append(time.time())
            await self.emulator.restart()
        finally:
            # A new process numbers its events from 1 again.
            self._cursors.clear()
            self._restarting.set()


# -- running -------------------------------------------------------------------------------


def is_proxy_callback_noise(context: dict[str, Any]) -> bool:
    """True for the one loop error that comes from the test proxy, not the client.

    On Python 3.11, ``asyncio.start_server`` adds a done-callback to each connection's
    handler task that calls ``task.exception()``; when ``TunnelProxy`` cancels a handler
    (its reset and restore do), that call raises ``CancelledError`` inside the callback and
    the loop reports it (Python 3.12 checks ``task.cancelled()`` first). It says nothing
    about the client, so it is counted apart instead of hiding client errors in it.
    """
    exc = context.get("exception")
    if not isinstance(exc, asyncio.CancelledError):
        return False
    for arg in getattr(context.get("handle"), "_args", None) or ():
        if isinstance(arg, asyncio.Task):
            return "TunnelProxy._handle" in getattr(arg.get_coro(), "__qualname__", "")
    message = str(context.get("message", ""))
    return "StreamReaderProtocol.connection_made" in message and "TunnelProxy._handle" in message


async def run_chaos(
    config: ChaosConfig, *, progress: Callable[[str], None] | None = None
) -> JsonDict:
    """Run the soak described by ``config``; returns the report (see :func:`build_report`)."""
    say = progress or (lambda _msg: None)
    loop = asyncio.get_running_loop()
    observed = Observed()
    previous_handler = loop.get_exception_handler()

    def on_unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = context.get("message", "")
        if exc is not None:
            text += f": {type(exc).__name__}: {exc}"
        if is_proxy_callback_noise(context):
            observed.harness_unhandled.append(text)
            return
        observed.unhandled.append(text)
        log.error("unhandled in the event loop: %s", text)

    loop.set_exception_handler(on_unhandled)
    state_dir = Path(tempfile.mkdtemp(prefix="tp-chaos-"))
    started = time.monotonic()
    records: list[SessionRecord] = []
    sessions_data: list[JsonDict] = []
    ledger: list[JsonDict] = []
    links: Links | None = None
    try:
        policy = EmulatorPolicy().update(CHAOS_EMULATOR_POLICY)
        async with EmulatorProcess(
            policy, api_key=API_KEY, state_dir=state_dir, persist_sessions=True
        ) as emulator:
            say(f"emulator pid {emulator.pid} at {emulator.http_base}")
            settings = TokenServiceSettings(
                api_key=SecretStr(API_KEY),
                upstream_base_url=emulator.http_base,
                ws_base_url=emulator.ws_base,
                auth_mode="static",
                static_keys=[SecretStr(f"user{i}:chaos-key-{i}") for i in range(config.sessions)],
                rate_limit="100000/minute",
                model=CHAOS_CONFIG.model,
            )
            minter = Minter(
                API_KEY,
                CHAOS_CONFIG,
                base_url=emulator.http_base,
                ws_base=emulator.ws_base,
                timeout=10.0,
                max_concurrent=32,
            )
            service = TokenService(settings, minter=minter)
            async with (
                running_token_service(settings, service=service) as svc,
                TokenGate(svc.token_url) as gate,
            ):
                stack = ChaosStack(emulator, gate, observed)
                await stack.start()
                links = Links(emulator.port, config.kernel_every)
                watchdogs = dataclasses.replace(CHAOS_WATCHDOGS, reply_timeout=config.reply_timeout)
                try:
                    drivers: list[ChaosSession] = []
                    for i in range(config.sessions):
                        if config.only and i not in config.only:
                            continue
                        link = await links.open(i)
                        plan = plan_session(
                            i,
                            seed=config.seed,
                            steps=config.steps,
                            time_scale=config.time_scale,
                            kinds=config.faults,
                            kernel=link.kernel is not None,
                            reply_timeout=config.reply_timeout,
                            fault_rate=config.fault_rate,
                        )
                        latency = link_latency_ms(i, seed=config.seed) if config.latency else (0, 0)
                        drivers.append(
                            ChaosSession(
                                i,
                                plan,
                                stack,
                                link.proxy,
                                config.seed,
                                watchdogs=watchdogs,
                                latency=latency,
                                kernel=link.kernel,
                            )
                        )
                    records = await _run_sessions(config, stack, drivers, say)
                    await stack.poll_events()
                    sessions_data = await stack._call("GET", "/sessions")
                    ledger = await stack._call("GET", "/tokens")
                    observed.emulator_peak_rss_kb = max(
                        observed.emulator_peak_rss_kb, peak_rss_kb(emulator.pid)
                    )
                finally:
                    await links.close()
                    await stack.stop()
                gate_answers = dict(gate.answers)
                token_owner = stack.session_of_token()
    finally:
        loop.set_exception_handler(previous_handler)
        shutil.rmtree(state_dir, ignore_errors=True)
    duration = time.monotonic() - started
    report = build_report(
        config,
        records,
        observed,
        sessions_data,
        ledger,
        token_owner,
        gate_answers,
        duration,
    )
    if links is not None and links.kernel_unavailable is not None:
        report["impolite"]["kernel_blackholes_not_run"] = links.kernel_unavailable
    return report


async def _run_sessions(
    config: ChaosConfig,
    stack: ChaosStack,
    drivers: list[ChaosSession],
    say: Callable[[str], None],
) -> list[SessionRecord]:
    observed = stack.observed
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: list[asyncio.Task[SessionRecord]] = []

    async def start_one(driver: ChaosSession, at: float) -> SessionRecord:
        await asyncio.sleep(at)
        return await driver.run()

    spread = config.start_spread / max(1, config.sessions)
    for i, driver in enumerate(drivers):
        tasks.append(asyncio.create_task(start_one(driver, i * spread), name=f"chaos-{i}"))

    async def restarts() -> None:
        for at in restart_times(config.expected_duration, config.restarts):
            delay = t0 + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if all(t.done() for t in tasks):
                return
            say(f"t={loop.time() - t0:.0f}s: restarting the emulator")
            await stack.restart_emulator()
            say(f"t={loop.time() - t0:.0f}s: emulator back (pid {stack.emulator.pid})")

    async def sample() -> None:
        last_poll = 0.0
        last_slow = 0.0
        while True:
            now = loop.time()
            for driver in drivers:
                _sample_outbox(driver, observed)
            if now - last_slow >= 1.0:
                last_slow = now
                observed.rss_samples.append((now - t0, rss_kb() / 1024))
                connected = sum(
                    1
                    for d in drivers
                    if d.session is not None and d.session.state.value == "connected"
                )
                observed.connected_samples.append((now - t0, connected))
            if now - last_poll >= 2.0:
                last_poll = now
                await stack.poll_events()
            await asyncio.sleep(0.1)

    async def progress() -> None:
        while True:
            await asyncio.sleep(15.0)
            done = sum(1 for t in tasks if t.done())
            say(f"t={loop.time() - t0:.0f}s: {done}/{len(tasks)} sessions finished")

    helpers = [
        asyncio.create_task(restarts(), name="chaos-restarts"),
        asyncio.create_task(sample(), name="chaos-sampler"),
        asyncio.create_task(progress(), name="chaos-progress"),
    ]
    try:
        _done, pending = await asyncio.wait(tasks, timeout=config.deadline)
        for task in pending:  # a hung session is a finding: report it, do not wait forever
            task.cancel()
        if pending:
            say(f"{len(pending)} sessions did not finish within {config.deadline:.0f} s")
            await asyncio.wait(pending, timeout=30)
    finally:
        restarter = helpers[0]
        if not restarter.done():
            # Never cut a restart in half: wait for one in progress, cancel one not begun.
            await stack._restarting.wait()
            restarter.cancel()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    records: list[SessionRecord] = []
    for driver, task in zip(drivers, tasks, strict=True):
        if task.done() and not task.cancelled() and task.exception() is None:
            records.append(task.result())
        else:
            rec = driver.record
            rec.errors.append("did not finish (cancelled at the deadline)")
            if driver.session is not None:
                rec.metrics = driver.session.metrics
            records.append(rec)
    return records


def _sample_outbox(driver: ChaosSession, observed: Observed) -> None:
    session = driver.session
    if session is None:
        return
    # White-box on purpose: the bound is a property of the machine's queues, and the app
    # API only reports what was dropped, not how full the queues are.
    outbox = session._machine.outbox
    count, size = outbox.pending_other()
    values = {
        "pending_messages": float(count),
        "pending_bytes": float(size),
        "pending_audio_ms": outbox.pending_audio_ms(),
        "unconfirmed_messages": float(len(outbox.unconfirmed)),
    }
    peak = observed.outbox_peak
    for name, value in values.items():
        peak[name] = max(peak.get(name, 0.0), value)
    if not outbox.within_bounds():
        observed.outbox_violations += 1
    open_sockets = sum(1 for sock in session._sockets.values() if not sock.gone())
    observed.client_sockets_peak = max(observed.client_sockets_peak, open_sockets)
