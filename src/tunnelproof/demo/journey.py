"""The scripted train journey: what happens, and when, at ``--speed 1``.

Pure data, no I/O. Times are seconds from the start of the journey at speed 1; the runner
divides every time and duration by ``--speed``. Each step's ``at`` is the earliest moment it
may start: a step never starts before the previous one finished (an answer that is late
pushes the rest of the journey back rather than overlapping it).

The journey covers every way a Live session dies on a train:

* **tunnels** (the link goes half-open: a blackhole, nothing delivered, nothing closed),
  with the user speaking inside them, so the words are lost on the wire and must be
  replayed;
* a **station** where the server announces a planned handover (``goAway``);
* a **server crash** (close 1011, "Internal error encountered.");
* a **drop mid-answer** (the link is reset while the model is talking);

and ends by asking the assistant what was said first: the answer proves the context
survived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StepKind = Literal["say", "tunnel", "station", "crash", "drop", "ask_first"]

FIRST_WORDS = "Hi! My name is Ada and I am on the 8:15 train to Zurich."
ASK_FIRST = "What did I say first?"


@dataclass(frozen=True, slots=True)
class Step:
    """One moment of the journey.

    Attributes:
        kind: what happens (see the module docstring).
        at: earliest start, seconds from the journey's start at speed 1.
        label: what the timeline shows.
        say: what the user says in this step (for a tunnel: inside it; for a drop: the
            question whose answer is cut).
        duration: how long the tunnel lasts, or the ``goAway`` ``timeLeft`` of a station.
        cut_after_words: a drop resets the link once this many words of the answer arrived.
    """

    kind: StepKind
    at: float
    label: str
    say: str | None = None
    duration: float = 0.0
    cut_after_words: int = 0


@dataclass(frozen=True, slots=True)
class Journey:
    """An ordered list of steps and the journey's nominal length at speed 1."""

    steps: tuple[Step, ...]
    length: float = field(default=60.0)

    def scaled(self, speed: float) -> Journey:
        """The same journey with every time and duration divided by ``speed``.

        A tunnel's label names its length, so it is rewritten with the scaled one: at
        ``--speed 4`` the 8 s tunnel lasts 2 s and is labelled so.
        """
        if speed <= 0:
            raise ValueError("speed must be positive")
        return Journey(
            tuple(
                Step(
                    s.kind,
                    s.at / speed,
                    tunnel_label(s.duration / speed) if s.kind == "tunnel" else s.label,
                    s.say,
                    s.duration / speed,
                    s.cut_after_words,
                )
                for s in self.steps
            ),
            self.length / speed,
        )

    @property
    def utterances(self) -> list[str]:
        """Everything the user says, in order."""
        return [s.say for s in self.steps if s.say is not None]


def tunnel_label(duration: float) -> str:
    """``tunnel 4 s``, ``tunnel 0.5 s``: a tunnel's row label, naming its length."""
    shown = f"{duration:.0f}" if duration >= 10 else f"{duration:.2g}"
    return f"tunnel {shown} s"


def train_journey(*, real: bool = False) -> Journey:
    """The demo's journey. ``real`` adapts the two faults only the emulator can cause.

    Answers are spoken (audio with its transcription, as every current Live model answers),
    so the answer to cut is short: spoken words take a quarter of a second each, and
    counting to 60 would take a quarter of the journey.

    Against Google nobody can order a ``goAway`` or a server crash, so the station waits
    for nothing (Google sends goAway on its own schedule, which the client handles the
    same way) and the crash becomes an abrupt link reset.
    """
    crash_label = "link reset (RST)" if real else "server crash (1011)"
    steps = (
        Step("say", 1.0, "hello", say=FIRST_WORDS),
        Step("say", 5.0, "chat", say="Remind me to call Grace when we arrive."),
        Step(
            "tunnel",
            9.0,
            tunnel_label(4.0),
            say="I am in a tunnel now, can you still hear me?",
            duration=4.0,
        ),
        Step("say", 17.0, "chat", say="What is my name?"),
        Step("station", 21.0, "station: goAway", duration=10.0),
        Step("say", 24.0, "chat", say="We are leaving the station."),
        Step("crash", 29.0, crash_label),
        Step("say", 31.0, "chat", say="Did you catch that? Something hiccupped."),
        Step(
            "drop",
            36.0,
            "drop mid-answer",
            say="Please count to 20 for me.",
            cut_after_words=5,
        ),
        Step(
            "tunnel",
            44.0,
            tunnel_label(8.0),
            say="Still there? This tunnel is a long one.",
            duration=8.0,
        ),
        Step("ask_first", 56.0, "what did I say first?", say=ASK_FIRST),
    )
    return Journey(steps, 60.0)
