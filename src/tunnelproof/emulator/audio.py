"""Deterministic audio: speech synthesis for answers, activity detection and "recognition".

No I/O and no randomness:

* :func:`synthesize` turns an answer into 24 kHz s16le PCM, one tone per word, and says
  where each word starts so output transcriptions line up with the audio.
* :class:`VoiceDetector` is the automatic activity detection: 10 ms frames, speech when
  the RMS exceeds a threshold, an utterance ends after ``silence`` seconds of audio time
  (not wall time, so the result does not depend on how fast the client sends).
* :func:`encode_speech` / :func:`transcribe` let a test "say" a sentence: the text is
  embedded in the PCM and recovered exactly. Any other audio gets a stable
  pseudo-transcript derived from its bytes.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

OUTPUT_RATE = 24_000
INPUT_RATE = 16_000
_MAGIC = (30001, -30002, 30003, -30004)
_END = -30000
_REPEAT = 4


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One ``inlineData`` chunk, with the words whose audio starts in it."""

    pcm: bytes
    words: tuple[str, ...]


def _tone(freq: float, samples: int, rate: int, amplitude: int = 6000) -> array[int]:
    period = max(2, round(rate / freq))
    one = array("h", (round(amplitude * math.sin(2 * math.pi * i / period)) for i in range(period)))
    reps, rest = divmod(samples, period)
    out = array("h", one * reps)
    out.extend(one[:rest])
    return out


def synthesize(
    text: str, *, seconds_per_word: float, chunk_seconds: float, rate: int = OUTPUT_RATE
) -> list[AudioChunk]:
    """PCM chunks for ``text``: each word a tone whose pitch depends on the word."""
    words = text.split()
    per_word = max(1, round(seconds_per_word * rate))
    chunk = max(1, round(chunk_seconds * rate))
    samples = array("h")
    starts: list[tuple[int, str]] = []
    for word in words:
        digest = hashlib.sha256(word.encode("utf-8")).digest()
        freq = 150 + digest[0] * 2
        starts.append((len(samples), word))
        samples.extend(_tone(freq, per_word, rate))
    chunks: list[AudioChunk] = []
    index = 0
    for offset in range(0, len(samples), chunk):
        end = offset + chunk
        said: list[str] = []
        while index < len(starts) and starts[index][0] < end:
            said.append(starts[index][1])
            index += 1
        chunks.append(AudioChunk(samples[offset:end].tobytes(), tuple(said)))
    return chunks


def encode_speech(text: str, *, rate: int = INPUT_RATE, seconds_per_word: float = 0.3) -> bytes:
    """s16le PCM that :func:`transcribe` turns back into exactly ``text``.

    The bytes of ``text`` are embedded after a marker, then padded with a tone so the
    utterance lasts about as long as speaking it would.
    """
    samples = array("h")
    for value in _MAGIC:
        samples.extend([value] * _REPEAT)
    for byte in text.encode("utf-8"):
        samples.extend([(byte + 1) * 100] * _REPEAT)
    samples.extend([_END] * _REPEAT)
    target = round(max(1, len(text.split())) * seconds_per_word * rate)
    if len(samples) < target:
        samples.extend(_tone(220.0, target - len(samples), rate))
    return samples.tobytes()


def silence(seconds: float, *, rate: int = INPUT_RATE) -> bytes:
    """``seconds`` of digital silence."""
    return bytes(2 * round(seconds * rate))


def transcribe(pcm: bytes) -> str:
    """The text :func:`encode_speech` embedded, or a stable pseudo-transcript."""
    samples = _samples(pcm)
    text = _decode_embedded(samples)
    if text is not None:
        return text
    digest = hashlib.sha256(pcm).hexdigest()[:8]
    seconds = len(samples) / INPUT_RATE
    return f"(speech {seconds:.1f}s {digest})"


def _samples(pcm: bytes) -> array[int]:
    data = array("h")
    data.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    return data


def _decode_embedded(samples: array[int]) -> str | None:
    marker = [v for v in _MAGIC for _ in range(_REPEAT)]
    n = len(marker)
    first = marker[0]
    for start in range(len(samples) - n + 1):
        if samples[start] != first or list(samples[start : start + n]) != marker:
            continue
        out = bytearray()
        pos = start + n
        while pos + _REPEAT <= len(samples):
            value = samples[pos]
            if value == _END:
                return out.decode("utf-8", errors="replace")
            byte = value // 100 - 1
            if not 0 <= byte <= 255 or value % 100:
                return None
            out.append(byte)
            pos += _REPEAT
        return None
    return None


def rms(frame: array[int]) -> float:
    """Root mean square of a frame of s16 samples."""
    if not frame:
        return 0.0
    return math.sqrt(sum(v * v for v in frame) / len(frame))


@dataclass(slots=True)
class VoiceDetector:
    """Energy-based automatic activity detection over 10 ms frames of audio time."""

    threshold: float
    silence: float
    rate: int = INPUT_RATE
    in_speech: bool = False
    _buffer: bytearray = field(default_factory=bytearray)
    _pending: bytearray = field(default_factory=bytearray)
    _silent_for: float = 0.0
    _trailing: int = 0

    def feed(self, pcm: bytes, rate: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Yield ``("start", b"")`` and ``("end", utterance_pcm)`` events."""
        if rate is not None and rate != self.rate:
            self.rate = rate
        self._pending.extend(pcm)
        frame_bytes = 2 * max(1, self.rate // 100)
        while len(self._pending) >= frame_bytes:
            frame = bytes(self._pending[:frame_bytes])
            del self._pending[:frame_bytes]
            loud = rms(_samples(frame)) >= self.threshold
            if not self.in_speech:
                if loud:
                    self.in_speech = True
                    self._buffer = bytearray(frame)
                    self._silent_for = 0.0
                    self._trailing = 0
                    yield ("start", b"")
                continue
            self._buffer.extend(frame)
            if loud:
                self._silent_for = 0.0
                self._trailing = 0
                continue
            self._silent_for += frame_bytes / 2 / self.rate
            self._trailing += len(frame)
            if self._silent_for >= self.silence - 1e-9:
                yield ("end", self._finish())

    def flush(self) -> Iterator[tuple[str, bytes]]:
        """End the utterance in progress (``audioStreamEnd``)."""
        if self.in_speech:
            yield ("end", self._finish())
        self._pending.clear()

    def _finish(self) -> bytes:
        utterance = bytes(self._buffer[: len(self._buffer) - self._trailing])
        self.in_speech = False
        self._buffer = bytearray()
        self._silent_for = 0.0
        self._trailing = 0
        return utterance
