"""A stand-in for the ``sounddevice`` package, put on PYTHONPATH by the chat tests.

The "microphone" says ``$FAKE_MIC_SAYS`` (speech the emulator can transcribe) in 40 ms
blocks from its own thread, as PortAudio does; the "speaker" appends the byte count of
everything played to ``$FAKE_SPEAKER_LOG``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from tunnelproof.emulator.audio import encode_speech, silence


class RawInputStream:
    def __init__(
        self, *, samplerate: int, channels: int, dtype: str, blocksize: int, callback: Any
    ) -> None:
        assert (samplerate, channels, dtype) == (16_000, 1, "int16")
        self.blocksize = blocksize
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pcm = encode_speech(os.environ.get("FAKE_MIC_SAYS", "hello")) + silence(1.0)
        step = self.blocksize * 2
        for offset in range(0, len(pcm), step):
            if self._stop.is_set():
                return
            self.callback(pcm[offset : offset + step], self.blocksize, None, None)
            time.sleep(0.005)

    def __enter__(self) -> RawInputStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


class RawOutputStream:
    def __init__(self, *, samplerate: int, channels: int, dtype: str) -> None:
        assert (samplerate, channels, dtype) == (24_000, 1, "int16")

    def start(self) -> None:
        pass

    def write(self, pcm: bytes) -> None:
        with open(os.environ["FAKE_SPEAKER_LOG"], "a") as log:
            log.write(f"{len(pcm)}\n")

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
