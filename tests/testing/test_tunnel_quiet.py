"""The tunnel proxy is quiet under faults (issue 14.11 / 15): resets, blackholes, ``offline``,
``stop()`` and the end of ``asyncio.run`` with traffic flowing leave no traceback, no
"Exception in callback" and no "Task exception was never retrieved" on stderr.

Python 3.11's ``start_server`` calls ``task.exception()`` on the handler task when it ends,
so a cancelled handler printed a ``CancelledError`` traceback (from ``_write_side``, where
the pumps were) for every connection cut. The scenario runs in a fresh interpreter so that
everything asyncio and the garbage collector report at shutdown reaches the captured
stderr; the upstream is a ``Protocol`` echo (no handler task of its own that could be the
noisy one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

SCENARIO = textwrap.dedent(
    """
    import asyncio, gc, logging, os, random, sys

    from tunnelproof.testing.tunnel import TunnelProxy

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    moved = [0]


    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)


    async def client(port, rnd):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        try:
            while True:
                writer.write(os.urandom(rnd.randint(1, 8192)))
                await asyncio.sleep(0.002)
                await writer.drain()
                data = await reader.read(65536)
                if not data:
                    return
                moved[0] += len(data)
        except OSError:
            pass
        finally:
            writer.close()


    async def at_least(proxy, n):
        for _ in range(1000):  # bounded: 10 s
            if proxy.stats.connections_active >= n:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError(f"fewer than {n} connections: {proxy.stats}")


    async def main(rounds, end_with_traffic):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        upstream = server.sockets[0].getsockname()[1]
        rnd = random.Random(7)
        tasks = []
        for i in range(rounds):
            proxy = TunnelProxy("127.0.0.1", upstream, seed=i)
            await proxy.start()

            def more(n):
                tasks.extend(asyncio.create_task(client(proxy.port, rnd)) for _ in range(n))

            more(10)
            await at_least(proxy, 10)
            await asyncio.sleep(0.05)
            proxy.latency(5, 3)
            await asyncio.sleep(0.05)
            proxy.reset()
            more(10)
            await asyncio.sleep(0.05)
            proxy.blackhole(drop=True)
            await asyncio.sleep(0.02)
            proxy.restore()
            more(5)
            await asyncio.sleep(0.05)
            proxy.blackhole(drop=False)
            await asyncio.sleep(0.02)
            proxy.restore(reset_damaged=False)
            await asyncio.sleep(0.03)
            proxy.offline()
            await asyncio.sleep(0.02)
            proxy.restore()
            more(10)
            await at_least(proxy, 5)
            await asyncio.sleep(0.05)
            if end_with_traffic and i == rounds - 1:
                print("connections left open:", proxy.stats.connections_active, flush=True)
                return  # asyncio.run cancels every task with bytes in flight
            await proxy.stop()  # abort under load
        server.close()


    asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "end-with-traffic"))
    gc.collect()
    print("bytes echoed through the tunnel:", moved[0], flush=True)
    """
)


@pytest.mark.parametrize("ending", ["stop", "end-with-traffic"])
def test_faults_under_load_leave_no_traceback(tmp_path: Path, ending: str) -> None:
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    result = subprocess.run(
        [sys.executable, str(script), "3", ending],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    moved = int(result.stdout.strip().splitlines()[-1].rsplit(":", 1)[1])
    assert moved > 100_000, result.stdout  # there really was load
    if ending == "end-with-traffic":
        open_left = int(result.stdout.splitlines()[0].rsplit(":", 1)[1])
        assert open_left >= 1, result.stdout
    for noise in ("Traceback", "Exception in callback", "never retrieved", "CancelledError"):
        assert noise not in result.stderr, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
