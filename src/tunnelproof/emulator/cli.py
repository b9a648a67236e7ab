"""The emulator's command line: ``tunnelproof emulator`` and ``python -m tunnelproof.emulator``.

Run the local Live API emulator until SIGINT/SIGTERM.

When it is ready it prints exactly one JSON line on stdout::

    {"http": "http://127.0.0.1:PORT", "ws": "ws://127.0.0.1:PORT", "ca_file": null,
     "control": "http://127.0.0.1:PORT/_emulator", "api_key": "emulator-key", "pid": 1234}
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.server import DEFAULT_API_KEY, EmulatorServer


def build_policy(
    *,
    policy_json: str | None,
    settings: list[str],
    explicit: dict[str, Any],
) -> EmulatorPolicy:
    """A policy from ``--policy-json``, then ``--set name=value``, then the named flags."""
    policy = EmulatorPolicy()
    if policy_json:
        try:
            data = json.loads(policy_json)
        except ValueError as exc:
            raise BadSetting(f"--policy-json is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BadSetting("--policy-json must be a JSON object")
        _apply(policy, data, "--policy-json")
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep:
            raise BadSetting(f"--set expects name=value, got {item!r}")
        _apply(policy, {name.strip(): value.strip()}, "--set")
    for name, value in explicit.items():
        if value is not None:
            _apply(policy, {name: value}, "--" + name.replace("_", "-"))
    return policy


class BadSetting(ValueError):
    """A command-line value the emulator cannot run with; the message says which."""


def _apply(policy: EmulatorPolicy, changes: dict[str, Any], source: str) -> None:
    # EmulatorPolicy.update raises KeyError/TypeError/ValueError; a user gets one sentence.
    try:
        policy.update(changes)
    except KeyError as exc:
        names = ", ".join(sorted(f.name for f in dataclasses.fields(policy)))
        raise BadSetting(f"{source}: {exc.args[0]} (fields: {names})") from None
    except (TypeError, ValueError) as exc:
        raise BadSetting(f"{source}: {exc}") from None


async def serve(server: EmulatorServer) -> None:
    """Start, print the ready line, and serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    info = server.ready_info()
    info["pid"] = os.getpid()
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def command(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(0, help="Port (0 picks a free one)."),
    tls: bool = typer.Option(False, "--tls", help="Serve https/wss with a test CA."),
    api_key: str = typer.Option(DEFAULT_API_KEY, help="The API key clients must present."),
    state_dir: Path | None = typer.Option(  # noqa: B008 - typer idiom
        None, help="Keep the CA (and with --persist-sessions the sessions) here."
    ),
    persist_sessions: bool = typer.Option(
        False,
        "--persist-sessions",
        help="Save sessions, handles and tokens to --state-dir on exit; load on start.",
    ),
    policy_json: str | None = typer.Option(None, help="EmulatorPolicy fields as JSON."),
    settings: list[str] = typer.Option(  # noqa: B008 - typer's idiom
        [], "--set", help="One EmulatorPolicy field, name=value (repeatable)."
    ),
    connection_lifetime: float | None = typer.Option(None, help="Seconds per connection."),
    go_away_lead: float | None = typer.Option(None, help="goAway this long before the end."),
    handle_validity: float | None = typer.Option(None, help="Handle validity after disconnect."),
    generation_speed: float | None = typer.Option(None, help="Answer pacing factor."),
    strict_token_uses: bool | None = typer.Option(
        None, "--strict-token-uses/--no-strict-token-uses", help="Resumes consume uses too."
    ),
    text_frames: bool | None = typer.Option(
        None, "--text-frames/--binary-frames", help="Server frame type."
    ),
) -> None:
    """Run the local Gemini Live API emulator."""
    if persist_sessions and state_dir is None:
        _fail("--persist-sessions needs --state-dir")
    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535 (0 picks a free one), got {port}")
    try:
        policy = build_policy(
            policy_json=policy_json,
            settings=settings,
            explicit={
                "connection_lifetime": connection_lifetime,
                "go_away_lead": go_away_lead,
                "handle_validity": handle_validity,
                "generation_speed": generation_speed,
                "strict_token_uses": strict_token_uses,
                "text_frames": text_frames,
            },
        )
    except BadSetting as exc:
        _fail(f"bad setting: {exc}")
    server = EmulatorServer(
        policy=policy,
        host=host,
        port=port,
        tls=tls,
        api_key=api_key,
        state_dir=state_dir,
        persist_sessions=persist_sessions,
    )
    try:
        asyncio.run(serve(server))
    except OSError as exc:  # bind: address in use, unknown host, no permission
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    # One sentence on stderr and exit code 2, like the other commands' usage errors.
    typer.echo(f"tunnelproof emulator: {message}", err=True)
    raise typer.Exit(code=2)


def main() -> None:
    """Entry point of ``python -m tunnelproof.emulator`` (the emulator command alone).

    It imports only the emulator, so it starts faster than the full ``tunnelproof`` CLI;
    :class:`~tunnelproof.emulator.EmulatorProcess` uses it.
    """
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    app()
