"""`python -m benchmarks <b1|b2|b3|b4|b5|scale|imports> ...`: run a benchmark, keep its raw
results in `benchmarks/results/<id>.json` and write its section of docs/benchmarks.md.

Benchmarks never run in CI: they take minutes, start real stacks and load the machine.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._support import DOCS, LoadSampler, save_results, write_section


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to update")
    sub = parser.add_subparsers(dest="name", required=True)
    b1 = sub.add_parser("b1", help="B1: Lambda makespan vs ideal and Airflow's floor")
    b1.add_argument(
        "--stacks",
        nargs="+",
        default=["postgres", "sqlite", "postgres:forkserver:floor,ours"],
        help="DATABASE[:START_METHOD[:VARIANT,...]] per stack",
    )
    b1.add_argument("--rows", type=int, default=200)
    b1.add_argument("--slots", type=int, default=20)
    b1.add_argument("--seconds", type=int, default=10)
    b1.add_argument("--parallelism", type=int, default=8)
    b1.add_argument(
        "--prior", type=Path, default=None, help="stacks measured earlier (results/B1.*.json)"
    )
    b1.add_argument("--keep", action="store_true")
    b2 = sub.add_parser("b2", help="B2: SFN reads per render and end-to-event lag")
    b2.add_argument("--renders", type=int, default=50)
    b2.add_argument("--seconds", type=int, nargs="+", default=[20, 120])
    b2.add_argument("--stagger", type=float, default=0.4)
    b3 = sub.add_parser("b3", help="B3: validate 100k rows vs the Node CLI's dry run")
    b3.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000])
    b3.add_argument("--repeat", type=int, default=3)
    b3.add_argument("--keep", action="store_true")
    b4 = sub.add_parser("b4", help="B4: time until 1,000 renders are running")
    b4.add_argument("--rows", type=int, default=1000)
    b4.add_argument("--threads", type=int, default=16)
    b4.add_argument("--parallelism", type=int, default=8)
    b4.add_argument(
        "--stacks",
        nargs="+",
        default=["postgres", "postgres:forkserver"],
        help="DATABASE[:START_METHOD] per stack",
    )
    b4.add_argument("--keep", action="store_true")
    b5 = sub.add_parser("b5", help="B5: local per row and lanes vs render --batch")
    b5.add_argument("--rows", type=int, default=10)
    b5.add_argument("--concurrency", type=int, default=2)
    b5.add_argument("--databases", nargs="+", default=["postgres", "sqlite"])
    b5.add_argument("--keep", action="store_true")
    scale = sub.add_parser("scale", help="Part 5: a 100,000-row batch in lanes; DB growth")
    scale.add_argument("--rows", type=int, default=100_000)
    scale.add_argument("--window", type=float, default=600.0, help="seconds of rendering")
    scale.add_argument("--max-map-length", type=int, default=None, help="Airflow's (1024)")
    scale.add_argument(
        "--dispatch-wait", type=float, default=300.0, help="longest wait for every lane (s)"
    )
    scale.add_argument(
        "--history-rate", type=float, default=None, help="[hyperframes] sfn_history_per_second"
    )
    scale.add_argument("--keep", action="store_true")
    sub.add_parser("imports", help="DAG-file import cost on top of airflow.sdk")
    return parser


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (and SIGINT, which a background job ignores) unwinds: every stack, moto server and
    # PostgreSQL cluster the benchmark started is stopped by its context manager.
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    args = _parser().parse_args(argv)
    command = "uv run --frozen python -m benchmarks " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    run, render, section_id = _benchmark(args)
    with LoadSampler() as load:
        result = run()
    save_results(section_id, result)
    section = render(result, command=command, load_note=load.note())
    write_section(args.output, section_id, section)
    print(section)
    return 0


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _benchmark(args: argparse.Namespace) -> tuple[Callable[[], Any], Any, str]:
    """The benchmark's run (no arguments), its markdown renderer and its section id."""
    if args.name == "b1":
        from benchmarks import makespan

        specs = [makespan.StackSpec.parse(s) for s in args.stacks]
        return (
            lambda: makespan.run(
                specs,
                args.rows,
                args.slots,
                args.seconds,
                args.parallelism,
                args.keep,
                makespan.load_stacks(args.prior) if args.prior else None,
            ),
            makespan.to_markdown,
            makespan.SECTION_ID,
        )
    if args.name == "b2":
        from benchmarks import polling

        return (
            lambda: polling.run(args.renders, args.seconds, args.stagger),
            polling.to_markdown,
            polling.SECTION_ID,
        )
    if args.name == "b3":
        from benchmarks import validate

        return (
            lambda: validate.run(args.rows, args.repeat, args.keep),
            validate.to_markdown,
            validate.SECTION_ID,
        )
    if args.name == "b4":
        from benchmarks import dispatch

        return (
            lambda: dispatch.run(
                args.rows, args.threads, args.parallelism, tuple(args.stacks), keep=args.keep
            ),
            dispatch.to_markdown,
            dispatch.SECTION_ID,
        )
    if args.name == "b5":
        from benchmarks import local

        return (
            lambda: local.run(args.rows, args.concurrency, tuple(args.databases), args.keep),
            local.to_markdown,
            local.SECTION_ID,
        )
    if args.name == "scale":
        from benchmarks import scale

        return (
            lambda: scale.run(
                args.rows,
                args.window,
                args.keep,
                args.max_map_length,
                args.dispatch_wait,
                args.history_rate or scale.HISTORY_RATE,
            ),
            scale.to_markdown,
            scale.SECTION_ID,
        )
    from benchmarks import import_cost

    return import_cost.run, import_cost.to_markdown, import_cost.SECTION_ID


if __name__ == "__main__":
    raise SystemExit(main())
