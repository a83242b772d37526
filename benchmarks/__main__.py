"""`python -m benchmarks <local|polling|makespan|prepare|dispatch> ...`: run a benchmark and
record it in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import _node_cli as node_cli
from benchmarks import dispatch, local_throughput, makespan, polling, prepare_scaling

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="name", required=True)
    local = sub.add_parser(
        "local",
        help="B5: seconds per video through the DAG on a real stack vs the CLI's own --batch",
    )
    local.add_argument("--rows", type=int, default=10, help="batch rows (default 10)")
    local.add_argument(
        "--concurrency", type=int, default=2, help="pool slots and --batch-concurrency (2)"
    )
    local.add_argument("--singles", type=int, default=3, help="single renders timed (3)")
    local.add_argument("--output", type=Path, default=DOCS, help="markdown file to update")
    local.add_argument("--keep", action="store_true", help="keep the work directory")
    poll = sub.add_parser(
        "polling", help="B2: Step Functions reads per waiting render, ours vs the provider"
    )
    poll.add_argument("--renders", type=int, default=50)
    poll.add_argument("--seconds", type=float, nargs="+", default=[20.0, 120.0])
    poll.add_argument("--output", type=Path, default=DOCS)
    span = sub.add_parser(
        "makespan",
        help="B1: Lambda batch makespan vs ideal on a real stack, ours vs the naive operator",
    )
    span.add_argument("--rows", type=int, default=200, help="batch rows (200)")
    span.add_argument("--slots", type=int, default=20, help="pool slots per variant (20)")
    span.add_argument("--seconds", type=int, default=10, help="seconds per execution (10)")
    span.add_argument("--poll-interval", type=float, default=5.0, help="ours (5)")
    span.add_argument("--waiter-delay", type=int, default=5, help="naive (5)")
    span.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (8)")
    span.add_argument("--order", nargs="+", choices=("ours", "naive"), default=["naive", "ours"])
    span.add_argument("--no-warmup", action="store_true")
    span.add_argument("--output", type=Path, default=DOCS)
    span.add_argument("--keep", action="store_true")
    prep = sub.add_parser(
        "prepare", help="B3: parse+validate+plan time and memory vs rows, ours vs the Node CLI"
    )
    prep.add_argument("--rows", type=int, nargs="+", default=[1000, 10_000, 100_000])
    prep.add_argument("--repeat", type=int, default=3, help="runs per cell, fastest kept (3)")
    prep.add_argument("--node-dir", type=Path, default=None, help="Node CLI scratch install")
    prep.add_argument("--output", type=Path, default=DOCS)
    prep.add_argument("--keep", action="store_true")
    disp = sub.add_parser(
        "dispatch", help="B4: time until N executions are started, ours vs boto3 vs Node CLI"
    )
    disp.add_argument("--rows", type=int, default=1000)
    disp.add_argument("--threads", type=int, default=16, help="bare boto3 thread pool (16)")
    disp.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (8)")
    disp.add_argument("--timeout", type=float, default=900.0, help="ours: give up after (s)")
    disp.add_argument("--node-dir", type=Path, default=None, help="Node CLI scratch install")
    disp.add_argument("--output", type=Path, default=DOCS)
    disp.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    command = "uv run python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.name == "polling":
        results = polling.run(renders=args.renders, seconds=args.seconds)
        info = local_throughput.machine_info()
        machine = ", ".join(f"{k}: {v}" for k, v in info.items())
        section = polling.to_markdown(results, command=command.strip(), machine=machine)
        local_throughput.write_section(args.output, polling.SECTION_ID, section)
        print(section)
        print(f"written to {args.output}")
        return 0

    if args.name in ("makespan", "prepare", "dispatch"):
        load_before, t0 = os.getloadavg(), time.monotonic()
        section_id, section = _aws_benchmark(args, command.strip())
        note = _load_note(load_before, os.getloadavg(), time.monotonic() - t0)
        section = section.rstrip("\n") + "\n" + note + "\n"
        local_throughput.write_section(args.output, section_id, section)
        print(section)
        print(f"written to {args.output}")
        return 0

    if args.name == "local":
        command = "uv run python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
        result = local_throughput.run(
            rows=args.rows,
            concurrency=args.concurrency,
            singles=args.singles,
            keep=args.keep,
        )
        section = local_throughput.to_markdown(result, command=command.strip())
        local_throughput.write_section(args.output, local_throughput.SECTION_ID, section)
        print(section)
        print(f"written to {args.output}")
    return 0


def _load_note(before: tuple[float, ...], after: tuple[float, ...], elapsed: float) -> str:
    def fmt(load: tuple[float, ...]) -> str:
        return " / ".join(f"{x:.2f}" for x in load)

    return (
        f"- Load average (1 / 5 / 15 min) when the run started: {fmt(before)}; when it ended: "
        f"{fmt(after)}. Anything else running on the machine shares its CPUs with the run. "
        f"The whole command took {elapsed / 60:.1f} min."
    )


def _aws_benchmark(args: argparse.Namespace, command: str) -> tuple[str, str]:
    """Run B1, B3 or B4 once; return its section id and markdown."""
    node_dir = getattr(args, "node_dir", None) or node_cli.DEFAULT_DIR
    if args.name == "makespan":
        span = makespan.run(
            rows=args.rows,
            slots=args.slots,
            seconds=args.seconds,
            poll_interval=args.poll_interval,
            waiter_delay=args.waiter_delay,
            parallelism=args.parallelism,
            warmup=not args.no_warmup,
            order=tuple(args.order),
            keep=args.keep,
        )
        return makespan.SECTION_ID, makespan.to_markdown(span, command=command)
    if args.name == "prepare":
        prep = prepare_scaling.run(args.rows, node_dir=node_dir, repeat=args.repeat, keep=args.keep)
        return prepare_scaling.SECTION_ID, prepare_scaling.to_markdown(prep, command=command)
    disp = dispatch.run(
        rows=args.rows,
        threads=args.threads,
        parallelism=args.parallelism,
        timeout=args.timeout,
        node_dir=node_dir,
        keep=args.keep,
    )
    return dispatch.SECTION_ID, dispatch.to_markdown(disp, command=command)


if __name__ == "__main__":
    raise SystemExit(main())
