"""The public facade: ``from tunnelproof import ...`` (as httpx pins its exports).

A name added to or removed from the facade must be added to or removed from this list on
purpose; every name must resolve to the same object its home module defines; the facade's
loader table and what type checkers read must agree; every public name of
``tunnelproof.session`` must be in the facade or named here as core-only; and the facade
must stay lazy, so ``import tunnelproof`` loads nothing else.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tunnelproof
import tunnelproof.session

EXPECTED = [
    "Answer",
    "AnswerClosed",
    "AnswerError",
    "AnswerFailed",
    "AnswerLost",
    "AnswerTimeout",
    "ToolCallsPending",
    "collect_answer",
    "ConfigMismatch",
    "ApiKeyMintingSource",
    "AppEvent",
    "AudioChunk",
    "Closed",
    "Connected",
    "ContextReset",
    "Credential",
    "DEFAULT_POLICY",
    "DEFAULT_WATCHDOGS",
    "Delivered",
    "Disconnected",
    "EmulatorServer",
    "EventsDropped",
    "Failed",
    "FunctionResponse",
    "GenerationComplete",
    "GoAwayReceived",
    "HandleStore",
    "InputTranscript",
    "Interrupted",
    "LiveConfig",
    "LiveSession",
    "MemoryHandleStore",
    "OutboxLimits",
    "OutputTranscript",
    "ProtocolViolation",
    "Reconnecting",
    "RedisHandleStore",
    "Resumed",
    "RetryPolicy",
    "Rewound",
    "SEED_POLICY",
    "SendDropped",
    "SendResult",
    "SessionMetrics",
    "SessionState",
    "SqliteHandleStore",
    "StoredSession",
    "TextDelta",
    "TokenAuthError",
    "TokenConfigError",
    "TokenOffline",
    "TokenRateLimited",
    "TokenServiceSource",
    "TokenSource",
    "TokenSourceError",
    "TokenUnavailable",
    "ToolCallCancelled",
    "ToolCallRequested",
    "Turn",
    "TurnComplete",
    "TurnsRestored",
    "UnknownServerMessage",
    "Usage",
    "Watchdogs",
]


# tunnelproof.session's public names an app does not need (the sans-I/O core and the pieces
# other drivers build on); every other name in tunnelproof.session.__all__ is in the facade.
SESSION_CORE_ONLY = {"AnswerCollector", "ClientMessage", "SessionMachine", "ask"}


def test_the_facade_exports_exactly_the_pinned_names() -> None:
    assert sorted(tunnelproof.__all__) == sorted(EXPECTED)
    assert sorted(tunnelproof._EXPORTS) == sorted(EXPECTED), "__all__ and the loader agree"
    assert len(tunnelproof._EXPORTS) == sum(map(len, tunnelproof._PARTS.values())), (
        "a name lent by two modules"
    )


def test_type_checkers_see_the_loaders_table() -> None:
    """The ``if TYPE_CHECKING:`` imports are the loader's table, name for name."""
    tree = ast.parse(Path(tunnelproof.__file__).read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    seen: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None, ast.dump(node)
        for alias in node.names:
            # ``X as X``: what marks a name as re-exported under mypy --strict
            assert alias.asname == alias.name, f"import {alias.name} as {alias.name}"
            seen[alias.name] = node.module
    assert seen == tunnelproof._EXPORTS


def test_every_public_session_name_is_in_the_facade_or_core_only() -> None:
    session_names = set(tunnelproof.session.__all__)
    assert session_names >= SESSION_CORE_ONLY, "a core-only name tunnelproof.session lost"
    missing = session_names - set(EXPECTED) - SESSION_CORE_ONLY
    assert not missing, f"new in tunnelproof.session, not in the facade: {sorted(missing)}"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_name_resolves_to_its_home_definition(name: str) -> None:
    value = getattr(tunnelproof, name)
    home = tunnelproof._EXPORTS[name]
    assert value is getattr(sys.modules[home], name)
    # Classes are defined inside the package, not re-exported from a dependency.
    module = getattr(value, "__module__", None)
    if isinstance(value, type):
        assert module is not None and module.startswith("tunnelproof."), (name, module)


def test_session_names_are_the_same_objects_in_both_places() -> None:
    for name in tunnelproof.session.__all__:
        if name in EXPECTED:
            assert getattr(tunnelproof, name) is getattr(tunnelproof.session, name), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'LiveSesion'"):
        _ = tunnelproof.LiveSesion  # type: ignore[attr-defined]


def test_dir_lists_the_facade() -> None:
    assert set(EXPECTED) <= set(dir(tunnelproof))


def test_import_tunnelproof_loads_nothing_else() -> None:
    code = (
        "import sys, tunnelproof\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tunnelproof.'))\n"
        "heavy = [m for m in ('websockets', 'fastapi', 'aiohttp', 'httpx') if m in sys.modules]\n"
        "print(loaded, heavy)\n"
        "assert not loaded and not heavy, (loaded, heavy)\n"
        "from tunnelproof import LiveSession\n"
        "assert 'tunnelproof.session.live_session' in sys.modules\n"
        "assert 'tunnelproof.tokens.client' not in sys.modules, 'one name loads one part'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_star_import_gives_the_facade() -> None:
    namespace: dict[str, object] = {}
    exec("from tunnelproof import *", namespace)
    assert set(EXPECTED) <= set(namespace)
