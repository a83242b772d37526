"""Benchmarks that report ratios measured side by side in one run (never timed tests).

Run with `uv run python -m benchmarks <name>`; results are written into `docs/benchmarks.md`.
"""
