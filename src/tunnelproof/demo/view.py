"""The live terminal view (rich) and the final summary table.

Rendering is a pure function of :class:`~tunnelproof.demo.model.DemoState`; the app
redraws it a few times a second from the event loop (never from rich's refresh thread,
so the state is never read while the runner changes it).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tunnelproof.demo.model import DemoState, Utterance
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
    """Title, session state, clock."""
    text = Text()
    text.append("tunnelproof demo", style="bold")
    text.append(f" · {state.mode} · ×{state.speed:g}")
    text.append(" · audio" if state.audio else " · text")
    text.append("   ")
    text.append(state.session_state.upper(), style=STATE_STYLE.get(state.session_state, "bold"))
    if state.tunnel_open:
        text.append("   IN A TUNNEL", style="bold magenta")
    text.append(f"   t = {state.elapsed:.1f} s")
    return text


def timeline(state: DemoState, columns: int = 100) -> Text:
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
    text = Text("journey  ")
    for glyph, style in cells:
        text.append(glyph, style=style)
    text.append(f"  {state.elapsed:4.1f}/{state.length:.0f} s", style="dim")
    legend = Text(
        "         ● say ▓ tunnel ⇄ goAway ✖ crash ✂ cut answer ↺ back ▲ now",
        style="dim",
    )
    return Text("\n").join([text, legend])


def _utterance_line(u: Utterance) -> Text:
    line = Text()
    line.append(f"{u.at:5.1f}  you › ", style="bold cyan")
    line.append(u.text)
    status = {
        "sent": ("" if u.answer else "  [sent, waiting for the answer]", "dim"),
        "queued": ("  [queued]", "yellow"),
        "dropped": (f"  [dropped: {u.dropped_reason}]", "red"),
        "answered": ("", ""),
        "cut": ("  [answer cut off, replaying]", "yellow"),
        "unanswered": ("  [no answer]", "red"),
    }[u.status]
    line.append(status[0], style=status[1])
    if u.answer:
        line.append("\n       assistant › ", style="bold green")
        line.append(u.answer if len(u.answer) < 110 else u.answer[:107] + "…")
    if u.cut_partial:
        line.append("\n       (cut off: ", style="dim")
        shown = u.cut_partial if len(u.cut_partial) < 60 else u.cut_partial[:57] + "…"
        line.append(shown + ")", style="dim")
    return line


def conversation(state: DemoState, last: int = 6) -> Panel:
    """The newest exchanges."""
    lines = [_utterance_line(u) for u in state.utterances[-last:]]
    body: RenderableType = Group(*lines) if lines else Text("(waiting for the first word)")
    return Panel(body, title="conversation", border_style="cyan")


def disruptions_table(state: DemoState) -> Table:
    """Each drop and its recovery."""
    table = Table(title="drops and recoveries", expand=True, title_style="bold")
    table.add_column("t", justify="right")
    table.add_column("what")
    table.add_column("lasted", justify="right")
    table.add_column("back after", justify="right")
    table.add_column("gap", justify="right")
    table.add_column("how")
    table.add_column("replayed", justify="right")
    for d in state.disruptions:
        if d.kind != "tunnel":
            lasted = "instant"
        elif d.ended is None:
            lasted = f"{state.elapsed - d.started:.1f} s…"  # still inside
        else:
            lasted = _fmt(d.ended - d.started, 1)
        table.add_row(
            f"{d.started:.1f}",
            d.label,
            lasted,
            _fmt(d.recovery) if d.recovered is not None else "[yellow]…[/]",
            _fmt(d.gap),
            d.how or "[yellow]recovering[/]",
            str(d.replayed) if d.replayed else "",
        )
    return table


def counters(state: DemoState) -> Text:
    """Handles, tokens, audio."""
    text = Text()
    text.append(f"connections {state.connections}   reconnects {state.reconnects}   ")
    minted = "" if state.tokens_minted is None else f" (server minted {state.tokens_minted})"
    text.append(f"tokens fetched {state.tokens_fetched}{minted}   ")
    text.append(f"handles {state.handles_seen} (newest #{state.last_handle or '—'})\n")
    text.append(f"messages replayed {state.messages_replayed}   dropped {state.messages_dropped}")
    if state.audio:
        text.append(
            f"   audio sent {state.audio_sent_s:.1f} s, received {state.audio_received_s:.1f} s,"
            f" replayed {state.audio_ms_replayed / 1000:.1f} s,"
            f" dropped {state.audio_ms_dropped / 1000:.1f} s"
        )
    if state.context_resets:
        text.append(f"   context resets {state.context_resets}", style="red")
    return text


def log_panel(state: DemoState, last: int = 6) -> Panel:
    """The newest lifecycle lines."""
    lines = Text()
    for i, line in enumerate(state.log[-last:]):
        if i:
            lines.append("\n")
        lines.append(f"{line.at:5.1f}  ", style="dim")
        lines.append(line.text, style=line.style)
    return Panel(lines, title="events", border_style="dim")


def live_view(state: DemoState, columns: int = 100) -> RenderableType:
    """Everything, for ``rich.live.Live`` on a terminal ``columns`` wide."""
    return Group(
        header(state),
        timeline(state, columns),
        conversation(state),
        disruptions_table(state),
        counters(state),
        log_panel(state),
    )


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
