"""The comparison for benchmark 6: a bare FastAPI route that only calls upstream.

No authentication, no rate limit, no body guard, no metrics: ``POST /api/live/token``
mints one token upstream and returns its name. ``--client httpx`` posts the same JSON the
token service's minter sends with a pooled ``httpx.AsyncClient``; ``--client genai`` goes
through google-genai's ``auth_tokens.create`` like the minter does, so the two bare variants
separate the cost of the SDK from the cost of auth + rate limiting.

Run: ``python -m tunnelproof.benchmarks.bare_app --upstream http://127.0.0.1:PORT --api-key K``
(prints one JSON ready line with the port, then serves with one uvicorn worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from tunnelproof.protocol.config import LiveConfig


def create_app(upstream: str, api_key: str, client: str = "httpx") -> FastAPI:
    """The bare app (see the module docstring)."""
    import httpx

    app = FastAPI()
    setup, mask = LiveConfig().token_constraints()
    http = httpx.AsyncClient(base_url=upstream, timeout=10.0)
    genai_client: Any = None
    if client == "genai":
        from google import genai
        from google.genai import types

        genai_client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=upstream,
                api_version="v1alpha",
                retry_options=types.HttpRetryOptions(attempts=1),
            ),
        )

    @app.post("/api/live/token")
    async def token() -> Response:
        now = datetime.now(UTC)
        if genai_client is not None:
            from google.genai import types

            config = types.CreateAuthTokenConfig(
                uses=1,
                expire_time=now + timedelta(minutes=30),
                new_session_expire_time=now + timedelta(seconds=60),
                http_options=types.HttpOptions(
                    extra_body={"bidiGenerateContentSetup": setup, "fieldMask": mask}
                ),
            )
            result = await genai_client.aio.auth_tokens.create(config=config)
            return JSONResponse({"token": result.name})
        body = {
            "uses": 1,
            "expireTime": (now + timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
            "newSessionExpireTime": (now + timedelta(seconds=60))
            .isoformat()
            .replace("+00:00", "Z"),
            "bidiGenerateContentSetup": setup,
            "fieldMask": mask,
        }
        response = await http.post(
            "/v1alpha/auth_tokens", json=body, headers={"x-goog-api-key": api_key}
        )
        if response.status_code != 200:
            return JSONResponse({"error": "upstream"}, status_code=502)
        return JSONResponse({"token": response.json()["name"]})

    return app


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    app = create_app(args.upstream, args.api_key, args.client)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(3000):  # bounded: 30 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
        return
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sys.stdout.write(
        json.dumps({"event": "ready", "url": url, "tokenUrl": url + "/api/live/token"})
    )
    sys.stdout.write("\n")
    sys.stdout.flush()
    await task


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--client", choices=("httpx", "genai"), default="httpx")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
