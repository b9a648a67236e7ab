"""Print the soak's report as a table, and draw its chart."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunnelproof.protocol.types import JsonDict


def render(report: JsonDict, console: Console | None = None) -> None:
    """Print ``report`` as two rich tables: the figures, then the invariants."""
    console = console or Console()
    run = report["run"]
    table = Table(
        title=(
            f"chaos soak: {run['sessions']} sessions x {run['steps_per_session']} steps, "
            f"seed {run['seed']}, time scale {run['time_scale']}, {run['duration_s']} s"
        ),
        show_lines=False,
    )
    table.add_column("what")
    table.add_column("figure", justify="right")
    faults = report["faults_injected"]
    table.add_row("faults injected", str(report["faults_total"]))
    for kind, n in faults.items():
        table.add_row(f"  {kind}", str(n))
    if report["faults_not_landed"]:
        table.add_row("faults that could not land", str(report["faults_not_landed"]))
    conv = report["conversations"]
    table.add_row(
        "context survived (asked at the end)", f"{conv['context_survived']} / {conv['total']}"
    )
    table.add_row("  context resets (fresh session, re-seeded)", str(conv["context_resets"]))
    table.add_row("  turns that timed out", str(conv["turn_timeouts"]))
    table.add_row(
        "  replies lost to a context reset (reported Rewound)",
        str(conv["replies_lost_to_a_context_reset"]),
    )
    table.add_row(
        "  spoken turns cut by reported audio drops",
        str(conv["spoken_turns_cut_by_reported_audio_drops"]),
    )
    for name in ("texts", "tool_responses"):
        t = report[name]
        table.add_row(
            name.replace("_", " ") + ": sent / exactly once / reported dropped",
            f"{t['sent']} / {t['delivered_exactly_once']} / {t['reported_dropped']}",
        )
        table.add_row(
            "  duplicated / lost silently / dropped-but-delivered",
            f"{t['duplicated']} / {t['lost_silently']} / {t['dropped_but_delivered']}",
        )
    missing = report["unaccounted"]
    table.add_row(
        "UNACCOUNTED texts / tool responses / audio ms",
        f"{missing['texts']} / {missing['tool_responses']} / {missing['audio_ms']}",
    )
    impolite = report["impolite"]
    tools = impolite["tool_side_effects"]
    table.add_row(
        "tool calls / run / answered from the earlier run / run twice silently",
        f"{tools['calls']} / {tools['executed']} / {tools['answered_from_earlier_run']} / "
        f"{tools['silent_double_executions']}",
    )
    loops, slow = impolite["goaway_loops"], impolite["slow_model"]
    table.add_row(
        "goAway loops / most connections in one",
        f"{loops['loops']} / {loops['max_connections']}",
    )
    table.add_row(
        "thinking-model turns / with a disconnect",
        f"{slow['turns']} / {slow['turns_with_a_disconnect']}",
    )
    audio = report["audio"]
    table.add_row(
        "audio ms sent / replayed / dropped",
        f"{audio['ms_sent']} / {audio['ms_replayed']} / {audio['ms_dropped']}",
    )
    tokens = report["tokens"]
    table.add_row(
        "tokens minted / fetched / reused unspent",
        f"{tokens['minted']} / {tokens['fetched_by_clients']} / "
        f"{tokens['reused_unspent_by_clients']}",
    )
    table.add_row(
        "tokens presented on >1 connection", str(tokens["presented_on_more_than_one_connection"])
    )
    rec = report["reconnects"]
    table.add_row(
        "reconnects / resumes ok / fresh fallbacks",
        f"{rec.get('reconnects', 0)} / {rec.get('resumes_succeeded', 0)} / "
        f"{rec.get('fresh_session_fallbacks', 0)}",
    )
    table.add_row(
        "gap p50 / p95 / max (s)", f"{rec['gap_p50_s']} / {rec['gap_p95_s']} / {rec['gap_max_s']}"
    )
    table.add_row(
        "max sockets open per session at once (emulator view)",
        str(report["sockets"]["max_open_per_session_at_once"]),
    )
    table.add_row("unhandled exceptions", str(report["unhandled_exceptions"]))
    box = report["outbox"]
    table.add_row(
        "peak outbox: messages / bytes / audio ms",
        f"{box['peak_pending_messages']}/{box['bound_pending_messages']}  "
        f"{box['peak_pending_bytes']}/{box['bound_pending_bytes']}  "
        f"{box['peak_pending_audio_ms']}/{box['bound_pending_audio_ms']:g}",
    )
    table.add_row(
        "peak unconfirmed (replay record)",
        f"{box['peak_unconfirmed_messages']}/{box['bound_unconfirmed_messages']}",
    )
    mem = report["memory"]
    table.add_row(
        "peak RSS: client process / emulator (MB)",
        f"{mem['client_peak_rss_mb']} / {mem['emulator_peak_rss_mb']}",
    )
    console.print(table)
    checks = Table(title="invariants")
    checks.add_column("invariant")
    checks.add_column("holds")
    for name, holds in report["invariants"].items():
        checks.add_row(name.replace("_", " "), "[green]yes[/]" if holds else "[red]NO[/]")
    console.print(checks)
    for name in ("texts", "tool_responses"):
        for problem in report[name]["problems"][:10]:
            # Escaped: a text marker such as [c7-3] is rich markup and would vanish.
            console.print(f"[red]{name}: {escape(problem)}[/]")
    sends = report["impolite"]["sends"]
    for kind in ("texts", "tool_responses", "audio"):
        for sample in sends[kind]["samples"][:10]:
            console.print(f"[red]{escape(sample)}[/]")
    impolite = report["impolite"]
    for line in (
        impolite["tool_side_effects"]["silent_double_executions_samples"][:10]
        + impolite["goaway_loops"]["over_bound"][:10]
        + impolite["slow_model"]["samples"][:10]
    ):
        console.print(f"[red]{escape(line)}[/]")
    for line in report["conversations"]["failures"][:10]:
        console.print(f"[red]context lost: {escape(line)}[/]")
    for line in report["unhandled_samples"] + report["harness_errors"][:10]:
        console.print(f"[red]{escape(line)}[/]")


def chart(report: JsonDict, path: Path) -> None:
    """Faults per kind, and connected sessions over time with the emulator restarts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    faults = report["faults_injected"]
    left.barh(list(faults), list(faults.values()), color="#4c72b0")
    left.set_title(f"faults injected ({report['faults_total']})")
    left.invert_yaxis()
    timeline = report["timeline"]["connected_sessions"]
    if timeline:
        xs, ys = zip(*timeline, strict=True)
        right.plot(xs, ys, color="#55a868")
    right.set_ylim(0, report["run"]["sessions"] * 1.05)
    right.set_xlabel("seconds")
    right.set_title("sessions connected at each moment")
    conv = report["conversations"]
    missing = report["unaccounted"]
    fig.suptitle(
        f"{conv['context_survived']}/{conv['total']} conversations kept their context; "
        f"max sockets per session {report['sockets']['max_open_per_session_at_once']}; "
        f"{report['unhandled_exceptions']} unhandled exceptions; unaccounted: "
        f"{missing['texts']} texts, {missing['tool_responses']} tool responses, "
        f"{missing['audio_ms']} ms of audio"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
