#!/usr/bin/env bash
# Installs everything the project needs, idempotently: uv, the locked Python environment
# (.venv), and the local render toolchain (.renderer/). Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v uv >/dev/null 2>&1; then
  echo "[bootstrap] installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv \
    || python3 -m pip install --quiet --user --disable-pip-version-check uv
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "[bootstrap] uv sync --frozen --compile-bytecode"
uv sync --frozen --quiet --compile-bytecode
# uv compiles site-packages only; this package is installed editable, so compile it too, or
# (with PYTHONDONTWRITEBYTECODE set) every task process compiles it again.
.venv/bin/python -m compileall -q -j 0 hyperframes_airflow >/dev/null
bash "$ROOT/scripts/install-renderer.sh"

# A self-contained Airflow home (SQLite) inside the repo, reading this repo's dags/.
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export HYPERFRAMES_RENDERER_HOME="${HYPERFRAMES_RENDERER_HOME:-$ROOT/.renderer}"
export PATH="$ROOT/.venv/bin:$PATH"
