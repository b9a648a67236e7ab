"""The shared benchmark harness: statistics, the result schema, JSON files and the runner context.

Every benchmark returns one :class:`BenchResult`. Its headline numbers are
:class:`Comparison` rows: one metric measured for tunnelproof and for the alternative a
user would pick (the seed's policy, google-genai, the physical floor, ...) *in the same
run*, with the ratio between them. Absolute numbers on a shared two-core machine are noisy;
the ratios are what the benchmarks claim.

Ratios are always oriented so that the reader does not have to think about direction:

* ``better="lower"`` (latencies, CPU time): ``ratio = theirs / ours``; 3.0 means
  tunnelproof takes a third of the time;
* ``better="higher"`` (throughput): ``ratio = ours / theirs``;
* ``better="floor"`` (ours against a physical lower bound): ``ratio = ours / floor``, the
  overhead factor over what no client can beat (1.0 is perfect).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1

Better = Literal["lower", "higher", "floor"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics.

    Same definition as numpy's default (``method="linear"``), so numbers can be checked
    against any spreadsheet. Raises ``ValueError`` for an empty sequence or ``q`` outside
    [0, 100].
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    frac = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * frac)


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """``n``, ``min``, ``p50``, ``p95``, ``p99``, ``max`` and ``mean`` of ``values``.

    An empty input gives ``n=0`` and ``None`` everywhere else, so a benchmark whose every
    trial failed still writes a valid result.
    """
    data = [float(v) for v in values]
    if not data:
        return {
            "n": 0,
            "min": None,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
            "mean": None,
        }
    return {
        "n": len(data),
        "min": min(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": max(data),
        "mean": sum(data) / len(data),
    }


def ratio_of(ours: float | None, theirs: float | None, better: Better) -> float | None:
    """The advantage ratio (see the module docstring); ``None`` if it is undefined."""
    if ours is None or theirs is None:
        return None
    if better == "higher":
        return ours / theirs if theirs > 0 else None
    if better == "floor":
        return ours / theirs if theirs > 0 else None
    return theirs / ours if ours > 0 else None


@dataclass(slots=True)
class Comparison:
    """One headline metric: tunnelproof against one alternative, measured side by side.

    ``ours_text``/``theirs_text`` replace the number in tables when it alone would mislead
    (``"gave up"``, ``"> 60 s"``); ``ratio_text`` likewise (``"∞"``, ``"> 12×"``).
    """

    metric: str
    unit: str
    ours: float | None
    against: str
    theirs: float | None
    better: Better = "lower"
    ours_text: str | None = None
    theirs_text: str | None = None
    ratio_text: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """See :func:`ratio_of`."""
        return ratio_of(self.ours, self.theirs, self.better)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict including the computed ratio."""
        data = asdict(self)
        data["ratio"] = self.ratio
        data["ours_display"] = self.display_ours()
        data["theirs_display"] = self.display_theirs()
        data["ratio_display"] = self.display_ratio()
        return data

    def display_ours(self) -> str:
        """The table text of our value."""
        return self.ours_text or format_value(self.ours, self.unit)

    def display_theirs(self) -> str:
        """The table text of the alternative's value."""
        return self.theirs_text or format_value(self.theirs, self.unit)

    def display_ratio(self) -> str:
        """``"3.2×"`` or the override."""
        if self.ratio_text:
            return self.ratio_text
        ratio = self.ratio
        if ratio is None:
            return "n/a"
        return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"


def format_value(value: float | None, unit: str) -> str:
    """Human text for a number with its unit (3 significant digits)."""
    if value is None:
        return "n/a"
    if unit == "s" and abs(value) < 1.0:
        return f"{value * 1000:.3g} ms"
    if unit == "" or unit == "count":
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


@dataclass(slots=True)
class BenchResult:
    """What one benchmark measured. Written to ``<out>/<name>.json``.

    ``data`` holds the raw and aggregated numbers (lists of samples, per-trial records);
    ``params`` the sizes it ran with; ``notes`` the honest caveats of this particular run
    (a skipped sub-measurement, a size below the issue's minimum and why).
    """

    name: str
    title: str
    method: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema :data:`SCHEMA_VERSION`)."""
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "title": self.title,
            "method": self.method,
            "quick": self.quick,
            "params": self.params,
            "comparisons": [c.to_json() for c in self.comparisons],
            "data": self.data,
            "notes": self.notes,
            "charts": self.charts,
            "skipped": self.skipped,
            "error": self.error,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "machine": machine_info(),
        }


REQUIRED_KEYS = frozenset(
    {
        "schema",
        "name",
        "title",
        "method",
        "quick",
        "params",
        "comparisons",
        "data",
        "notes",
        "charts",
        "skipped",
        "error",
        "started_at",
        "duration_s",
        "machine",
    }
)
COMPARISON_KEYS = frozenset(
    {
        "metric",
        "unit",
        "ours",
        "against",
        "theirs",
        "better",
        "ratio",
        "ours_display",
        "theirs_display",
        "ratio_display",
        "note",
        "ours_text",
        "theirs_text",
        "ratio_text",
    }
)


def validate_result(doc: dict[str, Any]) -> list[str]:
    """Problems with a result document (empty list: valid). Used by tests and the summary."""
    problems: list[str] = []
    missing = REQUIRED_KEYS - doc.keys()
    if missing:
        problems.append(f"missing keys: {sorted(missing)}")
    if doc.get("schema") != SCHEMA_VERSION:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
    for i, comp in enumerate(doc.get("comparisons", [])):
        gone = COMPARISON_KEYS - comp.keys()
        if gone:
            problems.append(f"comparison {i} misses {sorted(gone)}")
        if comp.get("better") not in ("lower", "higher", "floor"):
            problems.append(f"comparison {i} has better={comp.get('better')!r}")
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError as exc:
        problems.append(f"not strict JSON: {exc}")
    return problems


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by ``None`` recursively (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented strict JSON (NaN/inf become ``null``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(doc), indent=2, sort_keys=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def machine_info() -> dict[str, Any]:
    """Where the numbers come from (they mean little without it)."""
    import os

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        load = (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
    }


@dataclass(slots=True)
class BenchContext:
    """What the runner hands each benchmark.

    ``quick`` asks for tiny sizes (a smoke test, seconds not minutes); ``previous`` holds
    results of benchmarks already run in this invocation (the storm simulation uses the
    token service's measured capacity from it); ``log`` prints progress.
    """

    out: Path
    quick: bool = False
    seed: int = 7
    previous: dict[str, BenchResult] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def chart_path(self, name: str, suffix: str = "") -> Path:
        """``<out>/<name><suffix>.png``."""
        return self.out / f"{name}{suffix}.png"


def first_paragraph(doc: str | None) -> str:
    """The docstring's method section: everything up to the first blank line after text."""
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def method_text(doc: str | None) -> str:
    """The whole module docstring, de-indented, as the method description."""
    if not doc:
        return ""
    import inspect

    return inspect.cleandoc(doc)
