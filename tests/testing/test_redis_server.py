"""RedisServer: a real redis-server on a free loopback port, started and stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest
import redis
import redis.asyncio

from tunnelproof.testing import redis_server as redis_server_module
from tunnelproof.testing.redis_server import (
    RedisServer,
    RedisServerUnavailable,
    ensure_redis_server,
    find_redis_server,
)

pytestmark = pytest.mark.skipif(find_redis_server() is None, reason="redis-server is not installed")


def test_sync_context_manager_serves_and_stops() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.ping()
        client = redis.Redis.from_url(server.url)
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
        port, pid = server.port, server.pid
    assert not server.running
    # The port is closed and the process gone.
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_async_context_manager() -> None:
    async with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()  # type: ignore[attr-defined]
    assert not server.running


def test_two_servers_get_different_ports() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        assert a.ping()
        assert b.ping()


def test_retries_when_the_chosen_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hold a port, make the first pick return it: redis exits "Address already in use" and
    # the helper must move on to another port.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    picks = iter([taken])
    real_free_port = redis_server_module._free_port

    def fake_free_port(host: str) -> int:
        return next(picks, None) or real_free_port(host)

    monkeypatch.setattr(redis_server_module, "_free_port", fake_free_port)
    try:
        with RedisServer() as server:
            assert server.port != taken
            assert server.ping()
    finally:
        blocker.close()


def test_flushall_empties_the_server() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url_for_db(3))
        try:
            client.set("k", "v")
            server.flushall()
            assert client.get("k") is None
        finally:
            client.close()


def test_bad_arguments_fail_with_the_log_in_the_message() -> None:
    with pytest.raises(RedisServerUnavailable, match="did not start"):
        RedisServer(extra_args=("--no-such-option", "1")).start()


def test_missing_binary_without_install_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_server_module, "find_redis_server", lambda: None)
    with pytest.raises(RedisServerUnavailable, match="not installed"):
        ensure_redis_server(install=False)


def test_missing_binary_as_non_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server_module, "find_redis_server", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RedisServerUnavailable, match="not root"):
        ensure_redis_server()


def test_server_dies_with_its_parent() -> None:
    # A test process killed with SIGKILL must not leave redis behind (PR_SET_PDEATHSIG).
    code = (
        "import sys, time\n"
        "from tunnelproof.testing.redis_server import RedisServer\n"
        "s = RedisServer().start()\n"
        "print(s.pid, s.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()
        pid, _port = (int(x) for x in line.split())
        child.kill()
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            pytest.fail("redis-server outlived its parent")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_fixture_gives_an_empty_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next user of redis_url must not see it
    finally:
        client.close()


def test_fixture_flushes_between_tests(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get("left-behind") is None
    finally:
        client.close()


def test_async_start_survives_the_end_of_worker_threads() -> None:
    # The parent-death signal follows the thread that spawned redis. Started from a
    # to_thread worker, redis would die when that worker exits; start_async spawns from the
    # loop's thread instead.
    async def main() -> RedisServer:
        server = await RedisServer().start_async()
        await asyncio.get_running_loop().shutdown_default_executor()
        return server

    server = asyncio.run(main())  # the loop and its worker threads are gone now
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # give a wrongly delivered SIGTERM time to land
            assert server.running
            time.sleep(0.05)
        assert server.ping()
    finally:
        server.stop()
