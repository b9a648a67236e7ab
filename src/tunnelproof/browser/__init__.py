"""The browser client: a dependency-free ES module shipped as package data.

The JavaScript files next to this module (``client.js``, ``machine.js``, ``outbox.js``,
``turns.js``, ``restore.js``, ``protocol.js``, ``audio.js``) are the browser half of
tunnelproof: the same client contract as :class:`tunnelproof.session.LiveSession`, for
pages. The token service serves
them (see :mod:`tunnelproof.browser.static`); this module only says where they are and
which version they are.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
"""The folder holding the ES module files."""

MODULE_FILES = (
    "client.js",
    "machine.js",
    "outbox.js",
    "turns.js",
    "restore.js",
    "protocol.js",
    "audio.js",
)
"""The files a page may load; ``client.js`` is the entry point, the rest are its imports."""


def module_path(name: str = "client.js") -> Path:
    """The path of one of :data:`MODULE_FILES` (``ValueError`` for any other name)."""
    if name not in MODULE_FILES:
        raise ValueError(f"{name!r} is not a file of the browser client")
    return MODULE_DIR / name


@lru_cache(maxsize=1)
def module_version() -> str:
    """``<package version>-<content hash>``: changes whenever any module file changes.

    The hash makes the versioned URL safe to cache forever (``immutable``) even for an
    edited checkout that did not bump the package version.
    """
    digest = hashlib.sha256()
    for name in MODULE_FILES:
        digest.update(name.encode())
        digest.update(module_path(name).read_bytes())
    try:
        package = metadata.version("tunnelproof")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        package = "0"
    return f"{package}-{digest.hexdigest()[:12]}"


__all__ = ["MODULE_DIR", "MODULE_FILES", "module_path", "module_version"]
