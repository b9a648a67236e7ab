"""Ephemeral tokens: minting, validation, use counting and setup locks. No I/O.

Rules (``shared/reference/live-api-protocol.md`` section 2):

* The create body is the flat ``AuthToken`` (``uses``, ``expireTime``,
  ``newSessionExpireTime``, ``bidiGenerateContentSetup``, ``fieldMask``); anything else is
  refused the way Google's proto-JSON parser refuses it (HTTP 400, "Unknown name").
* Defaults: 1 use, ``expireTime`` 30 min, ``newSessionExpireTime`` 60 s; both must be less
  than 20 h ahead. ``uses: 0`` means no limit.
* A new session consumes a use; a resume does not (unless ``strict_token_uses``).
* After ``newSessionExpireTime`` no new session may start; after ``expireTime`` nothing.
* Field mask: an empty mask with a setup locks the whole setup; a non-empty mask lists the
  fields the token overwrites; a present setup field missing from a non-empty mask is a 400.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunnelproof.emulator.errors import HttpRefusal
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.protocol.casing import camelize_keys, to_camel
from tunnelproof.protocol.config import field_mask_paths
from tunnelproof.protocol.endpoints import TOKEN_PREFIX
from tunnelproof.protocol.types import JsonDict

Clock = Callable[[], float]

_TOKEN_FIELDS = frozenset(
    {"name", "expireTime", "newSessionExpireTime", "uses", "bidiGenerateContentSetup", "fieldMask"}
)
MASK_ERROR = "BidiGenerateContentSetup contains fields that are not specified in field_mask"


@dataclass(slots=True)
class TokenUse:
    """One connection that presented a token."""

    connection_id: str
    at: float
    resume: bool
    consumed_use: bool


@dataclass(slots=True)
class AuthToken:
    """A minted token and everything the emulator knows about its use."""

    name: str
    created: float
    expire_time: float
    new_session_expire_time: float
    uses: int  # 0 = unlimited
    setup: JsonDict | None
    field_mask: tuple[str, ...] | None  # None = no fieldMask sent
    uses_consumed: int = 0
    history: list[TokenUse] = field(default_factory=list)

    @property
    def exhausted(self) -> bool:
        """True when no use is left (never for an unlimited token)."""
        return self.uses != 0 and self.uses_consumed >= self.uses

    def to_dict(self) -> JsonDict:
        """A JSON view for the control API and the state file."""
        return {
            "name": self.name,
            "created": self.created,
            "expireTime": _format_time(self.expire_time),
            "newSessionExpireTime": _format_time(self.new_session_expire_time),
            "expire_at": self.expire_time,
            "new_session_expire_at": self.new_session_expire_time,
            "uses": self.uses,
            "usesConsumed": self.uses_consumed,
            "bidiGenerateContentSetup": self.setup,
            "fieldMask": list(self.field_mask) if self.field_mask is not None else None,
            "connections": [
                {
                    "connection": u.connection_id,
                    "at": u.at,
                    "resume": u.resume,
                    "consumedUse": u.consumed_use,
                }
                for u in self.history
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthToken:
        """Inverse of :meth:`to_dict` (for the state file)."""
        mask = data.get("fieldMask")
        return cls(
            name=data["name"],
            created=float(data["created"]),
            expire_time=float(data["expire_at"]),
            new_session_expire_time=float(data["new_session_expire_at"]),
            uses=int(data["uses"]),
            setup=data.get("bidiGenerateContentSetup"),
            field_mask=tuple(mask) if mask is not None else None,
            uses_consumed=int(data.get("usesConsumed", 0)),
            history=[
                TokenUse(c["connection"], float(c["at"]), bool(c["resume"]), c["consumedUse"])
                for c in data.get("connections", [])
            ],
        )


class TokenRejected(Exception):
    """A token cannot be used for this connection; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenLedger:
    """All tokens minted by one emulator, and which connection used which."""

    def __init__(self, policy: EmulatorPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.tokens: dict[str, AuthToken] = {}

    # -- minting -------------------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> AuthToken:
        """Validate a create body and mint a token, or raise :class:`HttpRefusal` (400)."""
        if not isinstance(body, Mapping):
            raise HttpRefusal(400, "Invalid JSON payload received. Expected an object.")
        fields: dict[str, Any] = {}
        for key, value in body.items():
            name = to_camel(key)
            if name not in _TOKEN_FIELDS:
                raise HttpRefusal(
                    400, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
                )
            fields[name] = value
        now = self.clock()
        uses = self._uses(fields.get("uses"))
        expire = self._time(fields.get("expireTime"), "expire_time", now)
        new_session = self._time(fields.get("newSessionExpireTime"), "new_session_expire_time", now)
        expire_at = expire if expire is not None else now + self.policy.token_default_expire
        new_session_at = (
            new_session if new_session is not None else now + self.policy.token_default_new_session
        )
        setup_raw = fields.get("bidiGenerateContentSetup")
        if setup_raw is not None and not isinstance(setup_raw, Mapping):
            raise HttpRefusal(
                400,
                "Invalid value at 'bidi_generate_content_setup' "
                "(type.googleapis.com/google.ai.generativelanguage.v1alpha."
                "BidiGenerateContentSetup), expected an object.",
            )
        setup: JsonDict | None = camelize_keys(dict(setup_raw)) if setup_raw is not None else None
        mask = parse_field_mask(fields.get("fieldMask"))
        if setup is not None and mask:
            check_mask_covers(setup, mask)
        name = TOKEN_PREFIX + secrets.token_urlsafe(36)
        token = AuthToken(
            name=name,
            created=now,
            expire_time=expire_at,
            # The new-session window cannot outlive the token itself.
            new_session_expire_time=min(new_session_at, expire_at),
            uses=uses,
            setup=setup,
            field_mask=mask,
        )
        self.tokens[name] = token
        return token

    def mint_response(self, token: AuthToken) -> JsonDict:
        """The create response: ``name`` (plus the times when ``token_response_echo``)."""
        out: JsonDict = {"name": token.name}
        if self.policy.token_response_echo:
            out["expireTime"] = _format_time(token.expire_time)
            out["newSessionExpireTime"] = _format_time(token.new_session_expire_time)
            out["uses"] = token.uses
        return out

    def _uses(self, value: Any) -> int:
        if value is None:
            return self.policy.token_default_uses
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise HttpRefusal(400, f"Invalid value at 'uses' (TYPE_INT32), {value!r}")
        try:
            uses = int(value)
        except ValueError:
            raise HttpRefusal(400, f"Invalid value at 'uses' (TYPE_INT32), \"{value}\"") from None
        if uses < 0:
            raise HttpRefusal(400, "uses must not be negative.")
        return uses

    def _time(self, value: Any, wire_name: str, now: float) -> float | None:
        if value is None:
            return None
        at = parse_timestamp(value)
        if at is None:
            raise HttpRefusal(
                400,
                f"Invalid value at '{wire_name}' (type.googleapis.com/google.protobuf.Timestamp), "
                f"Field '{wire_name}', Invalid time format: \"{value}\"",
            )
        if at <= now:
            raise HttpRefusal(400, f"{wire_name} must be in the future.")
        if at - now >= self.policy.token_max_ahead:
            raise HttpRefusal(400, f"{wire_name} must be less than 20 hours in the future.")
        return at

    # -- using ---------------------------------------------------------------------------

    def check_upgrade(self, name: str) -> AuthToken:
        """Checks that can be made at the WebSocket upgrade, before ``setup`` is read.

        Whether the connection is a resume is only known from ``setup``, so use counting
        happens later (:meth:`admit`), except in ``strict_token_uses`` mode where every
        connection counts and an exhausted token is refused here.
        """
        token = self.tokens.get(name)
        now = self.clock()
        if token is None:
            raise TokenRejected("The auth token is not valid.")
        if now >= token.expire_time:
            raise TokenRejected("The auth token has expired.")
        if self.policy.strict_token_uses:
            if token.exhausted:
                raise TokenRejected("The auth token has no uses left.")
            if now >= token.new_session_expire_time:
                raise TokenRejected("The auth token can no longer open sessions.")
        return token

    def admit(self, token: AuthToken, connection_id: str, *, resume: bool) -> None:
        """Count one connection against ``token`` or raise :class:`TokenRejected`."""
        now = self.clock()
        if now >= token.expire_time:
            raise TokenRejected("The auth token has expired.")
        counts = self.policy.strict_token_uses or not resume
        if counts:
            if now >= token.new_session_expire_time:
                raise TokenRejected("The auth token can no longer open new sessions.")
            if token.exhausted:
                raise TokenRejected("The auth token has no uses left.")
            token.uses_consumed += 1
        token.history.append(TokenUse(connection_id, now, resume, counts))

    def ledger(self) -> list[JsonDict]:
        """Every token with the connections that used it."""
        return [t.to_dict() for t in self.tokens.values()]


# -- field masks ----------------------------------------------------------------------------


def parse_field_mask(value: Any) -> tuple[str, ...] | None:
    """``"model,generationConfig.top_k"`` -> ``("model", "generationConfig.topK")``."""
    if value is None:
        return None
    if isinstance(value, Mapping):  # {"paths": [...]} form
        value = value.get("paths", [])
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, list):
        parts = [str(p).strip() for p in value]
    else:
        raise HttpRefusal(400, "Invalid value at 'field_mask', expected a FieldMask string.")
    paths: list[str] = []
    for part in parts:
        if not part:
            continue
        path = ".".join(to_camel(seg) for seg in part.split("."))
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def _covered(path: str, mask: tuple[str, ...]) -> bool:
    return any(path == m or path.startswith(m + ".") or m.startswith(path + ".") for m in mask)


def check_mask_covers(setup: Mapping[str, Any], mask: tuple[str, ...]) -> None:
    """Google's 400 when the locked setup has a field the non-empty mask leaves out."""
    for path in field_mask_paths(setup):
        if not _covered(path, mask):
            raise HttpRefusal(400, MASK_ERROR)


def apply_token_setup(token: AuthToken | None, client_setup: Mapping[str, Any]) -> JsonDict:
    """The setup the session really runs with, after the token's locks.

    ``sessionResumption`` always comes from the client: it is per connection (the handle),
    and the SDK's own tokens leave it unlocked so a client can resume.
    """
    client = copy.deepcopy(dict(client_setup))
    if token is None or token.setup is None:
        return client
    locked = copy.deepcopy(token.setup)
    if not token.field_mask:
        merged = locked
        if "sessionResumption" in client:
            merged["sessionResumption"] = client["sessionResumption"]
        return merged
    for path in token.field_mask:
        _overwrite(client, locked, path.split("."))
    return client


def _overwrite(target: JsonDict, source: Mapping[str, Any], segments: list[str]) -> None:
    head, rest = segments[0], segments[1:]
    if not rest:
        if head in source:
            target[head] = copy.deepcopy(source[head])
        else:
            target.pop(head, None)
        return
    inner_source = source.get(head)
    if not isinstance(inner_source, Mapping):
        inner_source = {}
    inner_target = target.get(head)
    if not isinstance(inner_target, dict):
        inner_target = {}
        target[head] = inner_target
    _overwrite(inner_target, inner_source, rest)


# -- timestamps -----------------------------------------------------------------------------


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 (``...Z`` or ``+00:00``) to epoch seconds; ``None`` when not a timestamp."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # proto-JSON Timestamps always carry an offset
    return moment.timestamp()


def _format_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
