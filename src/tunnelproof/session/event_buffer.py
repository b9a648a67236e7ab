"""The app's event queue: in order, bounded, and honest about what it drops.

A session produces events whether or not the app reads them; audio alone is some 48 KB/s.
An app that stops reading must not make the process grow without bound, and must not lose
events without being told. The policy:

* lifecycle and control events (``Connected``, ``Failed``, ``SendDropped``, ``Delivered``,
  ``TurnComplete``, tool calls, ...) are small and rare and are never dropped;
* content events (``AudioChunk``, ``TextDelta``, ``InputTranscript``, ``OutputTranscript``)
  are bounded by their total size, ``max_content_bytes``; beyond it the *oldest* content
  events are dropped (live audio that is minutes late is worth less than the newest);
* what was dropped is reported: the next read returns one ``EventsDropped`` event with
  the counts (merged if more is dropped before the app reads again).
"""

from __future__ import annotations

import asyncio
from collections import deque

from tunnelproof.session import app_events as ev

DEFAULT_MAX_CONTENT_BYTES = 8 * 1024 * 1024
"""About 3 minutes of 24 kHz audio, or 8 MB of text, waiting for the app."""


def content_size(event: ev.AppEvent) -> int:
    """Bytes a content event holds; 0 for events that are never dropped."""
    match event:
        case ev.AudioChunk(pcm=pcm):
            return max(1, len(pcm))
        case (
            ev.TextDelta(text=text) | ev.InputTranscript(text=text) | ev.OutputTranscript(text=text)
        ):
            return max(1, len(text.encode("utf-8")))
        case _:
            return 0


class EventBuffer:
    """A FIFO of app events with the bound and the report described above."""

    def __init__(self, max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES) -> None:
        if max_content_bytes <= 0:
            raise ValueError("max_content_bytes must be positive")
        self.max_content_bytes = max_content_bytes
        self._items: deque[tuple[ev.AppEvent, int]] = deque()
        self._content_bytes = 0
        self._wake = asyncio.Event()
        self._ended = False
        self._dropped_events = 0
        self._dropped_audio_bytes = 0
        self._dropped_text_bytes = 0

    @property
    def content_bytes(self) -> int:
        """Bytes of content events waiting for the app."""
        return self._content_bytes

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: ev.AppEvent) -> None:
        """Queue ``event``; drop the oldest content events if over the bound."""
        # An audio chunk (50 a second per session) skips content_size's match.
        size = max(1, len(event.pcm)) if type(event) is ev.AudioChunk else content_size(event)
        self._items.append((event, size))
        self._content_bytes += size
        if self._content_bytes > self.max_content_bytes:
            self._drop_oldest_content()
        self._wake.set()

    def end(self) -> None:
        """No more events will come: readers end once the queue is empty."""
        self._ended = True
        self._wake.set()

    async def get(self) -> ev.AppEvent | None:
        """The next event, an ``EventsDropped`` report first if any, or ``None`` at the end."""
        while True:
            if self._dropped_events:
                return self._take_report()
            if self._items:
                event, size = self._items.popleft()
                self._content_bytes -= size
                return event
            if self._ended:
                return None
            self._wake.clear()
            await self._wake.wait()

    def _drop_oldest_content(self) -> None:
        kept: deque[tuple[ev.AppEvent, int]] = deque()
        items = self._items
        while items and self._content_bytes > self.max_content_bytes:
            event, size = items.popleft()
            if size == 0:
                kept.append((event, size))
                continue
            self._content_bytes -= size
            self._dropped_events += 1
            if isinstance(event, ev.AudioChunk):
                self._dropped_audio_bytes += size
            else:
                self._dropped_text_bytes += size
        kept.extend(items)
        self._items = kept

    def _take_report(self) -> ev.EventsDropped:
        report = ev.EventsDropped(
            self._dropped_events, self._dropped_audio_bytes, self._dropped_text_bytes
        )
        self._dropped_events = self._dropped_audio_bytes = self._dropped_text_bytes = 0
        return report
