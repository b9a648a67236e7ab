"""Async pytest fixtures that run under pytest-asyncio *or* anyio, and load without either.

tunnelproof's fixtures (a running emulator, a tunnel, a token service) are async: they must
start in the event loop the test runs in. Two pytest plugins provide that loop, and the
plugin registered through ``pytest11`` loads in *every* suite of a project that installs
tunnelproof, so it may import neither of them when it loads (a suite without pytest-asyncio
must not break because tunnelproof is installed).

:func:`async_fixture` declares a plain ``pytest.fixture`` and tags the function;
:func:`pytest_fixture_setup` (re-exported by the plugin) decides for each request which
runner drives it:

* the test uses anyio (``@pytest.mark.anyio``, so ``anyio_backend`` is among its fixtures):
  the untagged function is left to anyio's plugin, on the asyncio backend only;
* otherwise, when pytest-asyncio is active: a copy of the function marked through
  ``pytest_asyncio.fixture`` (imported only now, because the plugin is loaded) runs in the
  test's loop, in strict mode as well as in auto mode;
* neither: the test fails with one sentence naming both ways, never a traceback.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import pytest

__all__ = ["async_fixture", "pytest_fixture_setup"]

_F = TypeVar("_F", bound=Callable[..., Any])
_TAG = "_tunnelproof_async_fixture"

NO_RUNNER = (
    "tunnelproof's fixture {name!r} is async and no async test runner is active: install "
    "pytest-asyncio and mark the test @pytest.mark.asyncio (or set asyncio_mode = auto), "
    "or mark it @pytest.mark.anyio to run it with anyio"
)
NOT_ASYNCIO = (
    "tunnelproof's fixture {name!r} needs the asyncio event loop, but anyio_backend is "
    "{backend!r}: parametrize anyio_backend with 'asyncio'"
)


def async_fixture(func: _F) -> _F:
    """``@pytest.fixture`` for an async function, runnable by pytest-asyncio or anyio."""
    setattr(func, _TAG, True)
    return pytest.fixture(func)  # type: ignore[return-value]


@functools.cache
def _asyncio_variant(func: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``func`` marked for pytest-asyncio (the original stays plain for anyio)."""
    import pytest_asyncio  # only called while the pytest-asyncio plugin is active

    code = func.__code__
    copy = types.FunctionType(
        code, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__module__ = func.__module__
    copy.__doc__ = func.__doc__
    copy.__annotations__ = func.__annotations__
    pytest_asyncio.fixture(copy)  # marks ``copy`` in place; the returned definition is unused
    return copy


def _anyio_backend_name(request: pytest.FixtureRequest) -> str:
    backend = request.getfixturevalue("anyio_backend")
    name = backend[0] if isinstance(backend, tuple) else backend
    return str(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Route tunnelproof's async fixtures to the runner the requesting test uses."""
    func = fixturedef.func
    if not getattr(func, _TAG, False):
        return (yield)
    name = fixturedef.argname
    if "anyio_backend" in request.fixturenames:
        backend = _anyio_backend_name(request)
        if backend != "asyncio":
            pytest.fail(NOT_ASYNCIO.format(name=name, backend=backend), pytrace=False)
        return (yield)  # anyio's own hook drives the plain async function
    if not request.config.pluginmanager.hasplugin("asyncio"):
        pytest.fail(NO_RUNNER.format(name=name), pytrace=False)
    with pytest.MonkeyPatch.context() as patch:  # ``FixtureDef.func`` is Final to mypy
        patch.setattr(fixturedef, "func", _asyncio_variant(func))
        return (yield)
