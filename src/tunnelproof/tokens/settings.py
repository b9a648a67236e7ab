"""Token-service settings, read from ``TUNNELPROOF_*`` environment variables.

Every field can also be passed as a keyword (the CLI flags do that), which wins over the
environment. Lists accept either a comma-separated string or JSON.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tunnelproof.protocol.config import LiveConfig, Modality
from tunnelproof.protocol.endpoints import GOOGLE_HTTP_BASE, ApiVersion
from tunnelproof.protocol.models import DEFAULT_LIVE_MODEL, bare_model_id
from tunnelproof.tokens.admission import DEFAULT_PROBE_INTERVAL

log = logging.getLogger("tunnelproof.tokens")

AuthMode = Literal["jwks", "jwt_secret", "static"]
"""How callers prove who they are: OIDC JWT checked against a JWKS URL, a JWT signed with a
shared secret (HS256), or static bearer keys (development only)."""

DEFAULT_PATH = "/api/live/token"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""Levels both :mod:`logging` and uvicorn know (uvicorn's extra ``trace`` is not one)."""


def _split_list(value: Any) -> Any:
    # Env values arrive as one string; accept "a,b" as well as JSON '["a","b"]'.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class TokenServiceSettings(BaseSettings):
    """Configuration of the token service (standalone app, router, CLI).

    The API key comes from ``TUNNELPROOF_API_KEY`` or ``GEMINI_API_KEY`` and is kept as a
    :class:`~pydantic.SecretStr` so it never shows up in a ``repr`` or a log line.
    """

    model_config = SettingsConfigDict(
        env_prefix="TUNNELPROOF_", extra="ignore", populate_by_name=True
    )

    # -- upstream -----------------------------------------------------------------
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("api_key", "TUNNELPROOF_API_KEY", "GEMINI_API_KEY"),
    )
    upstream_base_url: str = GOOGLE_HTTP_BASE
    """HTTP base of the token-minting API (Google, or the emulator's ``http_base``)."""
    ws_base_url: str | None = None
    """WebSocket base put in ``wsUrl``; ``None`` derives it from ``upstream_base_url``."""
    api_version: ApiVersion = "v1alpha"
    expire_seconds: float = Field(default=1800.0, gt=0, lt=20 * 3600)
    new_session_expire_seconds: float = Field(default=60.0, gt=0, lt=20 * 3600)
    mint_timeout: float = Field(default=10.0, gt=0)
    max_concurrent_mints: int = Field(default=8, ge=1)
    mint_queue_timeout: float = Field(default=1.0, ge=0)
    """Seconds a request waits in line for a busy mint slot before it is shed (503)."""
    admit_rate: float = Field(default=400.0, gt=0)
    """Tokens/s one process mints at most (``tunnelproof bench token_service`` measures
    it). Shed callers are told to come back at this rate: the *n*-th one shed gets
    ``Retry-After`` ≈ n / admit_rate, so a herd returns at about this rate."""
    upstream_probe_interval: float = Field(default=DEFAULT_PROBE_INTERVAL, gt=0)
    """While the upstream is down, one request per this many seconds goes upstream to
    find out whether it is back; every other one is answered 503 at once."""

    # -- the route -------------------------------------------------------------------
    path: str = DEFAULT_PATH
    rate_limit: str = "10/minute"
    """Per-user budget in ``limits`` notation, e.g. ``"10/minute"`` or ``"5 per 10 seconds"``."""
    redis_url: str | None = None
    """``redis://…``: share the rate-limit budget between replicas. Unset: in memory."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins allowed to call the route. Empty: requests carrying ``Origin`` are
    refused (server-to-server callers send none). ``*`` allows any origin."""

    # -- caller authentication ---------------------------------------------------------
    auth_mode: AuthMode = "jwks"
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256"])
    jwt_secret: SecretStr | None = None
    jwt_user_claim: str = "sub"
    jwt_cookie: str | None = None
    """Read the JWT from this cookie when no ``Authorization`` header is sent."""
    jwt_leeway: float = Field(default=30.0, ge=0)
    static_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Development bearer keys as ``user:key`` pairs (``alice:s3cret,bob:hunter2``)."""

    # -- the session the tokens are locked to (the same LiveConfig the client uses) -------
    model: str = DEFAULT_LIVE_MODEL
    response_modality: Modality = "AUDIO"
    input_audio_transcription: bool = True
    output_audio_transcription: bool = True
    """Lock the transcriptions on (the default, as ``LiveConfig()``); ``false`` leaves the
    field to the client."""
    system_instruction: str | None = None
    voice_name: str | None = None

    # -- serving -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "info"
    """One of :data:`LOG_LEVELS` (any case)."""
    docs: bool = False
    """Serve ``/docs``, ``/redoc`` and ``/openapi.json`` from the standalone app. Off by
    default: a public service need not publish its API description."""

    @field_validator("allowed_origins", "jwt_algorithms", "static_keys", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path must start with '/'")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        # Pinning excludes "none" and mixing key types (the classic HS/RS confusion attack).
        if not value or any(a.lower() == "none" for a in value):
            raise ValueError("jwt_algorithms must name real algorithms (never 'none')")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        # Checked here so `serve --log-level trace` is one sentence, not logging's traceback.
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return bare_model_id(value)

    def live_config(self) -> LiveConfig:
        """The :class:`LiveConfig` tokens are locked to (what the client must also use)."""
        return LiveConfig(
            model=self.model,
            response_modalities=(self.response_modality,),
            input_audio_transcription=self.input_audio_transcription,
            output_audio_transcription=self.output_audio_transcription,
            system_instruction=self.system_instruction,
            voice_name=self.voice_name,
        )

    def api_key_value(self) -> str | None:
        """The API key, or ``None`` when missing or blank."""
        if self.api_key is None:
            return None
        value = self.api_key.get_secret_value().strip()
        return value or None

    def static_key_map(self) -> dict[str, str]:
        """``{key: user}`` parsed from :attr:`static_keys`."""
        out: dict[str, str] = {}
        for item in self.static_keys:
            user, sep, key = item.get_secret_value().partition(":")
            if not sep or not user or not key:
                raise ValueError("static_keys entries must look like user:key")
            out[key] = user
        return out
