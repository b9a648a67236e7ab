"""The HTTP control API under ``/_emulator``, answering loopback peers only.

Routes (JSON in and out)::

    GET   /_emulator/health
    GET   /_emulator/connections[?open=1]
    POST  /_emulator/connections/{id|latest}/close    {"code": 1011, "reason": "..."}
    POST  /_emulator/connections/{id|latest}/abort
    POST  /_emulator/connections/{id|latest}/go_away  {"timeLeft": 5.0}
    GET   /_emulator/sessions
    GET   /_emulator/sessions/{id|latest}/history
    GET   /_emulator/tokens
    GET   /_emulator/policy
    PATCH /_emulator/policy                            {"connection_lifetime": 5.0, ...}
    POST  /_emulator/pongs                             {"delay": 3.0, "withhold": false}
    POST  /_emulator/resumes/refuse                    {"count": 2, "code": 1011, "reason": "..."}
    POST  /_emulator/resumes/forget                    {"count": 1}
    POST  /_emulator/client_messages/reject            {"code": 1007, "reason": "..."}
    POST  /_emulator/sessions/{id|latest}/think         {"seconds": 30.0}
    GET   /_emulator/events?since=0&kind=...
    GET   /_emulator/wait?kind=setup_complete&count=2&timeout=10
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tunnelproof.emulator.controls import EmulatorControls, UnknownConnection, UnknownSession

PREFIX = "/_emulator"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(peer: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": {"code": status, "message": message}}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _conn_id(request: web.Request) -> str | None:
    value = request.match_info["conn"]
    return None if value == "latest" else value


def _session_id(request: web.Request) -> str | None:
    value = request.match_info["session"]
    return None if value == "latest" else value


def control_routes(controls: EmulatorControls) -> list[web.RouteDef]:
    """The control API's routes (mounted by the server behind :func:`loopback_only`)."""

    async def health(request: web.Request) -> web.StreamResponse:
        return _json({"ok": True})

    async def connections(request: web.Request) -> web.StreamResponse:
        return _json(controls.connections(open_only=request.query.get("open") in ("1", "true")))

    async def close(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        result = await controls.close_connection(
            _conn_id(request), code=int(body.get("code", 1011)), reason=str(body.get("reason", ""))
        )
        return _json(result)

    async def abort(request: web.Request) -> web.StreamResponse:
        return _json(controls.abort_connection(_conn_id(request)))

    async def go_away(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        left = body.get("timeLeft", body.get("time_left"))
        result = await controls.send_go_away(
            _conn_id(request), time_left=float(left) if left is not None else None
        )
        return _json(result)

    async def sessions(request: web.Request) -> web.StreamResponse:
        return _json(controls.sessions())

    async def history(request: web.Request) -> web.StreamResponse:
        return _json(controls.history(_session_id(request)))

    async def tokens(request: web.Request) -> web.StreamResponse:
        return _json(controls.token_ledger())

    async def get_policy(request: web.Request) -> web.StreamResponse:
        return _json(controls.policy())

    async def patch_policy(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        try:
            return _json(controls.update_policy(body))
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, str(exc))

    async def pongs(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        delay = body.get("delay")
        withhold = body.get("withhold")
        controls.set_pongs(
            delay=float(delay) if delay is not None else None,
            withhold=bool(withhold) if withhold is not None else None,
            connection=body.get("connection"),
        )
        return _json(controls.policy())

    async def refuse(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        code = body.get("code")
        controls.refuse_resumes(
            int(body.get("count", 1)),
            code=int(code) if code is not None else None,
            reason=body.get("reason"),
        )
        return _json({"refusing": int(body.get("count", 1))})

    async def forget(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        count = int(body.get("count", 1))
        controls.forget_resumes(count)
        return _json({"forgetting": count})

    async def reject(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        code = int(body.get("code", 1007))
        reason = body.get("reason")
        if reason is None:
            controls.reject_next_client_message(code)
        else:
            controls.reject_next_client_message(code, str(reason))
        return _json({"rejecting_next": {"code": code}})

    async def think(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        try:
            seconds = float(body.get("seconds", 0.0))
            session = controls.think_next_turn(seconds, _session_id(request))
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return _json({"session": session, "think_next_turn": seconds})

    async def events(request: web.Request) -> web.StreamResponse:
        since = int(request.query.get("since", "0"))
        return _json(controls.events(since, request.query.get("kind")))

    async def wait(request: web.Request) -> web.StreamResponse:
        kind = request.query.get("kind", "setup_complete")
        count = int(request.query.get("count", "1"))
        timeout = float(request.query.get("timeout", "10"))
        try:
            event = await controls.wait_for_event(kind, count=count, timeout=timeout)
        except TimeoutError:
            return _error(408, f"no {count} {kind} events within {timeout}s")
        return _json(event)

    p = PREFIX
    return [
        web.get(f"{p}/health", health),
        web.get(f"{p}/connections", connections),
        web.post(f"{p}/connections/{{conn}}/close", close),
        web.post(f"{p}/connections/{{conn}}/abort", abort),
        web.post(f"{p}/connections/{{conn}}/go_away", go_away),
        web.get(f"{p}/sessions", sessions),
        web.get(f"{p}/sessions/{{session}}/history", history),
        web.get(f"{p}/tokens", tokens),
        web.get(f"{p}/policy", get_policy),
        web.patch(f"{p}/policy", patch_policy),
        web.post(f"{p}/policy", patch_policy),
        web.post(f"{p}/pongs", pongs),
        web.post(f"{p}/resumes/refuse", refuse),
        web.post(f"{p}/resumes/forget", forget),
        web.post(f"{p}/client_messages/reject", reject),
        web.post(f"{p}/sessions/{{session}}/think", think),
        web.get(f"{p}/events", events),
        web.get(f"{p}/wait", wait),
    ]


@web.middleware
async def loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse control requests from anything but loopback; map lookups to 404."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return await handler(request)
    if not is_loopback(request.remote):
        return _error(403, "the emulator control API only answers loopback peers")
    try:
        return await handler(request)
    except (UnknownConnection, UnknownSession) as exc:
        return _error(404, f"not found: {exc}")
