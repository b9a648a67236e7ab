"""The live terminal view (rich) and the final summary table.

Rendering is a pure function of :class:`~tunnelproof.demo.model.DemoState`; the app
redraws it a few times a second from the event loop (never from rich's refresh thread,
so the state is never read while the runner changes it).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from tunnelproof.demo.model import DemoState, Disruption, Utterance
from tunnelproof.demo.verdict import Verdict

TIMELINE_WIDTH = 64
STATE_STYLE = {
    "connected": "bold green",
    "connecting": "bold yellow",
    "reconnecting": "bold yellow",
    "failed": "bold red",
    "closing": "dim",
    "closed": "dim",
}
STEP_GLYPH = {
    "say": ("●", "cyan"),
    "ask_first": ("?", "bold cyan"),
    "tunnel": ("▓", "magenta"),
    "station": ("⇄", "blue"),
    "crash": ("✖", "red"),
    "drop": ("✂", "red"),
}


def _fmt(seconds: float | None, digits: int = 2) -> str:
    return "—" if seconds is None else f"{seconds:.{digits}f} s"


def header(state: DemoState) -> Text:
    """Session state, clock, title: one row; the state comes first so it is never cut."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(state.session_state.upper(), style=STATE_STYLE.get(state.session_state, "bold"))
    text.append(f"  t = {state.elapsed:5.1f} s")
    if state.tunnel_open:
        text.append("  IN A TUNNEL", style="bold magenta")
    text.append(f"   {state.mode} ×{state.speed:g}", style="bold")
    text.append(" · you speak" if state.audio else " · you type")
    text.append(" · answers: audio → transcript")
    return text


def timeline(state: DemoState, columns: int = 100, *, legend: bool = True) -> Text:
    """The journey as one line: planned steps, tunnels as they happened, and 'now'."""
    length = max(state.length, state.elapsed, 1e-6) * 1.05
    width = max(20, min(TIMELINE_WIDTH, columns - 22))

    def col(t: float) -> int:
        return min(width - 1, max(0, int(t / length * width)))

    cells: list[tuple[str, str]] = [("─", "dim")] * width
    for d in state.disruptions:
        if d.kind == "tunnel":
            end = d.ended if d.ended is not None else state.elapsed
            for c in range(col(d.started), col(end) + 1):
                cells[c] = ("▓", "magenta")
    for index, (at, kind, _label) in enumerate(state.step_labels):
        glyph, style = STEP_GLYPH.get(kind, ("·", ""))
        done = index <= state.step_index
        if kind == "tunnel" and done:
            continue  # drawn from what really happened
        cells[col(at)] = (glyph, style if done else "dim " + style)
    for d in state.disruptions:
        if d.recovered is not None and d.how not in ("link held", "not available on Google"):
            c = col(d.recovered)
            if cells[c][0] in ("─", "▓"):  # never hide a step's own glyph
                cells[c] = ("↺", "green")
    cells[col(state.elapsed)] = ("▲", "bold yellow")
    text = Text("journey  ", no_wrap=True, overflow="ellipsis")
    for glyph, style in cells:
        text.append(glyph, style=style)
    text.append(f"  {state.elapsed:4.1f}/{state.length:.0f} s", style="dim")
    if not legend:
        return text
    key = _line(("         ● say ▓ tunnel ⇄ goAway ✖ crash ✂ cut answer ↺ back ▲ now", "dim"))
    return Text("\n", no_wrap=True, overflow="ellipsis").join([text, key])


def _line(*parts: tuple[str, str]) -> Text:
    """One terminal row: never wraps, an overlong row ends with an ellipsis."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for part, style in parts:
        text.append(part, style=style)
    return text


_STATUS = {
    "sent": ("  [waiting for the answer]", "dim"),
    "queued": ("  [queued]", "yellow"),
    "dropped": ("  [dropped: {reason}]", "red"),
    "answered": ("", ""),
    "cut": ("  [answer cut off; asked again]", "yellow"),
    "unanswered": ("  [no answer]", "red"),
}


def utterance_lines(u: Utterance) -> list[Text]:
    """One exchange, one row each: what was said, the cut answer (if any), the answer.

    The answer that was cut off comes first, marked as cut, as it happened: the full answer
    to the replayed question follows it.
    """
    status, style = _STATUS[u.status]
    if u.status == "sent" and u.answer:
        status = ""
    lines = [
        _line(
            (f"{u.at:5.1f}  you › ", "bold cyan"),
            (u.text, ""),
            (status.format(reason=u.dropped_reason), style),
        )
    ]
    if u.cut_partial:
        words = len(u.cut_partial.split())
        lines.append(
            _line(
                (f"       ✂ cut off after {words} words: ", "yellow"),
                (" ".join(u.cut_partial.split()) + " …", "dim"),
            )
        )
    if u.answer:
        lines.append(_line(("       assistant › ", "bold green"), (u.answer, "")))
    return lines


def conversation(state: DemoState, last: int = 6, *, box: bool = True) -> RenderableType:
    """The newest ``last`` exchanges (in a panel, or bare rows with ``box=False``)."""
    lines = [line for u in state.utterances[-last:] for line in utterance_lines(u)]
    if not lines:
        lines = [_line(("(waiting for the first word)", "dim"))]
    body = Group(*lines)
    if not box:
        return body
    return Panel(body, title="conversation", border_style="cyan")


def disruptions_table(state: DemoState) -> Table:
    """Each drop and its recovery."""
    table = Table(title="drops and recoveries", expand=True, title_style="bold")
    table.add_column("t", justify="right", no_wrap=True)
    table.add_column("what", no_wrap=True, overflow="ellipsis")
    table.add_column("lasted", justify="right", no_wrap=True)
    table.add_column("back after", justify="right", no_wrap=True)
    table.add_column("gap", justify="right", no_wrap=True)
    table.add_column("how", no_wrap=True, overflow="ellipsis")
    table.add_column("replayed", justify="right", no_wrap=True)
    for d in state.disruptions:
        table.add_row(
            f"{d.started:.1f}",
            d.label,
            _lasted(state, d),
            _fmt(d.recovery) if d.recovered is not None else "[yellow]…[/]",
            _fmt(d.gap),
            d.how or "[yellow]recovering[/]",
            str(d.replayed) if d.replayed else "",
        )
    return table


def _lasted(state: DemoState, d: Disruption) -> str:
    if d.kind != "tunnel":
        return "instant"
    if d.ended is None:
        return f"{state.elapsed - d.started:.1f} s…"  # still inside
    return _fmt(d.ended - d.started, 1)


def disruptions_rows(state: DemoState, last: int) -> list[Text]:
    """The compact form of the table: one row per disruption, the newest ``last``."""
    rows = []
    for d in state.disruptions[-last:]:
        if d.recovered is None:
            back = ("recovering…", "yellow")
        else:
            back = (f"back after {_fmt(d.recovery)} ({d.how})", "green")
        replayed = f", {d.replayed} replayed" if d.replayed else ""
        rows.append(
            _line(
                (f"{d.started:5.1f}  ", "dim"),
                (f"{d.label} ", "bold"),
                (f"[{_lasted(state, d)}] ", "dim"),
                back,
                (replayed, ""),
            )
        )
    return rows


def counters(state: DemoState) -> list[Text]:
    """Connections, tokens, handles, messages, audio: two rows."""
    minted = "" if state.tokens_minted is None else f" (server minted {state.tokens_minted})"
    first = (
        f"connections {state.connections}   reconnects {state.reconnects}   "
        f"tokens fetched {state.tokens_fetched}{minted}   "
        f"handles {state.handles_seen} (newest #{state.last_handle or '—'})"
    )
    second = f"messages replayed {state.messages_replayed}   dropped {state.messages_dropped}"
    second += f"   spoken answers {state.audio_received_s:.1f} s"
    if state.audio:
        second += (
            f"   you spoke {state.audio_sent_s:.1f} s"
            f" (replayed {state.audio_ms_replayed / 1000:.1f} s,"
            f" dropped {state.audio_ms_dropped / 1000:.1f} s)"
        )
    rows = [_line((first, "")), _line((second, ""))]
    if state.context_resets:
        rows.append(_line((f"context resets {state.context_resets}", "red")))
    return rows


def log_lines(state: DemoState, last: int) -> list[Text]:
    """The newest ``last`` lifecycle lines."""
    return [
        _line((f"{line.at:5.1f}  ", "dim"), (line.text, line.style)) for line in state.log[-last:]
    ]


def log_panel(state: DemoState, last: int = 6) -> Panel:
    """The newest lifecycle lines, in a panel."""
    return Panel(Group(*log_lines(state, last)), title="events", border_style="dim")


@dataclass(frozen=True, slots=True)
class Layout:
    """How much of each section a view shows; :func:`live_view` picks the richest that fits."""

    exchanges: int
    events: int
    table: bool  # the bordered table (else one row per disruption)
    boxes: bool  # panels around the conversation and the events
    legend: bool
    counters: bool
    disruptions: int = 99


# Richest first. A terminal of 160x50 gets the first; 80x24 one of the compact ones.
LAYOUTS = (
    Layout(6, 6, table=True, boxes=True, legend=True, counters=True),
    Layout(4, 4, table=True, boxes=True, legend=True, counters=True),
    Layout(4, 4, table=False, boxes=False, legend=True, counters=True),
    Layout(3, 3, table=False, boxes=False, legend=False, counters=True, disruptions=5),
    Layout(2, 3, table=False, boxes=False, legend=False, counters=False, disruptions=3),
    Layout(2, 2, table=False, boxes=False, legend=False, counters=False, disruptions=2),
    Layout(1, 1, table=False, boxes=False, legend=False, counters=False, disruptions=1),
    Layout(1, 0, table=False, boxes=False, legend=False, counters=False, disruptions=0),
)


def render_layout(state: DemoState, layout: Layout, columns: int) -> RenderableType:
    """The view for one layout (no height limit)."""
    parts: list[RenderableType] = [header(state), timeline(state, columns, legend=layout.legend)]
    if layout.boxes:
        parts.append(conversation(state, layout.exchanges))
    else:
        parts.append(_line(("── conversation", "cyan")))
        parts.append(conversation(state, layout.exchanges, box=False))
    if layout.table:
        parts.append(disruptions_table(state))
    elif layout.disruptions and state.disruptions:
        parts.append(_line(("── drops and recoveries", "bold")))
        parts.extend(disruptions_rows(state, layout.disruptions))
    if layout.counters:
        parts.extend(counters(state))
    if layout.events:
        if layout.boxes:
            parts.append(log_panel(state, layout.events))
        else:
            parts.append(_line(("── events", "dim")))
            parts.extend(log_lines(state, layout.events))
    return Group(*parts)


TABLE_MIN_WIDTH = 100  # narrower, the seven-column table would wrap its cells


def layout_height(state: DemoState, layout: Layout, columns: int) -> int:
    """Rows :func:`render_layout` takes, counted without rendering (every row is no-wrap).

    Counting is what makes fitting cheap: rendering every candidate layout at 8 frames a
    second cost a fifth of a core. A test checks the count against real renders.
    """
    exchanges = sum(len(utterance_lines(u)) for u in state.utterances[-layout.exchanges :])
    rows = 1 + 1 + (1 if layout.legend else 0)  # header, journey, legend
    rows += max(1, exchanges) + (2 if layout.boxes else 1)  # panel borders, or a heading
    if layout.table:
        rows += 5 + len(state.disruptions)  # title, borders, header, its rule
    elif layout.disruptions and state.disruptions:
        rows += 1 + min(layout.disruptions, len(state.disruptions))
    if layout.counters:
        rows += 2 + (1 if state.context_resets else 0)
    if layout.events:
        events = min(layout.events, len(state.log))
        rows += events + (2 if layout.boxes else 1)
    return rows


class FittedView:
    """The live view, at most ``height`` rows on a terminal ``width`` columns wide.

    A live view taller than the terminal cannot be redrawn in place: every refresh pushes
    its top into the scrollback (at 80x24 the header was printed there 83 times). So the
    richest :data:`LAYOUTS` entry that fits is chosen by its height; should a count ever be
    wrong, the view is still cropped to ``height`` rows, keeping the header (the session's
    state) on top.
    """

    def __init__(self, state: DemoState, width: int, height: int) -> None:
        self.state = state
        self.width = max(20, width)
        self.height = max(1, height)
        self.layout = next(
            (
                layout
                for layout in LAYOUTS
                if (self.width >= TABLE_MIN_WIDTH or not layout.table)
                and layout_height(state, layout, self.width) <= self.height
            ),
            LAYOUTS[-1],
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        renderable = render_layout(self.state, self.layout, self.width)
        lines = console.render_lines(renderable, options.update(width=self.width, height=None))
        new_line = Segment.line()
        for index, line in enumerate(lines[: self.height]):
            if index:
                yield new_line
            yield from line


def live_view(state: DemoState, columns: int = 100, rows: int | None = None) -> RenderableType:
    """Everything, for ``rich.live.Live`` on a terminal ``columns`` x ``rows``.

    Without ``rows`` the richest layout is returned unbounded (for a final print); with it
    the view never takes more than ``rows`` rows.
    """
    if rows is None:
        return render_layout(state, LAYOUTS[0], columns)
    return FittedView(state, columns, rows)


def summary(state: DemoState, verdict: Verdict) -> RenderableType:
    """The final summary: figures and verdict."""
    f = verdict.figures
    table = Table(title="summary", show_header=False, title_style="bold")
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("journey", f"{_fmt(f['duration'], 1)} at speed ×{state.speed:g}"),
        ("drops", f"{f['disruptions']} ({f['reconnects']} reconnects)"),
        (
            "back after a fault",
            f"max {_fmt(f['maxRecoveryAfterFault'])}, mean {_fmt(f['meanRecoveryAfterFault'])}",
        ),
        ("after a tunnel's end", f"max {_fmt(f['maxTunnelRecovery'])}"),
        ("longest gap (client)", _fmt(f["maxGap"])),
        (
            "tokens",
            f"{f['tokensFetched']} fetched"
            + ("" if f["tokensMinted"] is None else f", {f['tokensMinted']} minted"),
        ),
        ("resumption handles", str(f["handlesSeen"])),
        ("messages", f"{f['messagesReplayed']} replayed, {f['messagesDropped']} dropped"),
    ]
    if state.audio:
        rows.append(
            (
                "audio",
                f"sent {f['audioSentSeconds']:.1f} s, received {f['audioReceivedSeconds']:.1f} s, "
                f"replayed {f['audioReplayedMs'] / 1000:.1f} s, "
                f"dropped {f['audioDroppedMs'] / 1000:.1f} s",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    for check in verdict.checks:
        mark = "[bold green]✔[/]" if check.ok else "[bold red]✘[/]"
        table.add_row(f"{mark} {check.name}", check.detail)
    outcome = (
        Text("The conversation survived the journey.", style="bold green")
        if verdict.ok
        else Text("The promise was broken: see the ✘ lines above.", style="bold red")
    )
    # The drops table is already on screen in the live view's last frame.
    return Group(table, outcome)
