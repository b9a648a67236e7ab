"""The live view fits the terminal it is drawn in (issue 14.4), rendered with fixed sizes.

A view taller than the terminal cannot be redrawn in place: every refresh pushed its top
into the scrollback (at 80x24 the header was printed there 83 times in 15 s).
"""

from __future__ import annotations

import pytest
from rich.console import Console

from tunnelproof.demo.journey import train_journey
from tunnelproof.demo.model import DemoState, Disruption, Utterance
from tunnelproof.demo.view import LAYOUTS, live_view, render_layout, utterance_lines


def busy_state() -> DemoState:
    """The end of a journey: every exchange, every disruption, a long event log."""
    journey = train_journey()
    state = DemoState(length=60.0, elapsed=58.0, session_state="reconnecting", tunnel_open=True)
    state.step_labels = [(s.at, s.kind, s.label) for s in journey.steps]
    state.step_index = len(state.step_labels) - 1
    for i, text in enumerate(journey.utterances):
        answer = "You said: " + " ".join([text] * 3)  # long answers, wider than 80 columns
        state.utterances.append(Utterance(text, 5.0 * i, status="answered", answer=answer))
    state.utterances[-3].cut_partial = "1, 2, 3, 4, 5,"
    for i in range(5):
        state.disruptions.append(Disruption("tunnel", f"tunnel {i} s", 9.0 * i, 9.0 * i + 1))
    for i in range(40):
        state.note(f"event {i}: reconnecting in 0.50 s (server, attempt {i}): a long reason")
    return state


def rendered(width: int, height: int, state: DemoState | None = None) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(live_view(state or busy_state(), width, height))
    return console.export_text().rstrip("\n").split("\n")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 50), (100, 30), (60, 12), (40, 6)])
def test_the_view_is_never_taller_or_wider_than_the_terminal(width: int, height: int) -> None:
    rows = height - 1  # what the demo passes: one row short of the screen
    lines = rendered(width, rows)
    assert 0 < len(lines) <= rows, "\n".join(lines)
    assert all(len(line) <= width for line in lines)
    # The state line is the first row, whatever was cut.
    assert lines[0].startswith("RECONNECTING  t =  58.0 s  IN A TUNNEL"), lines[0]


def test_a_large_terminal_gets_the_full_view_a_small_one_a_compact_one() -> None:
    big = "\n".join(rendered(160, 49))
    assert "drops and recoveries" in big and "┏" in big  # the bordered table
    assert "╭" in big  # panels
    assert big.count("you ›") == 6

    small = "\n".join(rendered(80, 23))
    assert "┏" not in small and "╭" not in small  # compact: no borders
    assert "journey" in small
    assert "tunnel 4 s" in small  # one row per disruption instead of the table
    assert small.count("you ›") >= 1


def test_layouts_are_ordered_richest_first() -> None:
    state = busy_state()
    console = Console(width=120, color_system=None)
    sizes = [
        len(console.render_lines(render_layout(state, layout, 120), console.options))
        for layout in LAYOUTS
    ]
    # The first layout is the unbounded full view; each next one is no taller.
    assert sizes[0] == len(rendered(120, 10_000, state))
    assert sizes == sorted(sizes, reverse=True), sizes
    assert sizes[-1] < sizes[0]


def test_the_cut_answer_comes_before_the_full_answer_and_says_it_was_cut() -> None:
    u = Utterance("Please count to 20 for me.", 9.0, status="answered")
    u.cut_partial = "1, 2, 3, 4, 5,"
    u.answer = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10."
    lines = [line.plain for line in utterance_lines(u)]
    assert len(lines) == 3, lines
    assert lines[0].endswith("you › Please count to 20 for me.")
    assert "cut off after 5 words: 1, 2, 3, 4, 5," in lines[1]
    assert lines[2].strip().startswith("assistant › 1, 2, 3, 4, 5, 6")


def test_every_redraw_is_one_synchronized_update() -> None:
    import io

    from rich.live import Live

    from tunnelproof.demo.terminal import BEGIN_SYNC, END_SYNC, SynchronizedOutput

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    raw = Terminal()
    console = Console(
        file=SynchronizedOutput(raw),  # type: ignore[arg-type]
        force_terminal=True,
        width=80,
        height=24,
        color_system=None,
    )
    state = busy_state()
    with Live(live_view(state, 80, 23), console=console, auto_refresh=False) as live:
        for second in range(5):
            state.elapsed = 50.0 + second
            live.update(live_view(state, 80, 23), refresh=True)
    out = raw.getvalue()
    frames = out.split(BEGIN_SYNC)
    assert frames[0] == ""  # nothing written outside an update
    assert len(frames) > 5
    for frame in frames[1:]:
        assert frame.count(END_SYNC) == 1 and frame.endswith(END_SYNC)
    assert any("t =  54.0 s" in frame for frame in frames)


def _states() -> list[DemoState]:
    empty = DemoState()
    middle = busy_state()
    middle.utterances = middle.utterances[:3]
    middle.utterances[-1].status = "sent"
    middle.utterances[-1].answer = ""
    middle.disruptions = middle.disruptions[:1]
    middle.log = middle.log[:2]
    middle.context_resets = 1
    cut = busy_state()
    cut.utterances[-1].status = "dropped"
    cut.utterances[-1].dropped_reason = "audio older than its time to live"
    return [empty, middle, busy_state(), cut]


@pytest.mark.parametrize("width", [40, 80, 120, 160])
def test_counted_heights_are_the_rendered_heights(width: int) -> None:
    from tunnelproof.demo.view import TABLE_MIN_WIDTH, layout_height

    console = Console(width=width, color_system=None)
    for state in _states():
        for layout in LAYOUTS:
            if layout.table and width < TABLE_MIN_WIDTH:
                continue  # never chosen there
            rendered_rows = len(
                console.render_lines(render_layout(state, layout, width), console.options)
            )
            assert layout_height(state, layout, width) == rendered_rows, (width, layout)


def test_fitting_is_cheap() -> None:
    import time

    state = busy_state()
    started = time.perf_counter()
    for _ in range(20):
        rendered(80, 23, state)
    per_frame = (time.perf_counter() - started) / 20
    # Measured ~3 ms (rendering every candidate was ~26 ms); generous for a loaded machine.
    assert per_frame < 0.05, per_frame
