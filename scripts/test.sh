#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install everything, lint, type-check, run pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
bash "$ROOT/scripts/install-test-services.sh"
cd "$ROOT"
# Everything a test needs was installed above: a missing tool fails its tests, never skips them.
export HYPERFRAMES_REQUIRE_RENDERER=1
echo "[test] ruff"; uv run --frozen ruff check . && uv run --frozen ruff format --check .
echo "[test] mypy"; uv run --frozen mypy
echo "[test] pytest"; uv run --frozen pytest "$@"
