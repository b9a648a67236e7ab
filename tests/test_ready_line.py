"""``next_json_line``: the one reader of a child's JSON ready line."""

from __future__ import annotations

import asyncio

from tunnelproof.ready_line import next_json_line


def _stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def _read(data: bytes) -> dict[str, object] | None:
    return await next_json_line(_stream(data))


def test_passes_over_other_lines_and_malformed_json() -> None:
    data = b'a banner\n{not json\n[1, 2]\n  {"port": 8123}  \n{"later": true}\n'
    assert asyncio.run(_read(data)) == {"port": 8123}


def test_reads_the_next_line_each_call() -> None:
    async def both() -> list[dict[str, object] | None]:
        stream = _stream(b'{"ready": 1}\nwork\n{"result": 2}\n')
        return [await next_json_line(stream), await next_json_line(stream)]

    assert asyncio.run(both()) == [{"ready": 1}, {"result": 2}]


def test_none_when_the_child_exits_first() -> None:
    assert asyncio.run(_read(b"Traceback (most recent call last):\n{broken\n")) is None
    assert asyncio.run(_read(b"")) is None
