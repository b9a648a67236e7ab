"""``python -m tunnelproof.testing.chaos``: run the soak, print the table, write the JSON.

Exits 1 when an invariant does not hold, so ``make chaos`` fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from rich.console import Console

from tunnelproof.testing.chaos.config import ChaosConfig
from tunnelproof.testing.chaos.report import chart, render
from tunnelproof.testing.chaos.runner import run_chaos
from tunnelproof.testing.chaos.schedule import IMPOLITE_FAULTS


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, report."""
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m tunnelproof.testing.chaos")
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale)
    parser.add_argument("--restarts", type=int, default=defaults.restarts)
    parser.add_argument("--expected-duration", type=float, default=defaults.expected_duration)
    parser.add_argument("--deadline", type=float, default=defaults.deadline)
    parser.add_argument("--reply-timeout", type=float, default=defaults.reply_timeout)
    parser.add_argument(
        "--kernel-every",
        type=int,
        default=defaults.kernel_every,
        help="every Nth session's link crosses a network namespace (0: none; needs root)",
    )
    parser.add_argument("--no-latency", action="store_true", help="no 100-500 ms link latency")
    parser.add_argument(
        "--impolite-only",
        action="store_true",
        help="deal only the impolite fault kinds (overlap, slow model, token, goAway loop, ...)",
    )
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        default=[],
        help="run only this session index (repeatable; plans stay those of --seed)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--chart", type=Path, default=None, help="write a PNG chart here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Per-connection noise from the libraries under test is expected in a soak.
    for name in ("websockets", "aiohttp.access", "uvicorn.access", "tunnelproof.session"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The token service logs every failed mint while the emulator restarts: expected here.
    logging.getLogger("tunnelproof.tokens").setLevel(logging.CRITICAL)
    config = ChaosConfig(
        sessions=args.sessions,
        steps=args.steps,
        seed=args.seed,
        time_scale=args.time_scale,
        restarts=args.restarts,
        expected_duration=args.expected_duration,
        deadline=args.deadline,
        only=tuple(args.only),
        reply_timeout=args.reply_timeout,
        kernel_every=args.kernel_every,
        latency=not args.no_latency,
        faults=IMPOLITE_FAULTS if args.impolite_only else defaults.faults,
    )
    console = Console(stderr=False)
    report = asyncio.run(run_chaos(config, progress=lambda m: console.print(f"[dim]{m}[/]")))
    render(report, console)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.out}")
    if args.chart is not None:
        chart(report, args.chart)
        console.print(f"wrote {args.chart}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
