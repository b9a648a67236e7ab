"""``EmulatorProcess``: the emulator as a real subprocess, for restart and crash tests.

It runs ``python -m tunnelproof.emulator`` (the ``tunnelproof emulator`` command without
the other commands; ``full_cli=True`` runs ``python -m tunnelproof emulator``) and reads
its one JSON ready line.
:meth:`EmulatorProcess.restart` stops the process (SIGTERM) and starts a new one on the
same port with the same state directory, so the CA file stays valid.

What a restart keeps: by default **nothing server-side** (sessions, handles and tokens are
in memory and die with the process), which is the harsh case: Google would not lose
them. With ``persist_sessions=True`` they are written to the state directory on a clean
stop and loaded on start, so handles and tokens survive a restart (a ``kill()`` skips the
save, like a crash).

``controls`` talks to the HTTP control API; its methods are coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.server import DEFAULT_API_KEY
from tunnelproof.protocol.close_codes import REASON_INVALID_ARGUMENT
from tunnelproof.protocol.types import JsonDict
from tunnelproof.ready_line import next_json_line


class EmulatorProcessError(RuntimeError):
    """The subprocess did not start, or died."""


class RemoteControls:
    """The fault controls of a running emulator, over its HTTP control API."""

    def __init__(
        self, control_url: str, *, ca_file: str | None = None, timeout: float = 30.0
    ) -> None:
        self.control_url = control_url.rstrip("/")
        self.ca_file = ca_file
        self.timeout = timeout

    async def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        query = {k: str(v) for k, v in params.items() if v is not None}
        connector = (
            aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=self.ca_file))
            if self.ca_file
            else None
        )
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as http,
            http.request(method, self.control_url + path, json=body, params=query) as response,
        ):
            data = await response.json()
            if response.status == 408:
                raise TimeoutError(data["error"]["message"])
            if response.status >= 400:
                raise EmulatorProcessError(f"{method} {path}: {response.status} {data}")
            return data

    async def connections(self, *, open_only: bool = False) -> list[JsonDict]:
        """Every connection with its token, session and handle."""
        result: list[JsonDict] = await self._call(
            "GET", "/connections", open="1" if open_only else None
        )
        return result

    async def sessions(self) -> list[JsonDict]:
        """Every session."""
        result: list[JsonDict] = await self._call("GET", "/sessions")
        return result

    async def history(self, session_id: str | None = None) -> list[JsonDict]:
        """A session's server-side history (``None``: the newest)."""
        result: list[JsonDict] = await self._call(
            "GET", f"/sessions/{session_id or 'latest'}/history"
        )
        return result

    async def token_ledger(self) -> list[JsonDict]:
        """Every token and the connections that used it."""
        result: list[JsonDict] = await self._call("GET", "/tokens")
        return result

    async def close_connection(
        self, connection: str | None = None, *, code: int = 1011, reason: str = ""
    ) -> JsonDict:
        """Close a connection with ``code`` and ``reason``."""
        result: JsonDict = await self._call(
            "POST", f"/connections/{connection or 'latest'}/close", {"code": code, "reason": reason}
        )
        return result

    async def abort_connection(self, connection: str | None = None) -> JsonDict:
        """Drop a connection without a close frame."""
        result: JsonDict = await self._call("POST", f"/connections/{connection or 'latest'}/abort")
        return result

    async def send_go_away(
        self, connection: str | None = None, *, time_left: float | None = None
    ) -> JsonDict:
        """Send goAway now."""
        result: JsonDict = await self._call(
            "POST", f"/connections/{connection or 'latest'}/go_away", {"timeLeft": time_left}
        )
        return result

    async def set_pongs(self, *, delay: float | None = None, withhold: bool | None = None) -> None:
        """Delay or withhold pongs for every connection."""
        await self._call("POST", "/pongs", {"delay": delay, "withhold": withhold})

    async def refuse_resumes(
        self, count: int, *, code: int | None = None, reason: str | None = None
    ) -> None:
        """Refuse the next ``count`` resumes."""
        await self._call(
            "POST", "/resumes/refuse", {"count": count, "code": code, "reason": reason}
        )

    async def forget_resumes(self, count: int = 1) -> None:
        """Accept the next ``count`` resumes but restore nothing."""
        await self._call("POST", "/resumes/forget", {"count": count})

    async def reject_next_client_message(
        self, code: int = 1007, reason: str = REASON_INVALID_ARGUMENT
    ) -> None:
        """Close on the next clientContent/realtimeInput/toolResponse, without applying it."""
        await self._call("POST", "/client_messages/reject", {"code": code, "reason": reason})

    async def update_policy(self, **fields: Any) -> JsonDict:
        """Change policy fields live."""
        result: JsonDict = await self._call("PATCH", "/policy", fields)
        return result

    async def policy(self) -> JsonDict:
        """The current policy."""
        result: JsonDict = await self._call("GET", "/policy")
        return result

    async def wait_for_connections(self, n: int, *, timeout: float = 10.0) -> JsonDict:
        """Wait until at least ``n`` connections have completed setup (resumes count)."""
        return await self.wait_for_event("setup_complete", count=n, timeout=timeout)

    async def wait_for_event(self, kind: str, *, count: int = 1, timeout: float = 10.0) -> JsonDict:
        """Wait (server-side) for ``count`` events of ``kind``."""
        result: JsonDict = await self._call("GET", "/wait", kind=kind, count=count, timeout=timeout)
        return result


class EmulatorProcess:
    """Run the emulator in a subprocess; same attributes as ``EmulatorServer``."""

    def __init__(
        self,
        policy: EmulatorPolicy | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        api_key: str = DEFAULT_API_KEY,
        state_dir: str | Path | None = None,
        persist_sessions: bool = False,
        python: str = sys.executable,
        full_cli: bool = False,
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else EmulatorPolicy()
        self.host = host
        self.port = port
        self.tls = tls
        self.api_key = api_key
        self._own_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.persist_sessions = persist_sessions
        self.python = python
        self.full_cli = full_cli
        self.startup_timeout = startup_timeout
        self.env = env
        self.http_base = ""
        self.ws_base = ""
        self.control_url = ""
        self.ca_file: str | None = None
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self.stderr_lines: list[str] = []

    @property
    def controls(self) -> RemoteControls:
        """Fault controls over HTTP (coroutine methods)."""
        if not self.control_url:
            raise RuntimeError("EmulatorProcess is not started")
        return RemoteControls(self.control_url, ca_file=self.ca_file)

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self._proc is not None and self._proc.returncode is None

    def command(self) -> list[str]:
        """The command line used to start the emulator."""
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="tp-emu-proc-"))
        # ``python -m tunnelproof.emulator`` is the same command without importing the
        # other commands (about a second faster to start); ``full_cli`` runs
        # ``python -m tunnelproof emulator`` instead.
        entry = (
            ["-m", "tunnelproof", "emulator"] if self.full_cli else ["-m", "tunnelproof.emulator"]
        )
        cmd = [
            self.python,
            *entry,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
            "--state-dir",
            str(self.state_dir),
            "--policy-json",
            json.dumps(self.policy.to_dict()),
        ]
        if self.tls:
            cmd.append("--tls")
        if self.persist_sessions:
            cmd.append("--persist-sessions")
        return cmd

    async def __aenter__(self) -> EmulatorProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._own_state_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def start(self) -> None:
        """Spawn the process and wait for its ready line."""
        if self.running:
            raise RuntimeError("already running")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._proc = proc
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(proc))
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(self.startup_timeout):
                info = await next_json_line(proc.stdout)
                if info is None:
                    await proc.wait()
                    raise EmulatorProcessError(
                        f"emulator exited with {proc.returncode} before it was ready: "
                        + "".join(self.stderr_lines[-20:])
                    )
        except TimeoutError:
            await self.kill()
            raise EmulatorProcessError("emulator did not print its ready line in time") from None
        self.http_base = info["http"]
        self.ws_base = info["ws"]
        self.control_url = info["control"]
        self.ca_file = info["ca_file"]
        self.pid = info.get("pid")
        self.port = int(self.http_base.rsplit(":", 1)[1])

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            self.stderr_lines.append(line.decode("utf-8", errors="replace"))
            del self.stderr_lines[:-200]

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (clean shutdown, state saved when persisting); SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
        await self._finish()
        return proc.returncode

    async def kill(self) -> None:
        """SIGKILL: a crash (nothing is saved)."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self._finish()

    async def _finish(self) -> None:
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._stderr_task, 5.0)
        self._proc = None

    async def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, with ``crash``) and start again on the same port and CA."""
        if crash:
            await self.kill()
        else:
            await self.stop()
        await self.start()
