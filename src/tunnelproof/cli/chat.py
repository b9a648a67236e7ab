"""`tunnelproof chat`: talk to a Live model through a resilient session, and break the link.

Where the model is:

* default: a local emulator started in this process (no key, no network);
* ``--real``: Google, with ``GEMINI_API_KEY`` (tokens are minted here, with the key);
* ``--token-url URL``: your token service (``--bearer`` or ``TUNNELPROOF_BEARER`` is the
  user's credential), which decides the model and the endpoint.

Whatever the target, the Live link runs through a local tunnel proxy, so ``/tunnel 5``
drops it for five seconds (a blackhole: the connection goes silent, like a train in a
tunnel). The URL keeps its real host name (TLS and the Host header are unchanged); only the
TCP destination is the proxy.

Commands: ``/tunnel N``, ``/status``, ``/retry`` (after a failure, or to skip a backoff
wait), ``/help``, ``/quit`` (or Ctrl-D). ``--wav FILE`` sends a 16-bit WAV as spoken input
first; ``--audio`` uses the microphone and the speaker (the
optional ``sounddevice`` extra: ``pip install 'tunnelproof[audio]'``).

On a terminal the bottom line is a status line (a scroll region keeps it in place while the
conversation scrolls above it); elsewhere, plain lines are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import signal
import ssl
import sys
import threading
import time
import wave
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO
from urllib.parse import urlsplit

import typer

from tunnelproof.cli import _interrupt
from tunnelproof.cli.demo import check_model, route_logs, run_until_signalled
from tunnelproof.demo.preflight import (
    FirstThen,
    PreflightError,
    SourceKind,
    failure_sentence,
    first_credential,
)

PROMPT = "› "
OUTPUT_RATE = 24_000  # Live answers are 24 kHz 16-bit mono PCM
EOF_GRACE = 30.0  # seconds to wait for outstanding answers at the end of piped input
HANDLE_PAUSE = 0.3  # piped input: the longest pause after an answer, for its handle
ANSWERS_NOTE = "Answers are spoken (audio); you read their transcript."
HELP = "Type a message. /tunnel N drops the link for N seconds, /status, /retry, /quit."


class ChatError(Exception):
    """The chat cannot start; ``str()`` is one sentence saying what to do."""


# -- the status line -------------------------------------------------------------------------


class Screen:
    """Lines above, one status line pinned at the bottom (terminals only).

    A scroll region (DECSTBM) excludes the last row, so printed lines and the user's typing
    scroll above it; the status is redrawn with the cursor saved and restored, so a
    half-typed line is not disturbed.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty() and os.environ.get("TERM", "") not in ("", "dumb")
        self.rows = 0
        self.status = ""
        self._drawn = ""

    def start(self) -> None:
        """Reserve the bottom row."""
        if not self.tty:
            return
        self.rows = shutil.get_terminal_size((100, 24)).lines
        # Make room for the status row (a newline scrolls the screen if the cursor is at the
        # bottom), then set the region without moving the cursor: DECSTBM homes it, so it
        # is saved before and restored after, and what was printed so far stays visible.
        self.out.write(f"\n\x1b[1A\x1b7\x1b[1;{self.rows - 1}r\x1b8")
        self.out.flush()

    def resize(self) -> None:
        """The terminal changed size: move the region and redraw."""
        if self.tty:
            self.rows = shutil.get_terminal_size((100, 24)).lines
            self.out.write(f"\x1b7\x1b[1;{self.rows - 1}r\x1b8")
            self._drawn = ""
            self.draw(self.status)

    def draw(self, status: str) -> None:
        """Show ``status`` on the bottom row."""
        if not self.tty or status == self._drawn:
            return
        self.status = self._drawn = status
        width = shutil.get_terminal_size((100, 24)).columns
        self.out.write(f"\x1b7\x1b[{self.rows};1H\x1b[2K\x1b[7m{status[:width]}\x1b[0m\x1b8")
        self.out.flush()

    def say(self, line: str) -> None:
        """Print a line above the status line."""
        self.out.write(("\r\x1b[2K" if self.tty else "") + line + "\n")
        self.out.flush()

    def prompt(self) -> None:
        """Show the input prompt (terminals only: in a pipe it would only be noise)."""
        if not self.tty:
            return
        self.out.write(PROMPT)
        self.out.flush()

    def stop(self) -> None:
        """Give the whole screen back."""
        if self.tty:
            self.out.write(f"\x1b7\x1b[r\x1b[{self.rows};1H\x1b[2K\x1b8\n")
            self.out.flush()


# -- where the model is --------------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    """The resolved target: a token source, the first credential, and how to dial it."""

    label: str
    token_source: Any
    config: Any
    upstream: tuple[str, int]
    secure: bool
    ca_file: str | None = None
    cleanup: list[Any] = field(default_factory=list)


def _upstream(ws_base: str) -> tuple[str, int, bool]:
    parts = urlsplit(ws_base)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or (443 if secure else 80), secure


async def resolve_target(
    *,
    real: bool,
    audio: bool = False,
    token_url: str | None,
    bearer: str | None,
    model: str | None,
    modality: str | None,
    ca_file: str | None,
    emulator_speed: float = 1.0,
) -> Target:
    """Build the token source for the chosen target and fetch its first credential.

    ``emulator_speed`` paces the local emulator's answers (2 = twice real time); tests use
    it to hear the same answers sooner.
    """
    from tunnelproof.protocol.config import ContextWindowCompression, LiveConfig
    from tunnelproof.protocol.models import default_model

    # Audio-first, as Google is: every current Live model answers in AUDIO only. The
    # answer's output transcription is what the terminal shows.
    chosen = modality or "AUDIO"
    if chosen not in ("TEXT", "AUDIO"):
        raise ChatError("--modality must be AUDIO (the default) or TEXT.")
    config = LiveConfig(
        model=model or default_model(),
        response_modalities=(chosen,),  # type: ignore[arg-type]
        output_audio_transcription=chosen == "AUDIO",
        input_audio_transcription=True,
        compression=ContextWindowCompression(),
    )
    cleanup: list[Any] = []
    kind: SourceKind
    if token_url:
        from tunnelproof.session.credentials import TokenConfigError
        from tunnelproof.tokens.client import TokenServiceSource

        header = bearer_header(bearer)
        try:
            source: Any = TokenServiceSource(
                token_url, (lambda: header) if header else None, verify=_verify(ca_file)
            )
        except TokenConfigError as exc:
            raise ChatError(
                f"{exc}; pass the full route, e.g. http://host:8080/api/live/token."
            ) from None
        label = f"token service {token_url}"
        where, kind = f"the token service at {token_url}", "service"
    elif real:
        from tunnelproof.tokens.direct import ApiKeyMintingSource

        key = (os.environ.get("GEMINI_API_KEY") or "").strip()
        if not key:
            raise ChatError(
                "--real needs a Gemini API key: export GEMINI_API_KEY=... "
                "(or drop --real to chat with the local emulator)."
            )
        source = ApiKeyMintingSource(key, config)
        cleanup.append(source.aclose)
        label = f"Google ({config.model})"
        where, kind = "Google", "google"
    else:
        from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
        from tunnelproof.tokens.direct import ApiKeyMintingSource

        policy = None if emulator_speed == 1.0 else EmulatorPolicy(generation_speed=emulator_speed)
        emulator = EmulatorServer(policy)
        await emulator.start()
        cleanup.append(emulator.stop)
        source = ApiKeyMintingSource(emulator.api_key, config, http_base=emulator.http_base)
        cleanup.append(source.aclose)
        label = f"local emulator ({config.model})"
        where, kind = f"the emulator at {emulator.http_base}", "emulator"
    try:
        first = await first_credential(source, where=where, kind=kind)
    except PreflightError as exc:
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                await step()
        raise ChatError(str(exc)) from None
    except BaseException:
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                await step()
        raise
    host, port, secure = _upstream(first.ws_base)
    return Target(label, FirstThen(source, first), config, (host, port), secure, ca_file, cleanup)


def bearer_header(bearer: str | None) -> str | None:
    """The ``Authorization`` header for ``--bearer``: the credential, prefixed once.

    ``--bearer "Bearer KEY"`` (copied from a curl line) means the key: the prefix is
    dropped rather than sent twice, which the service could only answer with a bare 401.
    """
    if bearer is None:
        return None
    value = bearer.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        value = rest.strip()
    return f"Bearer {value}" if value else None


def _verify(ca_file: str | None) -> Any:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


# -- audio -----------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[bytes, int]:
    """16-bit PCM from a WAV file (stereo is mixed down), and its sample rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ChatError(f"cannot read {path} as a WAV file ({exc}).") from None
    if width != 2:
        raise ChatError(f"{path} is {8 * width}-bit; convert it to 16-bit PCM WAV.")
    if channels > 1:
        samples = array("h", frames)
        mono = array(
            "h",
            (sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)),
        )
        frames = mono.tobytes()
    return frames, rate


def load_sounddevice() -> Any:
    """Import the optional ``sounddevice`` (lazily: most users never need it)."""
    try:
        import sounddevice
    except (ImportError, OSError):
        raise ChatError(
            "--audio needs the optional sounddevice package (and PortAudio): "
            "pip install 'tunnelproof[audio]'."
        ) from None
    return sounddevice


# -- the chat --------------------------------------------------------------------------


class Chat:
    """One interactive conversation."""

    def __init__(self, target: Target, screen: Screen, *, audio: bool) -> None:
        self.target = target
        self.screen = screen
        self.audio = audio
        self.session: Any = None
        self.proxy: Any = None
        self.answer = ""
        self.tunnel_until: float | None = None
        self.started = time.monotonic()
        self.connected_once = False
        self._connected = asyncio.Event()  # set at the first connection
        self.audio_in_s = 0.0  # seconds of spoken answer received
        self.failed: str | None = None
        self.awaiting = 0  # messages sent whose answer has not finished yet
        self._settled = asyncio.Event()  # set while nothing is awaited
        self._settled.set()
        self.stop = asyncio.Event()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._buffer = b""
        self._outage_noted = False
        self._speaker: Any = None
        self.interactive = sys.stdin.isatty()

    # -- input --------------------------------------------------------------------------------

    def _on_stdin(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._lines.put_nowait(None)
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._lines.put_nowait(line.decode("utf-8", "replace").strip())

    def watch_stdin(self, fd: int) -> bool:
        """Feed typed lines to :meth:`read_lines`; True when the loop polls ``fd`` itself.

        Terminals and pipes are polled by the event loop. A regular file (``< script.txt``,
        ``< /dev/null``) cannot be polled, so a daemon thread reads it instead (daemon:
        it must never keep the process alive at exit).
        """
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(fd, self._on_stdin)
        except (PermissionError, OSError, ValueError):
            pass
        else:
            return True

        def reader() -> None:
            for raw in sys.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, raw.strip())
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

        threading.Thread(target=reader, name="tunnelproof-chat-stdin", daemon=True).start()
        return False

    async def read_lines(self) -> None:
        """Handle typed lines until /quit or end of input."""
        while not self.stop.is_set():
            line = await self._lines.get()
            if line is None:
                # End of input (Ctrl-D, or the end of a piped script): let the answers to
                # what was sent arrive first, as a person would wait for them.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), EOF_GRACE)
                self.stop.set()
                return
            if not line:
                self.screen.prompt()
                continue
            if not self.interactive:
                # A piped script: wait for the first connection (a script's first line is
                # read at once; "queued" would be noise), then for each answer before the
                # next line, as a person would (or every line would barge in on the last).
                await self._first_connection()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), EOF_GRACE)
                await self._pause_for_handle()
                if self.stop.is_set():
                    return
            await self.command(line)

    async def _pause_for_handle(self) -> None:
        """After an answer, pause (at most ``HANDLE_PAUSE``) until its resumption handle came.

        Google issues the handle covering a turn 20-70 ms after ``turnComplete``. A person
        pauses longer; a script would not, and a drop right then would resume from the
        state before the last exchange (correct, but that exchange is replayed).
        """
        for _ in range(int(HANDLE_PAUSE / 0.01)):  # polled: the session has no handle event
            if self.session.last_turn_held or self.stop.is_set():
                return
            await asyncio.sleep(0.01)

    async def _first_connection(self) -> None:
        """Wait (bounded) until the session first connected, or the chat stops."""
        if self._connected.is_set():
            return
        waiters = {
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self.stop.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=EOF_GRACE, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def command(self, line: str) -> None:
        """One typed line: a command or a message."""
        word, _, rest = line.partition(" ")
        if word in ("/quit", "/exit", "/q"):
            self.stop.set()
            return
        if word == "/help":
            self.screen.say(HELP)
        elif word == "/status":
            self.screen.say(self.status_text())
        elif word == "/retry":
            # After a Failed (e.g. the user signed in again), or to skip a backoff wait.
            self.failed = None
            await self.session.resume()
            self.screen.say("· retrying now")
        elif word == "/tunnel":
            try:
                seconds = float(rest.strip() or "5")
                if seconds <= 0:
                    raise ValueError
            except ValueError:
                self.screen.say("usage: /tunnel SECONDS (e.g. /tunnel 5)")
            else:
                self.enter_tunnel(seconds)
        elif word.startswith("/"):
            self.screen.say(f"unknown command {word}; {HELP}")
        else:
            result = await self.session.send_text(line)
            if not result.dropped:
                self.awaiting += 1
                self._settled.clear()
            if result.queued:
                self.screen.say("· queued: it will be sent when the link is back")
            elif result.dropped:
                self.screen.say(f"· not sent: {result.reason}")
        self.screen.prompt()

    def enter_tunnel(self, seconds: float) -> None:
        """Blackhole the link for ``seconds``."""
        self.proxy.blackhole()
        self.tunnel_until = time.monotonic() + seconds
        self.screen.say(f"· entering a tunnel for {seconds:g} s (the link goes silent)")
        asyncio.get_running_loop().call_later(seconds, self.leave_tunnel)

    def leave_tunnel(self) -> None:
        """The link is back."""
        if self.tunnel_until is None:
            return
        self.tunnel_until = None
        self.proxy.restore()
        self.screen.say("· out of the tunnel")

    # -- output --------------------------------------------------------------------------------

    def status_text(self) -> str:
        """The status line."""
        s = self.session
        m = s.metrics
        parts = [f"{s.state}", f"t {time.monotonic() - self.started:.0f} s"]
        parts.append(f"reconnects {m.reconnects}")
        if self.audio_in_s:
            parts.append(f"spoken answers {self.audio_in_s:.1f} s")
        if m.last_gap is not None:
            parts.append(f"last gap {m.last_gap:.2f} s")
        parts.append(f"tokens {m.tokens_fetched}")
        parts.append(f"replayed {m.messages_replayed}")
        if m.messages_dropped:
            parts.append(f"dropped {m.messages_dropped}")
        if self.tunnel_until is not None:
            parts.append(f"IN TUNNEL {max(0.0, self.tunnel_until - time.monotonic()):.1f} s")
        parts.append("/tunnel N · /quit")
        return " | ".join(parts)

    async def consume(self) -> None:
        """Print session events."""
        from tunnelproof.session import (
            AudioChunk,
            ConfigMismatch,
            Connected,
            ContextReset,
            Failed,
            GoAwayReceived,
            Interrupted,
            OutputTranscript,
            Reconnecting,
            Resumed,
            Rewound,
            SendDropped,
            TextDelta,
            TurnComplete,
            TurnsRestored,
        )

        say = self.screen.say
        async for event in self.session.events():
            match event:
                case Connected(first=first):
                    self.connected_once = True
                    self._connected.set()
                    self._outage_noted = False
                    say("· connected" if first else "· connected to a fresh session")
                    if first:
                        self.screen.prompt()
                case Resumed(gap=gap, replayed=replayed):
                    self._outage_noted = False
                    extra = f", {replayed} message(s) replayed" if replayed else ""
                    say(f"· resumed after {gap:.2f} s{extra}")
                case Reconnecting(delay=delay, reason=reason, planned=planned):
                    if planned:
                        say("· planned handover (goAway)")
                    elif not self._outage_noted:
                        self._outage_noted = True
                        reason = reason.replace("closed None", "dropped without a close frame")
                        say(f"· link lost ({reason}); reconnecting in {delay:.1f} s")
                case GoAwayReceived(time_left=left):
                    say(f"· the server asked for a handover ({left or 0:.0f} s left)")
                case Rewound(partial_text=partial):
                    if partial:
                        say(f"· the answer was cut off: {partial.strip()!r}")
                    self.answer = ""
                case TurnsRestored(turns=turns, missing=missing, reasked=reasked):
                    what = "asked again (no text of it is known)" if reasked else "restored"
                    lacks = f"; not restored: {'; '.join(missing)}" if missing else ""
                    say(f"· {turns} finished turn(s) lost with the link: {what}{lacks}")
                case ConfigMismatch() as mismatch:
                    say(f"· config mismatch: {mismatch.advice}")
                case ContextReset(reason=reason, seeded_turns=turns):
                    say(f"· context reset ({reason}); {turns} turns re-sent from the transcript")
                case SendDropped(reason=reason):
                    say(f"· not delivered: {reason}")
                case Failed(verdict=verdict):
                    self.failed = failure_sentence(verdict)
                    self._settled.set()
                    say(f"· stopped: {self.failed}")
                    if not self.connected_once:
                        self.stop.set()
                case TextDelta(text=text) | OutputTranscript(text=text):
                    self.answer += text
                case AudioChunk(pcm=pcm):
                    self.audio_in_s += len(pcm) / 2 / OUTPUT_RATE
                    if self._speaker is not None:
                        self._speaker.write(pcm)
                case Interrupted():
                    self.answer = ""
                    if self._speaker is not None:
                        self._speaker.flush()
                case TurnComplete():
                    self.awaiting = max(0, self.awaiting - 1)
                    if self.awaiting == 0:
                        self._settled.set()
                    if self.answer.strip():
                        say("assistant › " + " ".join(self.answer.split()))
                        self.screen.prompt()
                    self.answer = ""
                case _:
                    pass
            self.screen.draw(self.status_text())

    async def tick(self) -> None:
        """Keep the status line fresh (the clock, the tunnel countdown)."""
        while not self.stop.is_set():
            self.screen.draw(self.status_text())
            await asyncio.sleep(0.25)

    async def send_wav(self, path: Path) -> None:
        """Send a WAV as speech, paced in real time, then a short silence to end the turn."""
        pcm, rate = read_wav(path)
        step = int(rate * 0.04) * 2
        self.screen.say(f"· sending {path.name} ({len(pcm) / 2 / rate:.1f} s of audio)")
        for offset in range(0, len(pcm), step):
            await self.session.send_audio(pcm[offset : offset + step], rate=rate)
            await asyncio.sleep(0.04)
        await self.session.send_audio(bytes(int(rate * 0.8) * 2), rate=rate)

    async def microphone(self, sd: Any) -> None:
        """Stream the microphone (16 kHz mono) and play answers on the speaker (24 kHz)."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue()

        def captured(data: Any, _frames: int, _time: Any, _status: Any) -> None:
            # PortAudio's thread: hand the bytes to the event loop, never block here.
            loop.call_soon_threadsafe(chunks.put_nowait, bytes(data))

        speaker = Speaker(sd)
        mic = sd.RawInputStream(
            samplerate=16_000, channels=1, dtype="int16", blocksize=640, callback=captured
        )
        self._speaker = speaker
        self.screen.say("· microphone on (speak; answers play on the speaker)")
        try:
            with mic:
                while not self.stop.is_set():
                    await self.session.send_audio(await chunks.get())
        finally:
            self._speaker = None
            speaker.close()


class Speaker:
    """Plays 24 kHz PCM from a thread, so a full audio device never blocks the event loop."""

    def __init__(self, sd: Any) -> None:
        self._stream = sd.RawOutputStream(samplerate=24_000, channels=1, dtype="int16")
        self._stream.start()
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tunnelproof-speaker", daemon=True)
        self._thread.start()

    def write(self, pcm: bytes) -> None:
        """Queue ``pcm`` for playback."""
        self._queue.put(pcm)

    def flush(self) -> None:
        """Forget what has not been played yet (the user interrupted the answer)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def _run(self) -> None:
        while (pcm := self._queue.get()) is not None:
            self._stream.write(pcm)

    def close(self) -> None:
        """Stop playing and release the device."""
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self._stream.stop()
            self._stream.close()


async def run_chat(
    *,
    real: bool,
    token_url: str | None,
    bearer: str | None,
    model: str | None,
    modality: str | None,
    wav: Path | None,
    audio: bool,
    ca_file: str | None,
    out: TextIO,
    emulator_speed: float = 1.0,
) -> int:
    """The whole chat; returns the exit code. Raises :class:`ChatError` for setup problems."""
    from tunnelproof.session import LiveSession
    from tunnelproof.testing.tunnel import TunnelProxy

    sd = load_sounddevice() if audio else None
    if wav is not None and not await asyncio.to_thread(wav.is_file):
        raise ChatError(f"--wav {wav}: no such file.")
    target = await resolve_target(
        real=real,
        audio=audio,
        token_url=token_url,
        bearer=bearer,
        model=model,
        modality=modality,
        ca_file=ca_file,
        emulator_speed=emulator_speed,
    )
    screen = Screen(out)
    loop = asyncio.get_running_loop()
    try:
        async with TunnelProxy(*target.upstream) as proxy:
            kwargs: dict[str, Any] = {
                # Dial the tunnel; the URL keeps the real host for TLS and the Host header.
                "connect_kwargs": {"host": proxy.listen_host, "port": proxy.port, "proxy": None},
            }
            if target.secure:
                kwargs["ssl"] = (
                    ssl.create_default_context(cafile=target.ca_file)
                    if target.ca_file
                    else ssl.create_default_context()
                )
            async with LiveSession(target.config, target.token_source, **kwargs) as session:
                chat = Chat(target, screen, audio=audio)
                chat.session, chat.proxy = session, proxy
                screen.say(f"tunnelproof chat: {target.label}. {HELP}")
                if target.config.modality == "AUDIO":
                    screen.say(ANSWERS_NOTE + ("" if audio else " (--audio plays them.)"))
                screen.start()
                fd = sys.stdin.fileno()
                polled = chat.watch_stdin(fd)
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signal.SIGWINCH, screen.resize)
                tasks = [
                    asyncio.create_task(chat.consume()),
                    asyncio.create_task(chat.read_lines()),
                    asyncio.create_task(chat.tick()),
                ]
                if wav is not None:
                    tasks.append(asyncio.create_task(chat.send_wav(wav)))
                if sd is not None:
                    tasks.append(asyncio.create_task(chat.microphone(sd)))
                try:
                    await chat.stop.wait()
                finally:
                    if polled:
                        loop.remove_reader(fd)
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(signal.SIGWINCH)
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    chat.leave_tunnel()
                    screen.stop()
        if chat.failed is not None and not chat.connected_once:
            raise ChatError(chat.failed)
        screen.say("bye")
        return 0
    finally:
        for step in reversed(target.cleanup):
            with contextlib.suppress(Exception):
                await step()


def register(app: typer.Typer) -> None:
    """Add the `chat` command to ``app``."""

    @app.command("chat")
    def chat_command(
        real: Annotated[
            bool, typer.Option("--real", help="Talk to Google (needs GEMINI_API_KEY).")
        ] = False,
        token_url: Annotated[
            str | None,
            typer.Option(
                help="Your token service route, e.g. http://127.0.0.1:8080/api/live/token."
            ),
        ] = None,
        bearer: Annotated[
            str | None,
            typer.Option(
                envvar="TUNNELPROOF_BEARER",
                help="The user's credential for --token-url: the key or JWT itself "
                "(a leading 'Bearer ' is accepted and dropped).",
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="Live model.")] = None,
        modality: Annotated[
            str | None,
            typer.Option(
                help="AUDIO (default: spoken answers, shown through their transcript) or "
                "TEXT (only for a model that answers in text; no current Google model does)."
            ),
        ] = None,
        wav: Annotated[
            Path | None, typer.Option(help="Send this 16-bit WAV file as spoken input first.")
        ] = None,
        audio: Annotated[
            bool, typer.Option("--audio", help="Microphone and speaker (sounddevice extra).")
        ] = False,
        ca_file: Annotated[
            str | None, typer.Option(hidden=True, help="Trust this CA (testing against TLS).")
        ] = None,
        emulator_speed: Annotated[
            float,
            typer.Option(
                hidden=True,
                min=0.0,
                help="Pace the local emulator's answers N times real time (testing).",
            ),
        ] = 1.0,
        log_file: Annotated[
            Path | None, typer.Option(help="Write the library's debug log to this file.")
        ] = None,
    ) -> None:
        """Chat through a resilient Live session; /tunnel N drops the link for N seconds."""
        route_logs(log_file)
        check_model(model, "chat")
        if real and token_url:
            typer.echo("tunnelproof chat: choose --real or --token-url, not both.", err=True)
            raise typer.Exit(code=2)
        if emulator_speed != 1.0 and (real or token_url):
            typer.echo(
                "tunnelproof chat: --emulator-speed paces the local emulator; "
                "drop it with --real or --token-url.",
                err=True,
            )
            raise typer.Exit(code=2)
        try:
            code = asyncio.run(
                run_until_signalled(
                    run_chat(
                        real=real,
                        token_url=token_url,
                        bearer=bearer,
                        model=model,
                        modality=modality.upper() if modality else None,
                        wav=wav,
                        audio=audio,
                        ca_file=ca_file,
                        out=sys.stdout,
                        emulator_speed=emulator_speed,
                    )
                )
            )
        except ChatError as exc:
            typer.echo(f"tunnelproof chat: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            # On a terminal the ^C echo leaves the cursor mid-line.
            lead = "\n" if sys.stderr.isatty() else ""
            _interrupt.report(f"{lead}tunnelproof chat: interrupted; everything was stopped.")
            raise typer.Exit(code=130) from None
        raise typer.Exit(code=code)
