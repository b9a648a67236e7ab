"""PNG charts for the benchmarks (matplotlib, Agg backend, imported lazily).

matplotlib is a dev dependency: importing it at module level would make ``tunnelproof``
itself depend on it, and its import costs ~0.5 s. Each function imports it on first use
and selects the non-interactive Agg backend, so charts render on a headless CI box.
A missing matplotlib turns a chart into a note instead of failing the benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLORS = {
    "tunnelproof": "#1b7f3b",
    "ours": "#1b7f3b",
    "seed": "#c0392b",
    "floor": "#7f8c8d",
    "google-genai": "#2c6fbb",
    "websockets default": "#c0392b",
    "none": "#8e44ad",
}
PALETTE = ["#1b7f3b", "#c0392b", "#7f8c8d", "#2c6fbb", "#8e44ad", "#d68910", "#17a589"]


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed (``pip install -e '.[dev]'``)."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise ChartUnavailable("matplotlib is not installed") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _color(label: str, i: int, used: set[str] | None = None) -> str:
    """The conventional colour of ``label`` (green is ours), else a free palette colour."""
    for key, color in COLORS.items():
        if label.lower().startswith(key) and (used is None or color not in used):
            if used is not None:
                used.add(color)
            return color
    for k in range(len(PALETTE)):
        color = PALETTE[(i + k) % len(PALETTE)]
        if used is None or color not in used:
            if used is not None:
                used.add(color)
            return color
    return PALETTE[i % len(PALETTE)]


def _finish(plt: Any, fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def grouped_bars(
    path: Path,
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    log: bool = False,
    annotations: Mapping[str, Sequence[str | None]] | None = None,
) -> str:
    """Bars per group (x) and series (colour). ``None`` values are drawn as missing and
    may be annotated (e.g. ``"gave up"``). Returns the file name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2))
    n = max(1, len(series))
    width = 0.8 / n
    used: set[str] = set()
    drawn: list[tuple[Any, float | None, str | None]] = []
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        hatch = "//" if i >= len(COLORS) or "blackhole" in label else None
        # A hatched series is a variant of a solid one: same colour, so policies stay legible.
        color = _color(label, i, None if hatch else used)
        bars = ax.bar(xs, heights, width, label=label, color=color, hatch=hatch, alpha=0.999)
        notes = (annotations or {}).get(label)
        for j, bar in enumerate(bars):
            text = notes[j] if notes is not None and j < len(notes) else None
            drawn.append((bar, values[j], text))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for bar, value, text in drawn:
        label_text = text if text is not None else (f"{value:.3g}" if value is not None else "")
        if not label_text:
            continue
        y = bar.get_height() if value is not None else (bottom * 1.15 if log else 0.0)
        ax.annotate(
            label_text,
            (bar.get_x() + bar.get_width() / 2, y),
            ha="center",
            va="bottom",
            fontsize=7,
            rotation=90 if len(label_text) > 6 else 0,
        )
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _finish(plt, fig, path)


def cdf(
    path: Path,
    title: str,
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    log: bool = False,
) -> str:
    """Empirical CDFs of samples, one line per series. Returns the file name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (label, values) in enumerate(series.items()):
        data = sorted(values)
        if not data:
            continue
        ys = [(k + 1) / len(data) for k in range(len(data))]
        ax.step(data, ys, where="post", label=f"{label} (n={len(data)})", color=_color(label, i))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of trials")
    if log:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(plt, fig, path)


def lines(
    path: Path,
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    xlabel: str,
    ylabel: str,
    logy: bool = False,
    logx: bool = False,
    secondary: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    secondary_label: str = "",
) -> str:
    """Line plots of ``(x, y)`` points; ``secondary`` series go on a right-hand axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    used: set[str] = set()
    for i, (label, points) in enumerate(series.items()):
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=label, color=_color(label, i, used), linewidth=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if secondary:
        ax2 = ax.twinx()
        used2: set[str] = set()
        for i, (label, points) in enumerate(secondary.items()):
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            color = _color(label, i, used2)
            ax2.plot(xs, ys, label=label, color=color, linestyle=":", linewidth=1.0)
        ax2.set_ylabel(secondary_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles += h2
        labels += l2
    ax.legend(handles, labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _finish(plt, fig, path)


def safe_chart(notes: list[str], charts: list[str], make: Any, *args: Any, **kwargs: Any) -> None:
    """Call a chart function; on failure record a note instead of failing the benchmark."""
    try:
        charts.append(make(*args, **kwargs))
    except Exception as exc:
        notes.append(f"chart not drawn: {type(exc).__name__}: {exc}")
