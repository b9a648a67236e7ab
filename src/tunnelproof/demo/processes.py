"""Child processes the demo starts, and the guarantee that none outlives it.

The token service runs as a real ``tunnelproof serve`` subprocess so the client fetches
its tokens over real HTTP, exactly as an app would. Three layers make sure it stops:

1. the demo stops it in a ``finally`` (SIGTERM, then SIGKILL after a grace period), which
   also runs on Ctrl-C because asyncio turns SIGINT into a cancellation of the main task;
2. an ``atexit`` hook kills any child still registered (an exception escaped, a second
   Ctrl-C interrupted the first cleanup);
3. on Linux the child asks the kernel for ``PR_SET_PDEATHSIG``, so even a ``kill -9`` of the
   demo takes the child with it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from tunnelproof.ready_line import next_json_line

_CHILDREN: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_CHILDREN):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    _CHILDREN.clear()


atexit.register(_kill_leftovers)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to the child when the parent dies.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class ChildStartError(RuntimeError):
    """A child process did not start; the message says why in one sentence."""


class ReadyLineProcess:
    """A ``python -m tunnelproof …`` child that prints one JSON ready line on stdout."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        drop_env_prefixes: tuple[str, ...] = (),
        name: str,
        ready_timeout: float = 60.0,
    ) -> None:
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.drop_env_prefixes = drop_env_prefixes
        self.name = name
        self.ready_timeout = ready_timeout
        self.ready: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr."""
        return "\n".join(self._stderr_tail)

    async def start(self) -> dict[str, Any]:
        """Start the child and wait for its ready line; returns the parsed line."""
        # Inherit the environment (PATH, locale, proxies) minus what the caller owns.
        env = {
            k: v
            for k, v in os.environ.items()
            if not any(k.startswith(p) for p in self.drop_env_prefixes)
        }
        if self.env:
            env.update(self.env)
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tunnelproof",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            **kwargs,
        )
        _CHILDREN.add(self._proc.pid)
        assert self._proc.stderr is not None
        assert self._proc.stdout is not None
        self._drain = asyncio.create_task(self._drain_stderr(self._proc.stderr))
        try:
            async with asyncio.timeout(self.ready_timeout):
                data = await next_json_line(self._proc.stdout)
                if data is None:
                    await self._proc.wait()
                    raise ChildStartError(
                        f"the {self.name} exited during start-up "
                        f"(code {self._proc.returncode}): {self._last_error()}"
                    )
                self.ready = data
                return data
        except TimeoutError:
            raise ChildStartError(
                f"the {self.name} did not become ready within {self.ready_timeout:g} s"
            ) from None

    def _last_error(self) -> str:
        lines = [line for line in self._stderr_tail if line.strip()]
        return lines[-1].strip() if lines else "no error output"

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        # Keep reading so a chatty child never blocks on a full pipe; keep the tail for
        # error messages.
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                self._stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        finally:
            _CHILDREN.discard(proc.pid)
            if self._drain is not None:
                self._drain.cancel()

    def kill_now(self) -> None:
        """Synchronous last resort (used when the event loop is going away)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
