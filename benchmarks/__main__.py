"""`python -m benchmarks local [--rows 10]`: run a benchmark and record it in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import local_throughput

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    raise SystemExit(main())
