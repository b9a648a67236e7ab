"""Client process of benchmark 7's real part: N ``LiveSession`` s through one server restart.

``python -m tunnelproof.benchmarks.storm_worker CONFIG_JSON``. Config: ``sessions``,
``policy`` (``"tunnelproof"`` or ``"seed"``), ``token_url`` and ``bearer`` of the token
service, ``start_rate`` (sessions started per second, so the initial connect is not itself
a storm), ``stable_s`` (how long to stay connected before announcing readiness: the retry
policy resets its failure counter only after a stable connection) and ``max_wait`` (bound
on the wait after the restart).

Protocol with the parent: this process prints ``{"event": "ready", ...}`` once every
session is connected (or the start-up bound passed), then reads one line ``go <t0>`` from
stdin (``t0``: the wall-clock time the parent began restarting the server). It then waits
until every session has come back (``Connected``/``Resumed`` after ``t0``) or given up, or
``max_wait`` passed, and prints one JSON line: restore times and token-request times, both
relative to ``t0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import sys
import time
from typing import Any

import certifi

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential
from tunnelproof.session.live_session import LiveSession
from tunnelproof.session.policy import DEFAULT_POLICY, SEED_POLICY
from tunnelproof.tokens.client import TokenServiceSource

CONFIG = LiveConfig()  # the default model, AUDIO answers (as Google's Live models give)


class CountingSource:
    """Wrap a token source; record the wall time and outcome of every call.

    ``log`` gets ``(asked, outcome)``; ``answers`` (if given) ``(asked, answered, outcome,
    retry_after)``: the timeline of a herd through a restart (when each shed answer came
    and what wait it carried).
    """

    def __init__(
        self,
        inner: TokenServiceSource,
        log: list[tuple[float, str]],
        answers: list[tuple[float, float, str, float | None]] | None = None,
    ) -> None:
        self.inner = inner
        self.log = log
        self.answers = answers

    async def __call__(self) -> Credential:
        at = time.time()
        try:
            cred = await self.inner()
        except Exception as exc:
            self.log.append((at, type(exc).__name__))
            if self.answers is not None:
                wait = getattr(exc, "retry_after", None)
                code = getattr(exc, "code", None)  # the service's reason for a 503
                what = type(exc).__name__ + (f":{code}" if code else "")
                self.answers.append((at, time.time(), what, wait))
            raise
        self.log.append((at, "ok"))
        if self.answers is not None:
            self.answers.append((at, time.time(), "ok", None))
        return cred


async def _main(config: dict[str, Any]) -> dict[str, Any]:
    n = int(config["sessions"])
    policy = SEED_POLICY if config["policy"] == "seed" else DEFAULT_POLICY
    token_log: list[tuple[float, str]] = []
    answers: list[tuple[float, float, str, float | None]] = []
    # A prebuilt TLS context: with the default verify=True, TokenServiceSource makes httpx
    # build a new one per call (~20 ms of CPU loading the CA bundle), which serialises a
    # herd of reconnects in one process (reported as a bug in tunnelproof.tokens.client).
    verify = ssl.create_default_context(cafile=certifi.where())
    inner = TokenServiceSource(
        config["token_url"], lambda: config["bearer"], timeout=10.0, verify=verify
    )
    source = CountingSource(inner, token_log, answers)
    rng = random.Random(int(config.get("seed", 7)))
    sessions: list[LiveSession] = []
    restored: list[float | None] = [None] * n
    failed: list[float | None] = [None] * n
    connected = [False] * n
    t0_box: list[float] = []

    async def watch(i: int, session: LiveSession) -> None:
        async for event in session.events():
            if isinstance(event, ev.Connected | ev.Resumed):
                connected[i] = True
                if t0_box and restored[i] is None and time.time() > t0_box[0]:
                    restored[i] = time.time()
            elif isinstance(event, ev.Failed):
                failed[i] = time.time()

    watchers: list[asyncio.Task[None]] = []
    start_rate = float(config.get("start_rate", 100.0))
    for i in range(n):
        session = LiveSession(CONFIG, source, policy=policy, rng=random.Random(rng.random()))
        await session.start()
        sessions.append(session)
        watchers.append(asyncio.create_task(watch(i, session)))
        await asyncio.sleep(1.0 / start_rate)
    for _ in range(int(float(config.get("connect_wait", 60.0)) / 0.1)):  # bounded
        if all(connected):
            break
        await asyncio.sleep(0.1)
    up = sum(connected)
    await asyncio.sleep(float(config.get("stable_s", 11.0)))
    ready = {"event": "ready", "connected": up, "sessions": n}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    t0 = float(line.split()[1])
    t0_box.append(t0)
    max_wait = float(config.get("max_wait", 120.0))
    for _ in range(int(max_wait / 0.1)):  # bounded by max_wait
        if all(r is not None or f is not None for r, f in zip(restored, failed, strict=True)):
            break
        if time.time() > t0 + max_wait:
            break
        await asyncio.sleep(0.1)
    out = {
        "sessions": n,
        "connected_before": up,
        "restored_s": sorted(r - t0 for r in restored if r is not None),
        "failed_s": sorted(f - t0 for f in failed if f is not None),
        "token_calls_s": [(at - t0, what) for at, what in token_log if at >= t0],
        "token_answers_s": [
            (at - t0, done - t0, what, wait) for at, done, what, wait in answers if at >= t0
        ],
    }
    for session in sessions:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), 5)
    for task in watchers:
        task.cancel()
    return out


def main() -> None:
    """Entry point: config as the one argument; see the module docstring for the protocol."""
    config = json.loads(sys.argv[1])
    result = asyncio.run(_main(config))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
