"""Subprocess helpers for benchmarks: start a server that prints one JSON ready line.

Benchmarks keep servers and load generators in separate processes so each one's CPU time
is its own and one busy event loop does not slow the other side's timestamps. Every
process started here is ended by the ``async with`` that started it (SIGTERM, then SIGKILL
after a bound), by its own pid, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.ready_line import next_json_line


@dataclass(slots=True)
class Proc:
    """A running child process and the JSON object it announced itself with."""

    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.process.pid


async def _drain(stream: asyncio.StreamReader | None, tail: list[str]) -> None:
    if stream is None:
        return
    while True:
        line = await stream.readline()
        if not line:
            return
        tail.append(line.decode("utf-8", errors="replace").rstrip())
        del tail[:-50]


@contextlib.asynccontextmanager
async def json_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 10.0,
) -> AsyncIterator[Proc]:
    """Run ``argv``, wait for the first stdout line starting with ``{``, yield, then stop it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    proc = Proc(process, {})
    drain_err = asyncio.create_task(_drain(process.stderr, proc.stderr_tail))
    drain_out: asyncio.Task[None] | None = None
    try:
        assert process.stdout is not None
        async with asyncio.timeout(startup_timeout):
            ready = await next_json_line(process.stdout)
            if ready is None:
                await process.wait()
                raise RuntimeError(
                    f"{argv[:4]} exited ({process.returncode}) before it was ready: "
                    + " | ".join(proc.stderr_tail[-8:])
                )
            proc.ready = ready
        drain_out = asyncio.create_task(_drain(process.stdout, []))
        yield proc
    finally:
        await stop_process(process, stop_timeout)
        for task in (drain_err, drain_out):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def serve_argv(emu: Any, auth: Sequence[str], *, rate_limit: str) -> list[str]:
    """``python -m tunnelproof serve`` on a free port, minting from the emulator ``emu``.

    ``auth`` is the ``--auth-mode`` and its options; quiet (warnings only) so the
    benchmark's own output stays readable.
    """
    return [
        sys.executable,
        "-m",
        "tunnelproof",
        "serve",
        "--port",
        "0",
        "--upstream",
        emu.http_base,
        "--ws-base",
        emu.ws_base,
        *auth,
        "--rate-limit",
        rate_limit,
        "--log-level",
        "warning",
    ]


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    """SIGTERM ``process`` (this one pid), SIGKILL it after ``timeout`` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def run_json_worker(
    module: str, config: Mapping[str, Any], *, timeout: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python -m module CONFIG_JSON`` to completion; return its last JSON stdout line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        json.dumps(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        await stop_process(process, 5.0)
        raise RuntimeError(f"{module} did not finish within {timeout:g} s") from None
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-10:]
        raise RuntimeError(f"{module} failed ({process.returncode}): " + " | ".join(tail))
    result: dict[str, Any] = json.loads(lines[-1])
    return result
