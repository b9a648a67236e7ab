"""camelCase / snake_case field access.

Google's servers parse proto-JSON and accept both spellings at every level, and the
Python SDK itself sends a mix (``client_content`` with ``turnComplete`` inside). Both our
parser of server frames and the emulator's parser of client frames therefore read a
field by its camelCase name and fall back to the snake_case one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


# Memoized: the parser asks for the snake twin of every absent field of every frame (the
# hot path of streaming audio, ~10% of its CPU with a regex per call); the set of names is
# small, and the bound keeps hostile keys from growing the cache.
@lru_cache(maxsize=1024)
def to_snake(name: str) -> str:
    """``turnComplete`` -> ``turn_complete``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


@lru_cache(maxsize=1024)
def to_camel(name: str) -> str:
    """``turn_complete`` -> ``turnComplete`` (already camel names pass through)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def get_field(obj: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    """Read ``camel`` from ``obj``, or its snake_case twin when the camel key is absent."""
    if camel in obj:
        return obj[camel]
    return obj.get(to_snake(camel), default)


def has_field(obj: Mapping[str, Any], camel: str) -> bool:
    """True when ``obj`` carries ``camel`` in either spelling."""
    return camel in obj or to_snake(camel) in obj


# Fields whose values are user data (function arguments and results): their inner keys
# belong to the application and must never be rewritten.
OPAQUE_FIELDS = frozenset({"args", "response", "parameters", "parametersJsonSchema"})


def camelize_keys(value: Any, *, opaque: frozenset[str] = OPAQUE_FIELDS) -> Any:
    """Return ``value`` with every object key in camelCase, leaving opaque subtrees alone."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = to_camel(key) if isinstance(key, str) else key
            out[name] = item if name in opaque else camelize_keys(item, opaque=opaque)
        return out
    if isinstance(value, list):
        return [camelize_keys(item, opaque=opaque) for item in value]
    return value
