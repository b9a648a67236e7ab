"""`tunnelproof tunnel`: run the TCP fault proxy standalone, controlled over HTTP.

::

    tunnelproof tunnel --upstream 127.0.0.1:9000 --listen 127.0.0.1:8443 \\
        --schedule 5:blackhole --schedule 35:restore

prints one JSON line when ready::

    {"event": "ready", "listen": "127.0.0.1:8443", "port": 8443, "upstream": "127.0.0.1:9000",
     "control": "http://127.0.0.1:41234"}

then one ``{"event": "action", ...}`` line per fault applied, and ``{"event": "stopped",
...}`` with the counters on SIGINT/SIGTERM. The control API (loopback only by default):

* ``GET /stats`` — counters, current faults, action history;
* ``POST /blackhole`` (``?mode=hold`` to hold bytes instead of dropping them), ``POST
  /restore``, ``POST /reset``, ``POST /offline``, ``POST /latency?ms=200&jitter_ms=50``, ``POST
  /bandwidth?bytes_per_s=16000`` (``off`` for no cap);
* ``POST /action`` with a text body such as ``latency 200 50`` (the schedule's syntax).

e.g. ``curl -X POST http://127.0.0.1:41234/blackhole``.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
from typing import Annotated, Any

import orjson
import typer
from aiohttp import web

from tunnelproof.testing.tunnel import TunnelProxy, parse_action


def _host_port(text: str, option: str, *, any_port: bool = True) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    lowest = 0 if any_port else 1  # port 0 means "pick one" only where we listen
    if not sep or not port.isdigit() or not lowest <= int(port) <= 65535:
        raise typer.BadParameter(
            f"expected HOST:PORT with a port from {lowest} to 65535, got {text!r}",
            param_hint=option,
        )
    return host.strip("[]") or "127.0.0.1", int(port)


class StartError(Exception):
    """The tunnel could not start (a listening address it cannot bind); one sentence."""


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(event).decode() + "\n")
    sys.stdout.flush()


def _state(tunnel: TunnelProxy) -> dict[str, Any]:
    stats = tunnel.stats
    return {
        "stats": {name: getattr(stats, name) for name in stats.__dataclass_fields__},
        "faults": tunnel.describe(),
        "history": tunnel.history[-100:],
    }


def control_app(tunnel: TunnelProxy) -> web.Application:
    """The aiohttp app of the HTTP control API (see the module docstring)."""

    def command_for(request: web.Request, name: str, body: str) -> str:
        q = request.query
        if name == "blackhole":
            return f"blackhole {q.get('mode', 'drop')}"
        if name == "latency":
            return f"latency {q.get('ms', '0')} {q.get('jitter_ms', '0')}"
        if name == "bandwidth":
            return f"bandwidth {q.get('bytes_per_s', 'off')}"
        if name == "action":
            return body.strip()
        return name

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(_state(tunnel), dumps=lambda o: orjson.dumps(o).decode())

    async def control(request: web.Request) -> web.Response:
        name = request.match_info["command"]
        known = ("blackhole", "restore", "reset", "offline", "latency", "bandwidth", "action")
        if name not in known:
            raise web.HTTPNotFound(text=f"unknown control {name!r}")
        command = command_for(request, name, await request.text())
        try:
            parse_action(command)(tunnel)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return await stats(request)

    app = web.Application(client_max_size=4096)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{command}", control)
    return app


async def run_tunnel(
    upstream: tuple[str, int],
    listen: tuple[str, int],
    control: tuple[str, int] | None,
    schedule: list[tuple[float, str]],
    seed: int | None,
) -> None:
    """Run until SIGINT/SIGTERM, printing the ready, action and stopped JSON lines."""
    tunnel = TunnelProxy(
        upstream[0],
        upstream[1],
        listen_host=listen[0],
        listen_port=listen[1],
        seed=seed,
        on_action=lambda t, what: _emit({"event": "action", "t": round(t, 3), "action": what}),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    try:
        await tunnel.start()
    except OSError as exc:  # unknown host, address in use, no permission
        raise StartError(
            f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}"
        ) from None
    async with tunnel:
        control_url = None
        if control is not None:
            runner = web.AppRunner(control_app(tunnel), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, control[0], control[1])
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise StartError(
                    f"cannot listen on {control[0]}:{control[1]} (--control): {exc.strerror or exc}"
                ) from None
            host, port = runner.addresses[0][:2]
            control_url = f"http://{host}:{port}"
        _emit(
            {
                "event": "ready",
                "listen": f"{tunnel.listen_host}:{tunnel.port}",
                "port": tunnel.port,
                "upstream": f"{upstream[0]}:{upstream[1]}",
                "control": control_url,
            }
        )
        if schedule:
            tunnel.schedule(schedule)
        try:
            await stop.wait()
        finally:
            if runner is not None:
                await runner.cleanup()
            _emit({"event": "stopped", **_state(tunnel)})


def register(app: typer.Typer) -> None:
    """Add the `tunnel` command to ``app``."""

    @app.command("tunnel")
    def tunnel_command(
        upstream: Annotated[
            str, typer.Option("--upstream", help="HOST:PORT to forward to (e.g. the emulator).")
        ],
        listen: Annotated[
            str, typer.Option("--listen", help="HOST:PORT to listen on; port 0 picks one.")
        ] = "127.0.0.1:0",
        control: Annotated[
            str,
            typer.Option("--control", help="HOST:PORT of the HTTP control API, or 'off'."),
        ] = "127.0.0.1:0",
        schedule: Annotated[
            list[str] | None,
            typer.Option(
                "--schedule",
                help="AT_S:ACTION, repeatable, e.g. '5:blackhole' '30:restore' "
                "'40:latency 300 50'.",
            ),
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Jitter random seed.")] = None,
    ) -> None:
        """A TCP proxy with a controllable tunnel: blackhole, reset, offline, latency, bandwidth.

        Prints one JSON line when ready (with the control URL), one per action applied.
        Control: GET /stats; POST /blackhole[?mode=hold], /restore, /reset, /offline,
        /latency?ms=&jitter_ms=, /bandwidth?bytes_per_s=, /action (text body). See
        docs/testing.md.
        """
        steps: list[tuple[float, str]] = []
        for item in schedule or []:
            at, sep, action = item.partition(":")
            try:
                if not sep:
                    raise ValueError("expected AT_S:ACTION")
                parse_action(action)
                when = float(at)
                if not math.isfinite(when) or when < 0:
                    raise ValueError("AT_S must be a number of seconds >= 0")
                steps.append((when, action))
            except ValueError as exc:
                raise typer.BadParameter(f"{item!r}: {exc}", param_hint="--schedule") from None
        control_address = None if control == "off" else _host_port(control, "--control")
        try:
            asyncio.run(
                run_tunnel(
                    _host_port(upstream, "--upstream", any_port=False),
                    _host_port(listen, "--listen"),
                    control_address,
                    steps,
                    seed,
                )
            )
        except StartError as exc:
            typer.echo(f"tunnelproof tunnel: {exc}", err=True)
            raise typer.Exit(code=2) from None
