"""Minting single-use ephemeral tokens upstream with google-genai.

The request is ``client.aio.auth_tokens.create`` with ``uses=1``, ``expireTime``,
``newSessionExpireTime`` and the session config locked from the shared
:class:`~tunnelproof.protocol.config.LiveConfig`.

Why the constraints travel in ``HttpOptions.extra_body`` rather than
``live_connect_constraints`` (checked against google-genai 3.6.1 ``tokens.py``):

* ``lock_additional_fields=None`` (the default) is a *global* lock: no ``fieldMask`` is sent,
  Google then takes the setup entirely from the token and ignores the client's, including
  the ``sessionResumption`` handle the client must add on every reconnect;
* ``lock_additional_fields=[]`` sends a mask derived by the SDK's own converter, which goes
  one level into *every* object (``systemInstruction.parts``) and re-serialises nested
  fields in snake_case, so it is not the mask of the setup the client sends;
* ``LiveConnectConfig`` cannot carry ``LiveConfig.setup_extra``/``generation_extra``.

So we send exactly :meth:`LiveConfig.token_constraints`: the same serialisation as the
client's ``setup`` message, with a mask of every field present except
``sessionResumption``. The API key travels only in the ``x-goog-api-key`` header (the SDK's
behaviour), never in a URL, and never appears in our log lines.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.endpoints import ApiVersion, Method, live_url
from tunnelproof.protocol.locked import LockedConfig
from tunnelproof.protocol.models import bare_model_id

if TYPE_CHECKING:
    from google import genai

log = logging.getLogger("tunnelproof.tokens.minting")

# google-genai flags token creation as experimental on every call; that is known and noisy.
warnings.filterwarnings("ignore", message="The SDK's token creation implementation is experimental")


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A token we minted and what we asked for it. Times are ours: upstream may send only
    ``name``."""

    token: str
    expires_at: datetime
    new_session_expires_at: datetime
    model: str
    ws_url: str
    locked: LockedConfig | None = None

    def to_json(self) -> dict[str, Any]:
        """The route's response body, with what the token locks (see ``protocol.locked``)."""
        body: dict[str, Any] = {
            "token": self.token,
            "expiresAt": iso_utc(self.expires_at),
            "newSessionExpiresAt": iso_utc(self.new_session_expires_at),
            "model": self.model,
            "wsUrl": self.ws_url,
        }
        if self.locked is not None:
            body.update(self.locked.to_json())
        return body

    def __repr__(self) -> str:  # the token is a secret
        return f"MintedToken(model={self.model!r}, token=<redacted>)"


class UpstreamError(Exception):
    """Minting failed upstream. ``kind``: ``status`` | ``timeout`` | ``connect`` | ``bad_response``.

    The message is for the server log only and has the API key redacted.
    """

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class MintingOverloaded(Exception):
    """Every mint slot stayed busy for ``queue_timeout``: answer 503 + ``Retry-After``."""

    def __init__(self) -> None:
        super().__init__("all mint slots busy")


TRANSIENT_KINDS = frozenset({"connect", "timeout"})


def upstream_is_down(exc: UpstreamError) -> bool:
    """A transient upstream failure (unreachable, timed out, 5xx, 429): the upstream is
    down or overloaded, and a caller should wait and retry. Anything else (a 4xx such as a
    refused API key, an answer without a token) is a 502: waiting does not fix it."""
    if exc.kind in TRANSIENT_KINDS:
        return True
    return (
        exc.kind == "status" and exc.status is not None and (exc.status >= 500 or exc.status == 429)
    )


def iso_utc(moment: datetime) -> str:
    """``2026-01-01T00:30:00Z``: ISO-8601, UTC, second precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ws_base_from_http(http_base: str) -> str:
    """``https://host`` -> ``wss://host``; ``http://`` -> ``ws://``."""
    if http_base.startswith("https://"):
        return "wss://" + http_base[len("https://") :]
    if http_base.startswith("http://"):
        return "ws://" + http_base[len("http://") :]
    return http_base


class Minter:
    """Mints one token per :meth:`mint` call, at most ``max_concurrent`` at a time."""

    def __init__(
        self,
        api_key: str,
        live_config: LiveConfig,
        *,
        base_url: str,
        api_version: ApiVersion = "v1alpha",
        ws_base: str | None = None,
        expire_seconds: float = 1800.0,
        new_session_expire_seconds: float = 60.0,
        timeout: float = 10.0,
        max_concurrent: int = 8,
        queue_timeout: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """See :class:`~tunnelproof.tokens.settings.TokenServiceSettings` for the meanings.

        ``queue_timeout``: how long a request waits (FIFO) for a busy mint slot before it
        is shed; 0 sheds at once.
        """
        if not api_key:
            raise ValueError("api_key is empty")
        self._api_key = api_key
        self.live_config = live_config
        self.api_version = api_version
        self.expire = timedelta(seconds=expire_seconds)
        self.new_session_expire = timedelta(seconds=new_session_expire_seconds)
        self.timeout = timeout
        self.ws_url = live_url(
            ws_base or ws_base_from_http(base_url), version=api_version, method=Method.CONSTRAINED
        )
        self._setup, self._mask = live_config.token_constraints()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self.queue_timeout = queue_timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        # google-genai (and pydantic under it) is imported when a Minter is built, not with
        # this module: a client that uses ApiKeySource (tokens.direct imports this module)
        # would otherwise load ~0.4 s of imports and ~75k objects the garbage collector
        # walks in every full collection, for a minter it never builds.
        from google import genai
        from google.genai import types as genai_types

        self._client: genai.Client = genai.Client(
            api_key=api_key,
            http_options=genai_types.HttpOptions(
                base_url=base_url,
                api_version=api_version,
                timeout=int(timeout * 1000),
                # attempts=1 also turns off the SDK's hidden 1-10 s sleep-and-retry on
                # connection errors: retrying is the client's job, with its own policy.
                retry_options=genai_types.HttpRetryOptions(attempts=1),
            ),
        )

    @property
    def waiting(self) -> int:
        """Requests waiting in line for a mint slot right now."""
        return self._waiting

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced (for upstream error messages we log)."""
        return text.replace(self._api_key, "<api-key>")

    async def mint(self) -> MintedToken:
        """Mint one token. Raises :class:`MintingOverloaded` or :class:`UpstreamError`."""
        async with self.reserved() as mint:
            return await mint()

    @asynccontextmanager
    async def reserved(self) -> AsyncIterator[Callable[[], Awaitable[MintedToken]]]:
        """Hold a mint slot and yield ``mint``; :class:`MintingOverloaded` if every slot
        stays busy for ``queue_timeout`` (a short wait in line absorbs a burst that would
        otherwise be shed and come back as another burst).

        The route reserves the slot *before* it spends the user's rate budget, so a request
        shed because every slot is busy costs the user nothing.
        """
        if self._slots.locked():
            if self.queue_timeout <= 0:
                raise MintingOverloaded
            self._waiting += 1
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await self._slots.acquire()  # FIFO among the waiters
            except TimeoutError:
                raise MintingOverloaded from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()  # not locked: acquired without suspending
        try:
            yield self._mint
        finally:
            self._slots.release()

    async def _mint(self) -> MintedToken:
        import httpx
        from google.genai import errors as genai_errors
        from google.genai import types as genai_types

        now = self._clock()
        expires_at = now + self.expire
        new_session_expires_at = now + self.new_session_expire
        config = genai_types.CreateAuthTokenConfig(
            uses=1,
            expire_time=expires_at,
            new_session_expire_time=new_session_expires_at,
            http_options=genai_types.HttpOptions(
                extra_body={"bidiGenerateContentSetup": self._setup, "fieldMask": self._mask}
            ),
        )
        try:
            # The SDK timeout covers the HTTP exchange; this bounds everything else too.
            async with asyncio.timeout(self.timeout + 1.0):
                result = await self._client.aio.auth_tokens.create(config=config)
        except genai_errors.APIError as exc:
            raise UpstreamError(
                "status",
                self.redact(f"upstream answered {exc.code} {exc.status}: {exc.message}"),
                status=exc.code,
            ) from None
        except TimeoutError:
            raise UpstreamError("timeout", f"no answer within {self.timeout:g}s") from None
        except (OSError, httpx.ConnectError) as exc:  # aiohttp's connect errors are OSErrors
            raise UpstreamError("connect", self.redact(f"{type(exc).__name__}: {exc}")) from None
        except Exception as exc:
            raise UpstreamError(
                "bad_response", self.redact(f"{type(exc).__name__}: {exc}")
            ) from None
        name = result.name
        if not isinstance(name, str) or not name:
            raise UpstreamError("bad_response", "upstream answer has no token name")
        return MintedToken(
            token=name,
            expires_at=expires_at,
            new_session_expires_at=new_session_expires_at,
            model=bare_model_id(self.live_config.model),
            ws_url=self.ws_url,
            locked=LockedConfig.of(self.live_config),
        )

    async def aclose(self) -> None:
        """Close the upstream HTTP client."""
        await self._client.aio.aclose()
